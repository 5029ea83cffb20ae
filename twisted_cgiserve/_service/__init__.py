"""
The server as a twistd service: ports and TLS, readiness and journald for
systemd, reloads, signals and the graceful shutdown.

The only layer that knows about processes-as-a-whole (signals, exit
status); the layers below it never import it.
"""
