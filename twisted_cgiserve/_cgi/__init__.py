"""
CGI/1.1 (RFC 3875): locating a script, its environment, spawning it in its
own process group, feeding its input and turning its output into a
response.

Built on L{twisted_cgiserve._http}; never imports the static layer.
"""
