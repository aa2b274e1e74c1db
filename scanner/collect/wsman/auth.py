"""Authentication for one WinRM connection: NTLM/Kerberos/CredSSP via pyspnego, Basic over TLS.

NTLM is sent pre-emptively in ``Authorization: Negotiate`` on the first request (no anonymous
probe), so a host costs two handshake requests. The NT hash is derived from the password once
per scan (`AuthMaterial`), not once per host: pyspnego otherwise recomputes the LM hash with a
pure-Python DES for every context, which alone costs ~2 ms of CPU per host.

Kerberos (transports ``kerberos`` and ``negotiate``) takes its tickets from the scan's one logon
(`AuthMaterial.prove`, scanner/collect/wsman/kerberos.py): one TGS exchange per host, then one
request carrying the AP-REQ; the host's AP-REP on the 200 completes mutual authentication. The
service principal is HTTP/<inventory name>, or the entry's ``spn``; the connection goes to its
address. ``negotiate`` uses NTLM instead for a host Kerberos cannot name (an IP address) or get a
ticket for (docs/authentication.md#choosing-a-transport), unless the scan forbids the fallback.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import struct
import threading
from collections.abc import Iterable
from typing import Any

import spnego
from spnego.exceptions import SpnegoError

from scanner.collect.wsman.encryption import CREDSSP_ENCRYPTED, SPNEGO_ENCRYPTED
from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.kerberos import (
    FALLBACK_REASONS,
    KerberosLogin,
    KerberosLoginError,
    host_failure,
    login,
)
from scanner.core import ntlmhash
from scanner.core.models import KERBEROS_METHODS, AuthMethod, CollectOptions, Credentials, Stage, Target
from scanner.core.sanitize import one_line

log = logging.getLogger("natt_audit.collect")
_log = log


# pyspnego's NTLM reads the compatibility level from the LM_COMPAT_LEVEL environment variable
# each time it makes a context (as gss-ntlmssp does). Levels 0-2 make it send an NTLMv1 response
# and an LM response (MS-NLMP 3.3.1): a rogue host in the inventory picks the server challenge,
# so those responses make the account's NT hash crackable offline. natt-audit only ever sends
# NTLMv2 (docs/security.md#rogue-inventory-entry): the level is pinned to 3 for the whole process
# before its first NTLM context, whatever the user's environment says (pyspnego takes no
# argument for it). On the client side 4 and 5 behave as 3, so they are left as they are.
NTLMV2_LEVELS = ("3", "4", "5")
_level_lock = threading.Lock()


def pin_ntlm_v2() -> None:
    """Make pyspnego's NTLM send NTLMv2 only (LM_COMPAT_LEVEL 3), whatever the environment said."""
    with _level_lock:
        asked = os.environ.get("LM_COMPAT_LEVEL")
        if asked is None or asked in NTLMV2_LEVELS:
            return
        os.environ["LM_COMPAT_LEVEL"] = "3"
    _log.warning(
        "LM_COMPAT_LEVEL=%s in the environment asks for NTLMv1/LM responses; natt-audit sends NTLMv2 only (level 3)",
        one_line(asked, limit=20),
    )


def _field(token: bytes, offset: int) -> bytes:
    length, _, start = struct.unpack_from("<HHI", token, offset)
    return token[start : start + length]


def check_ntlmv2(token: bytes) -> None:
    """Refuse to send an NTLM AUTHENTICATE message carrying an NTLMv1 or LM response (MS-NLMP 2.2.1.3)."""
    if len(token) < 28 or token[:8] != b"NTLMSSP\0" or struct.unpack_from("<I", token, 8)[0] != 3:
        return  # not an AUTHENTICATE message (NEGOTIATE, or a SPNEGO wrapper we do not build)
    lm, nt = _field(token, 12), _field(token, 20)
    # An NTLMv2 response is a 16-byte proof plus a blob (>= 28 bytes); an NTLMv1 one is 24 bytes.
    # LmChallengeResponse is then Z(24) (the challenge had a timestamp), absent, or LMv2: an HMAC
    # followed by the same client challenge the NTLMv2 blob carries at its byte 16.
    lmv2 = len(lm) == 24 and len(nt) >= 48 and lm[16:24] == nt[32:40]
    if len(nt) <= 24 or not (not lm.strip(b"\0") or lmv2):
        raise CollectError(
            Stage.AUTH, "auth_failed", "refused to send an NTLMv1 or LM response; natt-audit sends NTLMv2 only"
        )

NTLM_CHALLENGE = b"NTLMSSP\x00\x02\x00\x00\x00"  # MS-NLMP 2.2.1.2 signature + MessageType 2
NTLM_AUTHENTICATE = b"NTLMSSP\x00\x03\x00\x00\x00"  # MS-NLMP 2.2.1.3 signature + MessageType 3
NEGOTIATE_VERSION = 0x02000000  # MS-NLMP 2.2.2.5 NTLMSSP_NEGOTIATE_VERSION


def challenge_version(token: bytes) -> tuple[int, int, int] | None:
    """Return (major, minor, build) of an NTLM CHALLENGE's VERSION field, or None when it has none.

    MS-NLMP 2.2.1.2: VERSION sits at offset 48 when NTLMSSP_NEGOTIATE_VERSION is set, and the
    payload then starts at 56 or later; 2.2.2.10: ProductMajorVersion, ProductMinorVersion (one byte
    each), ProductBuild (16-bit little-endian). Windows puts its own version there. The token may
    be raw NTLMSSP or wrapped in SPNEGO: the message is found by its signature.
    """
    at = token.find(NTLM_CHALLENGE)
    if at < 0 or len(token) < at + 56:
        return None
    (flags,) = struct.unpack_from("<I", token, at + 20)
    if not flags & NEGOTIATE_VERSION:
        return None
    for fields in (12, 40):  # TargetNameFields, TargetInfoFields: a payload below 56 overlaps VERSION
        length, _, offset = struct.unpack_from("<HHI", token, at + fields)
        if length and offset < 56:
            return None
    major, minor, build = struct.unpack_from("<BBH", token, at + 48)
    return major, minor, build


class AuthMaterial:
    """Credentials plus per-scan derived secrets and the scan's Kerberos logon; its repr shows no secret."""

    __slots__ = ("_credentials", "_kerberos", "_kerberos_failure", "_lock", "_nt_hash")

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._nt_hash: str | None = None
        self._lock = threading.Lock()
        self._kerberos: KerberosLogin | None = None
        self._kerberos_failure: KerberosLoginError | None = None  # negotiate went on without Kerberos

    def __repr__(self) -> str:
        return f"AuthMaterial(username={self.username!r}, secrets='**********')"

    @property
    def username(self) -> str:
        """Return the account name (the Kerberos principal when the keytab or cache named it)."""
        if not self._credentials.username and self._kerberos is not None:
            return self._kerberos.principal
        return self._credentials.username

    @property
    def has_password(self) -> bool:
        """Return whether there is a password (NTLM, Basic and CredSSP need one)."""
        return self._credentials.password is not None

    def password(self) -> str:
        """Return the password, for the auth libraries only."""
        if self._credentials.password is None:
            raise CollectError(
                Stage.AUTH, "no_password", "this transport needs a password; the scan has only Kerberos credentials"
            )
        return self._credentials.password.get_secret_value()

    def nt_hash(self) -> str | None:
        """Return the hex NT hash (MD4 of UTF-16LE password), computed once; None if MD4 is unavailable."""
        if self._credentials.password is None:
            return None
        with self._lock:
            if self._nt_hash is None:
                digest = ntlmhash.nt_hash(self.password())
                self._nt_hash = "" if digest is None else digest.hex()
            return self._nt_hash or None

    def prove(self, targets: Iterable[Target], options: CollectOptions) -> None:
        """Get the scan's Kerberos ticket before any host is contacted, when a target needs one.

        A refused credential raises KerberosLoginError (exit 2, docs/authentication.md#lockout-safety).
        With transport negotiate only, a KDC that cannot be reached (or a skewed clock) is logged and
        the hosts use NTLM, if the scan allows the fallback and has a password.
        """
        methods = {target.transport for target in targets}
        if not methods & KERBEROS_METHODS or self._kerberos is not None or self._kerberos_failure is not None:
            return
        try:
            self._kerberos = login(self._credentials)
        except KerberosLoginError as exc:
            ntlm_possible = options.ntlm_fallback and self.has_password
            if AuthMethod.KERBEROS in methods or not ntlm_possible or exc.reason not in FALLBACK_REASONS:
                raise
            log.warning("%s; transport negotiate uses NTLM for every host", exc)
            self._kerberos_failure = exc
        except ImportError as exc:
            raise KerberosLoginError(
                f"Kerberos needs the optional extra: pip install 'natt-audit[kerberos]' ({exc.name or 'gssapi'}"
                " is missing); nothing was scanned",
                "transport_unavailable",
            ) from None

    def kerberos(self) -> KerberosLogin:
        """Return the scan's Kerberos logon; raise the host's error when there is none."""
        if self._kerberos is not None:
            return self._kerberos
        if self._kerberos_failure is not None:
            reason = self._kerberos_failure.reason
            raise CollectError(Stage.AUTH, reason, f"the scan has no Kerberos ticket: its logon failed ({reason})")
        raise CollectError(Stage.AUTH, "no_ticket", "the scan has no Kerberos ticket (no logon was made)")

    def close(self) -> None:
        """Destroy the scan's ticket cache."""
        if self._kerberos is not None:
            self._kerberos.close()
            self._kerberos = None


def _tls_channel_bindings(certificate: bytes | None) -> Any:
    """Return RFC 5929 tls-server-end-point bindings for the server certificate (HTTPS + NTLM/Kerberos)."""
    if not certificate:
        return None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from spnego.channel_bindings import GssChannelBindings

    cert = x509.load_der_x509_certificate(certificate)
    algorithm = cert.signature_hash_algorithm
    # RFC 5929 section 4.1: MD5 and SHA-1 are replaced by SHA-256.
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(certificate)
    return GssChannelBindings(application_data=b"tls-server-end-point:" + digest.finalize())


def service_principal(target: Target) -> tuple[str, str] | None:
    """Return (service, host) of the target's Kerberos SPN; None for an IP address without an spn."""
    if target.spn is not None:
        service, _, host = target.spn.partition("/")
        return service, host
    try:
        ipaddress.ip_address(target.name)
    except ValueError:
        return "HTTP", target.name.rstrip(".")
    return None  # Kerberos names hosts, not addresses (docs/authentication.md#spns)


class Authenticator:
    """Drives one connection's authentication and, on HTTP, its message encryption."""

    def __init__(
        self,
        method: AuthMethod,
        material: AuthMaterial,
        hostname: str,
        https: bool,
        *,
        spn: tuple[str, str] | None = None,
        ntlm_fallback: bool = True,
    ) -> None:
        if method is AuthMethod.BASIC and not https:
            raise CollectError(
                Stage.AUTH, "insecure_basic", "Basic authentication over plain HTTP is refused"
            )
        self.method = method
        self.material = material
        self.hostname = hostname
        self.https = https
        self.spn = spn  # (service, host) for Kerberos; None: the host has no name Kerberos can use
        self.ntlm_fallback = ntlm_fallback
        self.context: Any = None
        self.bindings: Any = None
        # The protocol in use: "ntlm", "kerberos", "credssp" or "basic" (negotiate picks per host).
        self.mechanism = {AuthMethod.NEGOTIATE: "kerberos"}.get(method, method.value)
        # Message encryption on HTTP (MS-WSMV 2.2.9.1); over HTTPS TLS already protects the body.
        self.encrypts = not https and method is not AuthMethod.BASIC
        self.encryption_protocol = CREDSSP_ENCRYPTED if method is AuthMethod.CREDSSP else SPNEGO_ENCRYPTED
        self.scheme = {AuthMethod.CREDSSP: "CredSSP", AuthMethod.BASIC: "Basic"}.get(method, "Negotiate")
        # What the host's NTLM CHALLENGE said its version is; trusted only once authentication succeeds.
        self.challenge_version: tuple[int, int, int] | None = None

    @property
    def handshake(self) -> bool:
        """Return whether this method needs a token exchange before the first message."""
        return self.method is not AuthMethod.BASIC

    def carries_credentials(self, token: bytes) -> bool:
        """Return whether sending `token` puts the account's credentials to the test.

        NTLM proves the password only in its AUTHENTICATE message (MS-NLMP 2.2.1.3), raw or wrapped
        in SPNEGO; a NEGOTIATE that is refused costs the account nothing. Any other method counts
        every token, so a refusal is never missed by the lockout breaker (docs/authentication.md).
        """
        if self.method is AuthMethod.NTLM:
            return NTLM_AUTHENTICATE in token
        return True

    @property
    def spn_text(self) -> str:
        """Return the service principal as people write it (HTTP/host), or the host name without one."""
        return f"{self.spn[0]}/{self.spn[1]}" if self.spn is not None else self.hostname

    def basic_header(self) -> str:
        """Return the Basic Authorization value (HTTPS only, enforced in __init__)."""
        raw = f"{self.material.username}:{self.material.password()}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def new_context(self, certificate: bytes | None) -> None:
        """Create a fresh security context for a new connection."""
        try:
            self.bindings = _tls_channel_bindings(certificate) if self.https else None
            if self.method is AuthMethod.NTLM or (self.method is AuthMethod.NEGOTIATE and self.mechanism == "ntlm"):
                self._ntlm_context()
            elif self.method in KERBEROS_METHODS:
                # Made by the first step: its TGS exchange may send negotiate to NTLM instead.
                self.mechanism, self.context = "kerberos", None
            elif self.method is AuthMethod.CREDSSP:
                self.context = spnego.client(
                    self.material.username,
                    self.material.password(),
                    hostname=self.hostname,
                    service="http",
                    protocol=self.method.value,
                    channel_bindings=self.bindings,
                )
            else:
                raise CollectError(Stage.AUTH, "auth_failed", f"no handshake for {self.method.value}")
        except ImportError as exc:
            raise CollectError(
                Stage.AUTH,
                "transport_unavailable",
                f"{self.method.value} needs an optional extra that is not installed ({exc.name or 'import'}):"
                " pip install 'natt-audit[kerberos]'",
            ) from None
        except (ValueError, TypeError) as exc:
            raise CollectError(
                Stage.AUTH, "auth_failed", f"cannot set up {self.method.value}: {type(exc).__name__}"
            ) from None
        except SpnegoError as exc:
            raise CollectError(
                Stage.AUTH, "auth_failed", f"cannot set up {self.method.value}: {type(exc).__name__}"
            ) from None

    def _ntlm_context(self) -> None:
        self.mechanism = "ntlm"
        pin_ntlm_v2()
        nt_hash = self.material.nt_hash()  # NTLMv2 needs the NT hash only, never the LM hash
        if nt_hash:
            credential: Any = spnego.NTLMHash(self.material.username, nt_hash=nt_hash)
            self.context = spnego.client(
                credential, hostname=self.hostname, service="http", protocol="ntlm", channel_bindings=self.bindings
            )
        else:
            self.context = spnego.client(
                self.material.username,
                self.material.password(),
                hostname=self.hostname,
                service="http",
                protocol="ntlm",
                channel_bindings=self.bindings,
            )

    def _kerberos_context(self) -> None:
        if self.spn is None:
            raise CollectError(
                Stage.AUTH,
                "no_spn",
                f"{self.hostname} is an IP address: Kerberos needs the host's name or an spn in the inventory",
            )
        service, host = self.spn
        # A bare Kerberos token (RFC 4121) under the Negotiate scheme: WinRM's Negotiate package takes it.
        self.context = spnego.client(
            self.material.kerberos().credential(),
            hostname=host,
            service=service,
            protocol="kerberos",
            channel_bindings=self.bindings,
        )

    def _first_kerberos_token(self) -> bytes | None:
        """Run the host's TGS exchange and return the AP-REQ; negotiate falls back to NTLM where it may."""
        try:
            if self.context is None:
                self._kerberos_context()
            out: bytes | None = self.context.step(None)
            return out
        except ImportError as exc:
            raise CollectError(
                Stage.AUTH,
                "transport_unavailable",
                f"kerberos needs an optional extra that is not installed ({exc.name or 'import'}):"
                " pip install 'natt-audit[kerberos]'",
            ) from None
        except (SpnegoError, OSError) as exc:
            error = host_failure(exc, self.spn_text)
        except CollectError as exc:
            error = exc
        if (
            self.method is AuthMethod.NEGOTIATE
            and error.reason in FALLBACK_REASONS
            and self.ntlm_fallback
            and self.material.has_password
        ):
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: Kerberos unavailable (%s), negotiate uses NTLM", self.hostname, error.reason)
            self._ntlm_context()
            first: bytes | None = self.context.step(None)
            return first
        if self.method is AuthMethod.NEGOTIATE and error.reason in FALLBACK_REASONS and not self.ntlm_fallback:
            message = error.message + " (the NTLM fallback is off: --no-ntlm-fallback)"
            error = CollectError(error.stage, error.reason, message)
        raise error

    def step(self, token: bytes | None) -> bytes | None:
        """Advance the context with the server's token; return the next token to send, if any."""
        if token is None and self.mechanism == "kerberos" and self.method in KERBEROS_METHODS:
            return self._first_kerberos_token()
        if token is not None and self.mechanism == "ntlm":
            self.challenge_version = challenge_version(token) or self.challenge_version
        try:
            out: bytes | None = self.context.step(token)
            if out is not None and self.mechanism == "ntlm":  # NTLM itself, or negotiate falling back to it
                check_ntlmv2(out)  # never on the wire, whatever pyspnego was told
        except ImportError as exc:
            raise CollectError(
                Stage.AUTH, "transport_unavailable", f"{self.method.value}: {exc.name}"
            ) from None
        except SpnegoError as exc:
            if self.mechanism == "kerberos":
                # The host's AP-REP did not verify (a forged or broken mutual authentication).
                raise CollectError(
                    Stage.AUTH, "auth_failed", f"kerberos: the host's reply token did not verify ({type(exc).__name__})"
                ) from None
            raise CollectError(
                Stage.AUTH, "auth_failed", f"{self.method.value} token rejected ({type(exc).__name__})"
            ) from None
        except (ValueError, TypeError, OSError, struct.error, LookupError, OverflowError) as exc:
            # pyspnego parses the host's challenge with struct/dict lookups: a truncated or garbled
            # token surfaces as struct.error or KeyError (docs/reliability.md#broken-replies: never internal).
            raise CollectError(
                Stage.AUTH, "auth_failed", f"{self.method.value} token rejected ({type(exc).__name__})"
            ) from None
        return out

    @property
    def complete(self) -> bool:
        """Return whether the security context is established."""
        return bool(self.context is not None and self.context.complete)

    def server_token(self, www_authenticate: str) -> bytes | None:
        """Extract this scheme's token from a WWW-Authenticate header; None if absent."""
        for challenge in www_authenticate.split(","):
            name, _, value = challenge.strip().partition(" ")
            if name.lower() == self.scheme.lower() and value.strip():
                try:
                    return base64.b64decode(value.strip(), validate=True)
                except ValueError:
                    raise CollectError(
                        Stage.AUTH, "auth_failed", "server sent an undecodable auth token"
                    ) from None
        return None
