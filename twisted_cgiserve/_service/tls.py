# -*- test-case-name: tests.service.test_tls -*-
"""
TLS: the certificate and key of C{--tls-cert}/C{--tls-key} (http.server's
option names), checked up front so that a bad file is one clear line at
start-up rather than a handshake failure at the first client, and reloaded
on demand so that a renewed certificate needs no restart.

Only TLS 1.2 and 1.3 are offered, with forward-secret AEAD ciphers (the
"intermediate" profile most TLS guides recommend); HTTP/2 is offered through
ALPN because the site advertises it, and Twisted's TLS layer asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from zope.interface import implementer

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID
from OpenSSL.crypto import X509, PKey
from OpenSSL.SSL import Connection
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion
from twisted.logger import Logger

if TYPE_CHECKING:
    # Only with --metrics is prometheus_client imported.
    from twisted_cgiserve._http.metrics import ServerMetrics

__all__ = [
    "ReloadingServerCreator",
    "TLSConfigurationError",
    "TLSFiles",
    "loadServerOptions",
]

_log = Logger(namespace="cgiserve.tls")

# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AES-GCM or
# ChaCha20-Poly1305 only; no CBC, no RSA key exchange, nothing HTTP/2
# forbids (RFC 9113 appendix A). TLS 1.3 suites are OpenSSL's defaults,
# all of them fine.
_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"

_PRIVATE_KEY = re.compile(
    rb"-----BEGIN ((?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY)-----"
    rb".+?-----END \1-----",
    re.DOTALL,
)


class TLSConfigurationError(Exception):
    """
    The TLS files cannot be used; the message is one line for an admin.
    """


@dataclass(frozen=True)
class TLSFiles:
    """
    Where the server's certificate and key are.

    @ivar certificate: PEM file with the certificate, then any intermediate
        certificates (a "full chain"), and possibly the key.
    @ivar key: PEM file with the private key, or L{None} when it is in
        C{certificate}.
    @ivar passwordFile: File whose first line is the key's password.
    @ivar chain: PEM file with intermediate certificates, for C{ssl:}
        descriptions' C{extraCertChain}.
    @ivar fromDescription: Whether these come from an C{ssl:} description
        (whose parameters messages then name) rather than the options.
    """

    certificate: str
    key: str | None = None
    passwordFile: str | None = None
    chain: str | None = None
    fromDescription: bool = False

    @property
    def certificateOption(self) -> str:
        """
        How the admin named the certificate, for messages.
        """
        return "certKey=" if self.fromDescription else "--tls-cert"

    @property
    def keyOption(self) -> str:
        return "privateKey=" if self.fromDescription else "--tls-key"


def _read(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigurationError(
            f"cannot read {option} {path!r}: {e.strerror}"
        ) from None


def _password(files: TLSFiles) -> bytes | None:
    if files.passwordFile is None:
        return None
    # As http.server reads it: UTF-8, surrounding white space dropped.
    text = _read(files.passwordFile, "--tls-password-file")
    try:
        return text.decode("utf-8").strip().encode("utf-8")
    except UnicodeDecodeError:
        raise TLSConfigurationError(
            f"--tls-password-file {files.passwordFile!r} is not UTF-8 text"
        ) from None


# The kinds of key a TLS 1.2/1.3 server can sign with under the ciphers
# allowed here (a DSA key would load, and then fail every handshake).
_KeyTypes = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def _privateKey(files: TLSFiles) -> _KeyTypes:
    option, path = (
        (files.keyOption, files.key)
        if files.key
        else (files.certificateOption, files.certificate)
    )
    match = _PRIVATE_KEY.search(_read(path, option))
    if match is None:
        hint = "" if files.key else " (give the key with --tls-key)"
        raise TLSConfigurationError(f"no PEM private key in {option} {path!r}{hint}")
    password = _password(files)
    pem = match.group(0)
    try:
        key = load_pem_private_key(pem, password)
    except TypeError:
        # No password for an encrypted key, or one for a plain key (which
        # is usable as it is).
        if password is None:
            how = (
                "an ssl: port cannot take a password; use --tls-cert, --tls-key "
                "and --tls-password-file instead"
                if files.fromDescription
                else "give its password with --tls-password-file"
            )
            raise TLSConfigurationError(
                f"the private key in {option} {path!r} is encrypted: {how}"
            ) from None
        key = _plainKey(pem, option, path)
    except ValueError:
        # PKCS#8 says ENCRYPTED in its label, the traditional format in a
        # Proc-Type header.
        if password is not None and b"ENCRYPTED" in pem:
            raise TLSConfigurationError(
                f"cannot decrypt the private key in {option} {path!r}: "
                "wrong password in --tls-password-file"
            ) from None
        raise _damaged(option, path) from None
    if not isinstance(key, _KeyTypes):
        raise TLSConfigurationError(
            f"the private key in {option} {path!r} is of a kind TLS servers cannot use"
        )
    return key


def _plainKey(pem: bytes, option: str, path: str) -> PrivateKeyTypes:
    try:
        return load_pem_private_key(pem, None)
    except ValueError:
        raise _damaged(option, path) from None


def _damaged(option: str, path: str) -> TLSConfigurationError:
    return TLSConfigurationError(
        f"the private key in {option} {path!r} is damaged or of an unsupported kind"
    )


def _publicKey(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    )


def _describe(certificate: x509.Certificate) -> str:
    """
    The names a certificate is for, as an admin would recognise it.
    """
    try:
        names = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if not names:
        names = [
            str(a.value)
            for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return ", ".join(names) or certificate.subject.rfc4514_string()


@dataclass(frozen=True)
class _Loaded:
    options: CertificateOptions
    summary: str


def _certificates(path: str, option: str) -> list[x509.Certificate]:
    """
    The certificates in a PEM file, in order; at least one.
    """
    data = _read(path, option)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise TLSConfigurationError(f"no PEM certificate in {option} {path!r}")
    return certificates


def loadServerOptions(files: TLSFiles) -> _Loaded:
    """
    Read and check the certificate and key, and build the TLS settings
    every new connection gets.

    @raise TLSConfigurationError: A file is missing, unreadable, not PEM,
        encrypted without (or with the wrong) password, or the key does not
        belong to the certificate.
    """
    chain = _certificates(files.certificate, files.certificateOption)
    if files.chain is not None:
        chain += _certificates(files.chain, "extraCertChain")
    key = _privateKey(files)
    leaf = chain[0]
    if _publicKey(leaf.public_key()) != _publicKey(key.public_key()):
        keyPath = files.key or files.certificate
        raise TLSConfigurationError(
            f"the private key in {keyPath!r} does not match the certificate "
            f"in {files.certificateOption} {files.certificate!r}"
        )
    ciphers = AcceptableCiphers.fromOpenSSLCipherString(_CIPHERS)
    try:
        # pyOpenSSL takes cryptography's objects directly (its own X509 and
        # PKey wrappers are deprecated), and CertificateOptions only hands
        # them on to it.
        options = CertificateOptions(
            privateKey=cast(PKey, key),
            certificate=cast(X509, leaf),
            extraCertChain=cast(list[X509], chain[1:]),
            raiseMinimumTo=TLSVersion.TLSv1_2,
            acceptableCiphers=ciphers,
        )
        # Build the context now: OpenSSL's own objections surface here, not
        # at the first handshake.
        options.getContext()
    except Exception as e:
        raise TLSConfigurationError(
            f"OpenSSL refuses {files.certificateOption} {files.certificate!r}: {e}"
        ) from None
    expires = leaf.not_valid_after_utc
    summary = f"{_describe(leaf)} (expires {expires:%Y-%m-%d %H:%M} UTC)"
    now = datetime.now(UTC)
    if expires < now:
        _log.warn(
            "The TLS certificate in {path} expired on {expires}.",
            path=files.certificate,
            expires=f"{expires:%Y-%m-%d %H:%M} UTC",
        )
    elif leaf.not_valid_before_utc > now:
        _log.warn(
            "The TLS certificate in {path} is not valid before {start}.",
            path=files.certificate,
            start=f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
        )
    return _Loaded(options, summary)


@implementer(IOpenSSLServerConnectionCreator)
class ReloadingServerCreator:
    """
    The TLS settings of the C{--tls-cert} ports, replaceable while the
    server runs: each new connection takes the settings current when it is
    accepted, and connections already open keep theirs, so a reload
    interrupts nothing.

    @ivar metrics: What counts the reloads (C{--metrics}), or L{None}.
    """

    metrics: ServerMetrics | None = None

    def __init__(self, files: TLSFiles) -> None:
        """
        @raise TLSConfigurationError: See L{loadServerOptions}.
        """
        self.files = files
        self._current = loadServerOptions(files)
        _log.info(
            "TLS certificate from {path}: {summary}",
            path=files.certificate,
            summary=self._current.summary,
        )

    @property
    def summary(self) -> str:
        """
        What the current certificate is for and when it expires.
        """
        return self._current.summary

    def reload(self) -> bool:
        """
        Read the files again. If they are not usable, keep serving with the
        certificate already loaded, and say why in the log.

        @return: Whether the new files are now in use.
        """
        try:
            self._current = loadServerOptions(self.files)
        except TLSConfigurationError as e:
            if self.metrics is not None:
                self.metrics.tlsReloaded(False)
            _log.error(
                "TLS certificate not reloaded, still using the previous one: {reason}",
                reason=str(e),
            )
            return False
        _log.info("TLS certificate reloaded: {summary}", summary=self._current.summary)
        if self.metrics is not None:
            self.metrics.tlsReloaded(True)
        return True

    def serverConnectionForTLS(self, tlsProtocol: object) -> Connection:
        return self._current.options.serverConnectionForTLS(tlsProtocol)  # type: ignore[arg-type]
