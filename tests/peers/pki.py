"""Throw-away PKIs for the test peers, written as PEM files under a folder the test owns.

`make_ca` writes the lab's CA and a server certificate (scanner.lab.tls) for peers a client must
trust (rsyslog, the fake HEC). `Pki` issues server certificates that are good, expired, issued for
the wrong name or self-signed, for the TLS failure tests against `rawserver.RawServer`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scanner.lab.tls import issue_certificates

HOSTNAME = "rawhost.test"  # the name the server certificates are issued for


def make_ca(folder: Path, *, names: tuple[str, ...] = ("localhost",)) -> tuple[Path, Path, Path]:
    """Write a test CA and a server certificate for 127.0.0.1 + names; return (ca, cert, key) paths."""
    pem = issue_certificates(names, days=1)
    folder.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_path.write_bytes(pem.ca)
    cert_path.write_bytes(pem.cert)
    key_path.write_bytes(pem.key)
    return ca_path, cert_path, key_path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Pki:
    """A test CA and server certificates written as PEM files under `folder`."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(_name("reliability test CA"))
            .issuer_name(_name("reliability test CA"))
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = self.folder / "ca.pem"
        self.ca.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))

    def server_context(self, kind: str = "good", names: tuple[str, ...] = (HOSTNAME, "localhost")) -> ssl.SSLContext:
        """Return a server SSLContext whose certificate is `good`, `expired`, `wrong-name` or `self-signed`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        before, after = now - dt.timedelta(days=1), now + dt.timedelta(days=30)
        if kind == "expired":
            before, after = now - dt.timedelta(days=60), now - dt.timedelta(days=30)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        if kind == "wrong-name":
            sans = [x509.DNSName("some-other-host.invalid")]
        issuer, signer = (_name("rawhost"), key) if kind == "self-signed" else (self._ca.subject, self._ca_key)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("rawhost"))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(before)
            .not_valid_after(after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(signer, hashes.SHA256())
        )
        pem = self.folder / f"server-{kind}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pem)
        return ctx
