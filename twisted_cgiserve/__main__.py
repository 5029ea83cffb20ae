# -*- test-case-name: tests.service.test_cli -*-
"""
C{python -m twisted_cgiserve}: http.server's command line, served by
C{twistd cgiserve} (see L{twisted_cgiserve._service.cli}).
"""

from twisted_cgiserve._service.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
