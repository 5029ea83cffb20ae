"""
The server as a twistd service: ports and endpoints, listening, TLS,
readiness and journald for systemd, reloads, signals and the graceful
shutdown, and the checked configuration they are built from.

The only layer that knows about processes-as-a-whole (signals, exit
status); the layers below it never import it.
"""
