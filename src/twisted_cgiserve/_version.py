"""
The version of twisted-cgiserve, in one place so the wheel metadata, the
C{Server} header and C{--version} can never disagree.
"""

__version__ = "0.1.0"
