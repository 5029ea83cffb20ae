"""
Mount twisted-cgiserve's resources in an existing Twisted web application.

    python docs/examples/embed.py DIRECTORY [ENDPOINT]

serves a small application whose /files/ is DIRECTORY, listed and served
exactly as twistd cgiserve would serve it, and whose /assets/ serves its
static files alone, on ENDPOINT (default tcp:8080:interface=127.0.0.1).
Neither ever sends the source of a script in DIRECTORY's CGI directories.
"""

from __future__ import annotations

import sys

from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_cgiserve import Settings, StaticResource, makeRootResource


def main(directory: str, description: str) -> None:
    settings = Settings()
    root = Resource()
    root.putChild(b"", Data(b'<a href="/files/">files</a>\n', "text/html"))
    # The whole served tree (static files, CGI directories never served as
    # files), mounted under /files.
    root.putChild(b"files", makeRootResource(directory, settings))
    # Or just the static half, without listings, under /assets. It is not
    # found below the tree's CGI directories (their files are scripts'
    # source): give it the ones the tree is served with.
    root.putChild(
        b"assets",
        StaticResource(
            directory,
            listDirectories=False,
            cgiDirectories=settings.cgiDirectories,
        ),
    )

    def listening(port: IListeningPort) -> None:
        print(f"listening on {port.getHost()}", flush=True)

    endpoint = endpoints.serverFromString(reactor, description)
    endpoint.listen(Site(root)).addCallback(listening)
    reactor.run()


if __name__ == "__main__":
    main(
        sys.argv[1],
        sys.argv[2] if len(sys.argv) > 2 else "tcp:8080:interface=127.0.0.1",
    )
