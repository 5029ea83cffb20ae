# -*- test-case-name: tests.test_exports -*-
"""
twisted-cgiserve: serve a directory like C{python -m http.server}, and run
CGI scripts like C{python -m http.server --cgi} did, on Twisted.

The public API is what is listed in C{__all__}; everything else is private.
"""

from twisted_cgiserve._root import makeRootResource
from twisted_cgiserve._service.journald import journaldLogObserver
from twisted_cgiserve._settings import Settings
from twisted_cgiserve._static.resource import StaticResource
from twisted_cgiserve._version import __version__

__all__ = [
    "Settings",
    "StaticResource",
    "__version__",
    "journaldLogObserver",
    "makeRootResource",
]
