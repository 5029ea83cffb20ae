# -*- test-case-name: tests.test_exports -*-
"""
The version of twisted-cgiserve, in one place so the wheel metadata, the
C{Server} header and C{--version} can never disagree.
"""

__version__ = "0.1.0"

# The product token in the Server header and in CGI's SERVER_SOFTWARE, which
# RFC 3875 says should match it.
SERVER_SOFTWARE = f"twisted-cgiserve/{__version__}"
