"""
Static files the way C{http.server}'s C{SimpleHTTPRequestHandler} served
them: the resource, its file cache, validators and ranges, directory
listings and content types.

Built on L{twisted_cgiserve._http}; never imports the CGI layer.
"""
