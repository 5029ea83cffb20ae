"""
The pages http.server answers with, as the compatibility spec describes them.
"""

from __future__ import annotations

__all__ = ["errorPage", "listingPage"]


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


def listingPage(title: str, entries: list[tuple[str, str]]) -> bytes:
    """
    http.server 3.14's directory listing (reference section 2.4), built
    from its line-by-line description. C{title} is as it appears (already
    escaped); C{entries} are (href, display) pairs, already quoted and
    escaped.
    """
    lines = [
        "<!DOCTYPE HTML>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<style type="text/css">\n:root {\ncolor-scheme: light dark;\n}\n</style>',
        f"<title>Directory listing for {title}</title>\n</head>",
        f"<body>\n<h1>Directory listing for {title}</h1>",
        "<hr>\n<ul>",
    ]
    lines += [f'<li><a href="{href}">{display}</a></li>' for href, display in entries]
    lines.append("</ul>\n<hr>\n</body>\n</html>\n")
    return "\n".join(lines).encode("utf-8", "surrogateescape")
