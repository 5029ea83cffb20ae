"""
HTTP plumbing: the site, its requests and connections (HTTP/1.x and
HTTP/2), the one path every response body takes, request bodies, error
pages and the access log.

Nothing here knows about files or scripts; the layers above render into
the requests this layer makes.
"""
