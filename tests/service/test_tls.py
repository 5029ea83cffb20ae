"""
Loading the TLS certificate and key: every way the files can be wrong gives
one line an admin can act on, and a reload never leaves the server without
a certificate.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, rsa
from cryptography.x509.oid import NameOID

from tests.support.certs import makeCertificate
from twisted_cgiserve._service.ports import parsePort
from twisted_cgiserve._service.tls import (
    ReloadingServerCreator,
    TLSConfigurationError,
    TLSFiles,
    loadServerOptions,
)


def loadError(files: TLSFiles) -> str:
    with pytest.raises(TLSConfigurationError) as raised:
        loadServerOptions(files)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_separateFiles(tmp_path: Path) -> None:
    """
    A certificate and its key in two files load, and the summary names the
    certificate's host and expiry.
    """
    c = makeCertificate(tmp_path, "www.example.test")
    loaded = loadServerOptions(TLSFiles(str(c.cert), str(c.key)))
    assert loaded.summary.startswith("www.example.test (expires ")


def test_combinedFile(tmp_path: Path) -> None:
    """
    One PEM with both certificate and key works with only --tls-cert.
    """
    c = makeCertificate(tmp_path)
    loadServerOptions(TLSFiles(str(c.combined)))


def test_encryptedKeyWithPassword(tmp_path: Path) -> None:
    """
    The password file is read as http.server reads it: surrounding white
    space (the trailing newline of an editor) is not part of the password.
    """
    c = makeCertificate(tmp_path, password=b"s3cret")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    loadServerOptions(TLSFiles(str(c.cert), str(c.key), str(password)))


def test_passwordForPlainKey(tmp_path: Path) -> None:
    """
    A password given for a key that has none does no harm.
    """
    c = makeCertificate(tmp_path)
    password = tmp_path / "password"
    password.write_text("unused\n")
    loadServerOptions(TLSFiles(str(c.cert), str(c.key), str(password)))


def test_missingCertificate(tmp_path: Path) -> None:
    message = loadError(TLSFiles(str(tmp_path / "nope.pem")))
    assert message == (
        f"cannot read --tls-cert '{tmp_path}/nope.pem': No such file or directory"
    )


def test_missingKey(tmp_path: Path) -> None:
    c = makeCertificate(tmp_path)
    message = loadError(TLSFiles(str(c.cert), str(tmp_path / "nope.key")))
    assert message.startswith("cannot read --tls-key ")


def test_certificateIsADirectory(tmp_path: Path) -> None:
    message = loadError(TLSFiles(str(tmp_path)))
    assert message.endswith(": Is a directory")


def test_notPEM(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    assert (
        loadError(TLSFiles(str(junk))) == f"no PEM certificate in --tls-cert '{junk}'"
    )


def test_certificateWithoutKey(tmp_path: Path) -> None:
    """
    Only a certificate and no --tls-key: the message says what to add.
    """
    c = makeCertificate(tmp_path)
    message = loadError(TLSFiles(str(c.cert)))
    assert message == (
        f"no PEM private key in --tls-cert '{c.cert}' (give the key with --tls-key)"
    )


def test_swappedFiles(tmp_path: Path) -> None:
    """
    The key given as certificate and the certificate as key.
    """
    c = makeCertificate(tmp_path)
    message = loadError(TLSFiles(str(c.key), str(c.cert)))
    assert message == f"no PEM certificate in --tls-cert '{c.key}'"


def test_mismatchedKey(tmp_path: Path) -> None:
    a = makeCertificate(tmp_path / "a")
    b = makeCertificate(tmp_path / "b")
    message = loadError(TLSFiles(str(a.cert), str(b.key)))
    assert message == (
        f"the private key in '{b.key}' does not match the certificate in "
        f"--tls-cert '{a.cert}'"
    )


def test_encryptedWithoutPassword(tmp_path: Path) -> None:
    c = makeCertificate(tmp_path, password=b"s3cret")
    message = loadError(TLSFiles(str(c.cert), str(c.key)))
    assert message == (
        f"the private key in --tls-key '{c.key}' is encrypted: give its "
        "password with --tls-password-file"
    )


def test_wrongPassword(tmp_path: Path) -> None:
    c = makeCertificate(tmp_path, password=b"s3cret")
    password = tmp_path / "password"
    password.write_text("guess\n")
    message = loadError(TLSFiles(str(c.cert), str(c.key), str(password)))
    assert message == (
        f"cannot decrypt the private key in --tls-key '{c.key}': wrong "
        "password in --tls-password-file"
    )


def test_missingPasswordFile(tmp_path: Path) -> None:
    c = makeCertificate(tmp_path, password=b"s3cret")
    message = loadError(TLSFiles(str(c.cert), str(c.key), str(tmp_path / "pw")))
    assert message.startswith("cannot read --tls-password-file ")


def test_damagedKey(tmp_path: Path) -> None:
    c = makeCertificate(tmp_path)
    key = tmp_path / "damaged.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    message = loadError(TLSFiles(str(c.cert), str(key)))
    assert "damaged" in message


def test_reloadKeepsOldOnFailure(tmp_path: Path) -> None:
    """
    A reload with broken files keeps the certificate in use; a reload with
    good ones switches to them.
    """
    live = tmp_path / "live"
    first = makeCertificate(tmp_path / "first", "one.test")
    second = makeCertificate(tmp_path / "second", "two.test")
    live.mkdir()
    (live / "cert.pem").write_bytes(first.cert.read_bytes())
    (live / "key.pem").write_bytes(first.key.read_bytes())
    creator = ReloadingServerCreator(
        TLSFiles(str(live / "cert.pem"), str(live / "key.pem"))
    )
    assert creator.summary.startswith("one.test ")

    (live / "cert.pem").write_bytes(second.cert.read_bytes())
    assert creator.reload() is False
    assert creator.summary.startswith("one.test ")

    (live / "key.pem").write_bytes(second.key.read_bytes())
    assert creator.reload() is True
    assert creator.summary.startswith("two.test ")


def test_extraChain(tmp_path: Path) -> None:
    """
    ssl:'s extraCertChain is read (and must hold certificates).
    """
    c = makeCertificate(tmp_path / "leaf")
    intermediate = makeCertificate(tmp_path / "ca", "ca.test")
    loadServerOptions(TLSFiles(str(c.cert), str(c.key), chain=str(intermediate.cert)))
    message = loadError(TLSFiles(str(c.cert), str(c.key), chain=str(c.key)))
    assert message == f"no PEM certificate in extraCertChain '{c.key}'"


def test_sslDescriptionMessages(tmp_path: Path) -> None:
    """
    Errors about an ssl: port name its parameters, and an encrypted key
    there says where a password can be given.
    """
    c = makeCertificate(tmp_path, password=b"pw")
    spec = parsePort(f"ssl:443:privateKey={c.key}:certKey={c.cert}", None)
    assert spec.tls is not None
    assert loadError(spec.tls) == (
        f"the private key in privateKey= '{c.key}' is encrypted: an ssl: port "
        "cannot take a password; use --tls-cert, --tls-key and "
        "--tls-password-file instead"
    )
    missing = parsePort(f"ssl:443:privateKey={c.key}:certKey=/nope.pem", None)
    assert missing.tls is not None
    assert loadError(missing.tls).startswith("cannot read certKey= '/nope.pem'")


def writeKeyAndCertificate(
    directory: Path, key: object, encryption: serialization.KeySerializationEncryption
) -> TLSFiles:
    """
    A self-signed certificate for C{key}, and the key in the traditional
    ("BEGIN RSA PRIVATE KEY") format.
    """
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (directory / "c.pem").write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    (directory / "k.pem").write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            encryption,
        )
    )
    return TLSFiles(str(directory / "c.pem"), str(directory / "k.pem"))


def test_traditionalEncryptedKey(tmp_path: Path) -> None:
    """
    An RSA key in the traditional format, encrypted (a Proc-Type header,
    not an ENCRYPTED label): the right password opens it, a wrong one is
    called a wrong password, not a damaged key.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    files = writeKeyAndCertificate(
        tmp_path, key, serialization.BestAvailableEncryption(b"right")
    )
    assert b"Proc-Type: 4,ENCRYPTED" in Path(files.key or "").read_bytes()
    password = tmp_path / "pw"
    password.write_text("right\n")
    loadServerOptions(TLSFiles(files.certificate, files.key, str(password)))
    password.write_text("wrong\n")
    message = loadError(TLSFiles(files.certificate, files.key, str(password)))
    assert message.endswith("wrong password in --tls-password-file")


def test_dsaKeyRefused(tmp_path: Path) -> None:
    """
    A DSA key would load and then fail every handshake (no TLS 1.3
    signature, no allowed TLS 1.2 suite): refused at start-up.
    """
    key = dsa.generate_private_key(key_size=2048)
    files = writeKeyAndCertificate(tmp_path, key, serialization.NoEncryption())
    assert "of a kind TLS servers cannot use" in loadError(files)
