"""
The pages http.server answers with, as the compatibility spec describes them.
"""

from __future__ import annotations

__all__ = ["errorPage"]


def errorPage(code: int, message: str, explain: str) -> bytes:
    """
    http.server 3.14's error page (reference section 1.3), built from its
    description: 4-space indentation, the dark-mode style block, a trailing
    newline.
    """
    return (
        "<!DOCTYPE HTML>\n"
        '<html lang="en">\n'
        "    <head>\n"
        '        <meta charset="utf-8">\n'
        '        <style type="text/css">\n'
        "            :root {\n"
        "                color-scheme: light dark;\n"
        "            }\n"
        "        </style>\n"
        "        <title>Error response</title>\n"
        "    </head>\n"
        "    <body>\n"
        "        <h1>Error response</h1>\n"
        f"        <p>Error code: {code}</p>\n"
        f"        <p>Message: {message}.</p>\n"
        f"        <p>Error code explanation: {code} - {explain}.</p>\n"
        "    </body>\n"
        "</html>\n"
    ).encode()
