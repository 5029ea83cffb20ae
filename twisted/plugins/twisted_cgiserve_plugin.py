"""
The twistd dropin for C{twistd cgiserve}.

Every twistd invocation on the machine imports this module when it scans for
plugins, so it must stay cheap and free of side effects: it names the module
that holds the real code and nothing else (no reactor import, no package
import).
"""

from twisted.application.service import ServiceMaker

twistedCGIServe = ServiceMaker(
    "twisted-cgiserve",
    "twisted_cgiserve.tap",
    "Serve a directory like python -m http.server, with CGI under /cgi-bin.",
    "cgiserve",
)
