# -*- test-case-name: tests.http.test_spool -*-
"""
Request bodies kept until a script reads them: in memory while small, in an
anonymous temporary file beyond that, and refused cleanly when the disk
cannot hold them.

Python's C{SpooledTemporaryFile} writes through a buffer, so a full disk
shows up at some later write, or only when the body is read back, long
after the request could have been refused. Here every write reaches the
disk at once, and the first one that fails releases the file (and the
space it held) and raises L{SpoolError}, which the request turns into a
complete C{507 Insufficient Storage} and one log line.
"""

from __future__ import annotations

import errno
import os
import tempfile
from io import BytesIO
from typing import IO, NoReturn

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.logger import Logger

from twisted_cgiserve._http.logfield import escapeField

__all__ = ["IN_MEMORY", "BodySpool", "SpoolError"]

# Request bodies up to this size are kept in memory.
IN_MEMORY = 1024 * 1024

# Errors meaning the disk (or this process's share of it) is full: RFC 4918's
# 507 Insufficient Storage. Any other failure is the server's: 500.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})

_log = Logger(namespace="cgiserve.spool")


class SpoolError(Exception):
    """
    A request body could not be stored.

    @ivar code: The status to answer: 507 when the disk is full, else 500.
    """

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error
        self.code = 507 if error.errno in _NO_SPACE else 500

    def report(self, client: IAddress, request: bytes) -> int:
        """
        Log the refusal of a request's body, once, in one line naming the
        client and the request.

        @param client: The client's address.
        @param request: The request's method and target, as the client sent
            them (escaped here: the client controls them).
        @return: The status to answer with.
        """
        host = client.host if isinstance(client, IPv4Address | IPv6Address) else "-"
        _log.warn(
            "{code} for {client}: the body of {request} cannot be stored: {error}",
            code=self.code,
            client=host,
            request=escapeField(request),
            error=self.error.strerror or str(self.error),
        )
        return self.code


class BodySpool:
    """
    A request body being received: in memory up to C{inMemory} bytes, then
    in an anonymous temporary file (never named on disk, so nothing is left
    behind whatever happens to the process), written unbuffered.

    Once a write has failed, the body is gone: further writes are ignored
    (the rest of the request is being discarded), and reading it is an
    error.
    """

    def __init__(self, inMemory: int = IN_MEMORY) -> None:
        self._inMemory = inMemory
        self._memory: BytesIO | None = BytesIO()
        self._file: IO[bytes] | None = None
        self._failed = False

    def write(self, data: bytes) -> int:
        """
        Add C{data} to the body.

        @raise SpoolError: It cannot be stored; the body is released.
        """
        if self._failed:
            return len(data)
        if self._file is None:
            assert self._memory is not None
            if self._memory.tell() + len(data) <= self._inMemory:
                return self._memory.write(data)
            try:
                # Kept open until the request ends.
                self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
            except OSError as e:
                self._fail(e)
            self._writeAll(self._memory.getvalue())
            self._memory = None
        self._writeAll(data)
        return len(data)

    def _writeAll(self, data: bytes) -> None:
        assert self._file is not None
        view = memoryview(data)
        try:
            while view:
                # An unbuffered file writes what the disk takes, and raises
                # once it takes nothing more.
                written = self._file.write(view)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError as e:
            self._fail(e)

    def _fail(self, error: OSError) -> NoReturn:
        self._failed = True
        self.close()
        raise SpoolError(error)

    def _body(self) -> IO[bytes]:
        body = self._file if self._file is not None else self._memory
        if body is None:
            raise ValueError("I/O operation on a request body that was not stored")
        return body

    def read(self, size: int = -1) -> bytes:
        return self._body().read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._body().seek(offset, whence)

    def tell(self) -> int:
        return self._body().tell()

    def flush(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return self._file is None and self._memory is None

    def close(self) -> None:
        """
        Release the body, and the disk space it held.
        """
        memory, self._memory = self._memory, None
        file, self._file = self._file, None
        if memory is not None:
            memory.close()
        if file is not None:
            file.close()
