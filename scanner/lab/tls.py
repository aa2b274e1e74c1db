"""A throw-away CA and server certificate for the lab's HTTPS listeners (generated at every start)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "lab-ca.pem"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "natt-audit lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


class Pem(NamedTuple):
    """A CA certificate, a server certificate signed by it, and the server's private key (PEM)."""

    ca: bytes
    cert: bytes
    key: bytes


def issue_certificates(names: Sequence[str], *, days: int = 30) -> Pem:
    """Create a throw-away CA and a server cert for localhost, 127.0.0.1 and `names`. Pure, no I/O."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("natt-audit lab CA"))
        .issuer_name(_name("natt-audit lab CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    sans += [x509.DNSName(n) for n in sorted(set(names) - {"localhost"})]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(
        ca=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def make_server_context(host_names: list[str], ca_dir: Path, workdir: Path) -> tuple[ssl.SSLContext, Path]:
    """Create a CA (written to ca_dir/lab-ca.pem) and a server cert for localhost, 127.0.0.1, every name."""
    pem = issue_certificates(host_names)
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_path = ca_dir / CA_FILE
    tmp = ca_dir / f".{CA_FILE}.{os.getpid()}"
    tmp.write_bytes(pem.ca)
    os.replace(tmp, ca_path)
    cert_path = workdir / "lab-server.pem"
    key_path = workdir / "lab-server.key"
    cert_path.write_bytes(pem.cert + pem.ca)  # the chain, so clients can build the path
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem.key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    return ctx, ca_path


def legacy_server_context(workdir: Path) -> ssl.SSLContext:
    """Return a TLS 1.0-only context for WinRM 1.1 hosts, with the certificate make_server_context wrote.

    Windows XP and Server 2003 SChannel speak SSL 3.0 and TLS 1.0 only: TLS 1.1 and 1.2 arrived with
    Windows 7 / Server 2008 R2. OpenSSL 3 refuses TLS 1.0 below security level 0.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0 is deprecated: that is the point
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(workdir / "lab-server.pem", workdir / "lab-server.key")
    return ctx


def server_certificate(workdir: Path) -> bytes:
    """Return the DER server certificate make_server_context wrote (the first of its chain)."""
    pem = (workdir / "lab-server.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
