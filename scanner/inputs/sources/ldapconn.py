"""One protected LDAP session to a domain controller: LDAPS, or Kerberos with a sealed SASL layer.

ldap3 does the LDAP protocol (RFC 4511) and RFC 2696 paging. Two things it does not do are done
here: certificate checks through the standard library (hostname or IP address checked by OpenSSL,
not ldap3's own matcher), and the GSSAPI SASL security layer of RFC 4752 section 3.1, so that a
Kerberos bind over ldap:// is signed and sealed (AD refuses LDAP binds without signing when its
"LDAP server signing requirements" policy says so, Samba when "ldap server require strong auth" is
yes). Failures become `SourceError`s with a stable reason; no message holds a password.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from scanner.inputs.sources import SourceError

if TYPE_CHECKING:
    import gssapi

# RFC 2696: the paged results control; RFC 4511 section 4.1.9 result codes used below.
PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
RESULT_SUCCESS = 0
RESULT_STRONGER_AUTH_REQUIRED = 8
RESULT_REFERRAL = 10
RESULT_SASL_BIND_IN_PROGRESS = 14
RESULT_NO_SUCH_OBJECT = 32
RESULT_INVALID_CREDENTIALS = 49
# RFC 4752 section 3.1: security layer bit masks.
LAYER_NONE = 1  # never chosen: natt-audit does not use LDAP without protection
LAYER_INTEGRITY = 2
LAYER_CONFIDENTIALITY = 4
CLIENT_MAX_BUFFER = 0x100000  # the largest sealed frame we accept (1 MiB; the Samba DC's own limit is 64 KiB)
MAX_FRAME = 0xFFFFFF  # RFC 4752: buffer sizes are 3 octets; a bigger length is not a SASL frame
# Windows DCs refuse a SASL signing/sealing layer inside LDAPS (LDAP error 00002029), Samba DCs require
# one ("Sign or Seal are required", seen on Samba 4.17): no single GSSAPI-over-TLS bind suits both.
KERBEROS_OVER_LDAPS = (
    "auth: kerberos is supported over ldap://, where the session is sealed by Kerberos; over ldaps:// "
    "Windows and Samba DCs disagree on the SASL layer: use ldap:// with kerberos, or ldaps:// with auth: simple"
)
EXTRA_LDAP = "pip install 'natt-audit[ldap]'"
EXTRA_KERBEROS = "pip install 'natt-audit[ldap,kerberos]'"


def import_ldap3() -> Any:
    """Return the ldap3 module, or raise SourceError naming the optional extra."""
    try:
        import ldap3  # type: ignore[import-untyped]
    except ImportError:
        raise SourceError("ldap", "missing_dependency", f"the ldap source needs ldap3: {EXTRA_LDAP}") from None
    return ldap3


def _import_gssapi() -> Any:
    try:
        import gssapi
    except ImportError:
        raise SourceError(
            "ldap", "missing_dependency", f"auth: kerberos needs the gssapi package: {EXTRA_KERBEROS}"
        ) from None
    return gssapi


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach the DC."""

    url: str  # for messages: "ldaps://127.0.0.1:636"
    host: str
    port: int
    tls: bool
    server_name: str  # the DC's host name: the Kerberos SPN is ldap/<server_name>; the certificate must carry it
    ca_file: str | None
    timeout: float


@dataclass(frozen=True)
class Bind:
    """How to authenticate; `password` only for simple binds."""

    kerberos: bool
    username: str | None
    password: SecretStr | None = field(default=None, repr=False)


class SealedSocket:
    """A socket whose LDAP bytes travel in GSSAPI-wrapped, length-prefixed frames (RFC 4752 section 3.1).

    ldap3 reads with recv() and writes with sendall(); everything else goes to the real socket.
    """

    def __init__(self, raw: socket.socket, context: gssapi.SecurityContext, server_max: int) -> None:
        self._raw = raw
        self._context = context
        self._plain = bytearray()
        # The DC's limit is on the wrapped frame; leave room for the wrap token's header and padding.
        self._chunk = max(1, int(context.get_wrap_size_limit(server_max, True))) if server_max else MAX_FRAME
        self.frames_in = 0
        self.frames_out = 0

    def sendall(self, data: bytes) -> None:
        """Seal `data` in frames no bigger than the DC accepts and send them."""
        view = memoryview(data)
        for start in range(0, len(view), self._chunk):
            wrapped = self._context.wrap(bytes(view[start : start + self._chunk]), True)
            if not wrapped.encrypted:
                raise ssl.SSLError("the Kerberos context did not encrypt a frame")  # never sent in clear
            self._raw.sendall(struct.pack(">I", len(wrapped.message)) + wrapped.message)
            self.frames_out += 1

    def _read_exactly(self, size: int) -> bytes | None:
        parts = bytearray()
        while len(parts) < size:
            chunk = self._raw.recv(min(size - len(parts), 65536))
            if not chunk:
                return None
            parts += chunk
        return bytes(parts)

    def recv(self, size: int) -> bytes:
        """Return up to `size` plaintext bytes, unsealing the next frame when none are buffered."""
        if not self._plain:
            head = self._read_exactly(4)
            if head is None:
                return b""
            (length,) = struct.unpack(">I", head)
            if length == 0 or length > min(MAX_FRAME, CLIENT_MAX_BUFFER):
                raise ConnectionError(f"the DC sent a SASL frame of {length} bytes (limit {CLIENT_MAX_BUFFER})")
            body = self._read_exactly(length)
            if body is None:
                return b""
            unwrapped = self._context.unwrap(body)
            if not unwrapped.encrypted:
                raise ConnectionError("the DC sent an LDAP frame that was not encrypted")
            self._plain += unwrapped.message
            self.frames_in += 1
        out = bytes(self._plain[:size])
        del self._plain[:size]
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _tls_class(ldap3: Any) -> Any:
    """Return an ldap3.Tls whose handshake verifies with a standard-library context."""

    class VerifiedTls(ldap3.Tls):  # type: ignore[misc]
        def __init__(self, ca_file: str | None, name: str) -> None:
            super().__init__(validate=ssl.CERT_REQUIRED)
            self.ca_file = ca_file
            self.name = name
            self.failure: ssl.SSLError | None = None

        def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
            # create_default_context: CERT_REQUIRED and check_hostname (ssl module docs), so OpenSSL
            # checks the name or IP address; the system store when no ca_file is given.
            context = ssl.create_default_context(cafile=self.ca_file)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                connection.socket = context.wrap_socket(
                    connection.socket, server_hostname=self.name, do_handshake_on_connect=True
                )
            except ssl.SSLError as exc:  # SSLCertVerificationError included
                self.failure = exc
                raise

    return VerifiedTls


def _kerberos_failure(endpoint: Endpoint, bind: Bind, exc: Exception) -> SourceError:
    text = str(exc)
    who = f"principal {bind.username!r}" if bind.username else "the default principal"
    if "No Kerberos credentials available" in text or "Can't find client principal" in text:
        return SourceError(
            endpoint.url,
            "kerberos_no_ticket",
            f"auth: kerberos found no ticket for {who} in the credential cache (KRB5CCNAME): "
            "run kinit first, or point KRB5_CLIENT_KTNAME at a keytab",
        )
    if "expired" in text.lower():
        return SourceError(
            endpoint.url, "kerberos_no_ticket", f"the Kerberos ticket of {who} has expired: run kinit again"
        )
    if "Server not found in Kerberos database" in text:
        return SourceError(
            endpoint.url,
            "kerberos_spn",
            f"the KDC knows no service ldap/{endpoint.server_name}: set server_name to the DC's "
            "host name (its SPN), not an address or an alias",
        )
    return SourceError(endpoint.url, "kerberos", f"the Kerberos bind failed: {text}")


class Session:
    """A bound LDAP connection; `paged_search` yields one page of raw entries at a time."""

    def __init__(self, conn: Any, endpoint: Endpoint, protection: str) -> None:
        self._conn = conn
        self._endpoint = endpoint
        self.protection = protection  # "tls" (simple bind) or "sasl-gssapi-sealed" (Kerberos)
        self.pages = 0

    @property
    def sealed_frames(self) -> int:
        """Return how many sealed frames were received (0 on TLS sessions)."""
        sock = self._conn.socket
        return sock.frames_in if isinstance(sock, SealedSocket) else 0

    def paged_search(
        self, base: str, search_filter: str, scope: str, attributes: list[str], page_size: int
    ) -> Iterator[list[tuple[str, dict[str, list[bytes]]]]]:
        """Yield (DN, raw attributes) of each page of an RFC 2696 paged search."""
        ldap3 = import_ldap3()
        scopes = {"base": ldap3.BASE, "one": ldap3.LEVEL, "sub": ldap3.SUBTREE}
        cookie: bytes | None = None
        while True:
            ok = self._search(base, search_filter, scopes[scope], attributes, page_size, cookie)
            result = self._conn.result
            if not ok and result.get("result") != RESULT_SUCCESS:
                raise self._search_failure(base, result)
            self.pages += 1
            page = [
                (item["dn"], item["raw_attributes"])
                for item in self._conn.response or ()
                if item.get("type") == "searchResEntry"
            ]
            self._conn.response = None  # ldap3 keeps the last page: let it go before the next
            yield page
            control = (result.get("controls") or {}).get(PAGED_RESULTS_OID)
            cookie = control["value"]["cookie"] if control else None
            if not cookie:
                return

    def _search(self, base: str, filt: str, scope: Any, attributes: list[str], size: int, cookie: bytes | None) -> bool:
        ldap3 = import_ldap3()
        try:
            return bool(
                self._conn.search(
                    base, filt, search_scope=scope, attributes=attributes, paged_size=size, paged_cookie=cookie
                )
            )
        except ldap3.core.exceptions.LDAPException as exc:
            raise SourceError(self._endpoint.url, "search_failed", f"the search under {base!r} failed: {exc}") from None
        except OSError as exc:
            raise SourceError(
                self._endpoint.url, "unreachable", f"the connection to the DC failed during the search: {exc}"
            ) from None

    def _search_failure(self, base: str, result: dict[str, Any]) -> SourceError:
        code = result.get("result")
        text = f"{result.get('description')} ({code}): {result.get('message') or ''}".rstrip(": ")
        if code in (RESULT_NO_SUCH_OBJECT, RESULT_REFERRAL):
            return SourceError(
                self._endpoint.url,
                "base_not_found",
                f"base DN {base!r} does not exist on this DC ({text}); check `base` (e.g. DC=corp,DC=example)",
            )
        return SourceError(self._endpoint.url, "search_failed", f"the search under {base!r} failed: {text}")

    def close(self) -> None:
        """Unbind and close the socket."""
        with contextlib.suppress(OSError, import_ldap3().core.exceptions.LDAPException):
            self._conn.unbind()


def _connection_failure(endpoint: Endpoint, tls: Any, exc: Exception) -> SourceError:
    failure = getattr(tls, "failure", None)
    if isinstance(failure, ssl.SSLCertVerificationError):
        where = f"ca_file {endpoint.ca_file!r}" if endpoint.ca_file else "the system's CA store"
        return SourceError(
            endpoint.url,
            "tls_verify",
            f"the DC's certificate did not verify against {where}: {failure.verify_message} "
            "(give the CA that issued the DC's certificate in ca_file; verification is never turned off)",
        )
    if isinstance(failure, ssl.SSLError):
        return SourceError(endpoint.url, "tls", f"the TLS handshake with the DC failed: {failure.reason or failure}")
    if isinstance(exc, ConnectionRefusedError):
        return SourceError(endpoint.url, "unreachable", f"connection refused by {endpoint.host} port {endpoint.port}")
    if isinstance(exc, socket.timeout | TimeoutError):
        return SourceError(
            endpoint.url, "unreachable", f"{endpoint.host} port {endpoint.port} did not answer in {endpoint.timeout} s"
        )
    if isinstance(exc, socket.gaierror):
        return SourceError(endpoint.url, "unreachable", f"cannot resolve {endpoint.host!r}: {exc.strerror}")
    return SourceError(endpoint.url, "unreachable", f"cannot connect to {endpoint.host} port {endpoint.port}: {exc}")


def _gssapi_bind(conn: Any, endpoint: Endpoint, bind: Bind) -> SealedSocket:
    """Bind with SASL GSSAPI (RFC 4752), install the confidentiality layer and return the sealed socket."""
    gssapi_mod = _import_gssapi()
    ldap3 = import_ldap3()
    from ldap3.protocol.sasl.sasl import send_sasl_negotiation  # type: ignore[import-untyped]

    flag = gssapi_mod.RequirementFlag
    wanted = (
        flag.mutual_authentication | flag.out_of_sequence_detection | flag.replay_detection
        | flag.integrity | flag.confidentiality
    )  # fmt: skip
    try:
        name = None
        if bind.username:
            name = gssapi_mod.Name(bind.username, gssapi_mod.NameType.kerberos_principal)
        creds = gssapi_mod.Credentials(name=name, usage="initiate")
        target = gssapi_mod.Name(f"ldap@{endpoint.server_name}", gssapi_mod.NameType.hostbased_service)
        context = gssapi_mod.SecurityContext(
            name=target, creds=creds, usage="initiate", mech=gssapi_mod.MechType.kerberos, flags=wanted
        )
        conn.sasl_in_progress = True
        token: bytes | None = None
        while True:
            out = context.step(token)
            result = send_sasl_negotiation(conn, None, out or b"")
            if result["result"] not in (RESULT_SUCCESS, RESULT_SASL_BIND_IN_PROGRESS):
                raise _bind_refused(endpoint, bind, result)
            token = result["saslCreds"]
            if context.complete:
                break
        if not (context.actual_flags & flag.confidentiality and context.actual_flags & flag.integrity):
            raise SourceError(endpoint.url, "kerberos", "the Kerberos context offers no sealing; not continuing")
        offer = context.unwrap(token or b"").message
        if len(offer) != 4:
            raise SourceError(endpoint.url, "kerberos", "the DC sent a malformed SASL security-layer offer")
        layers, server_max = offer[0], int.from_bytes(offer[1:4], "big")
        if not layers & LAYER_CONFIDENTIALITY:
            raise SourceError(endpoint.url, "kerberos", "the DC does not offer a sealed (confidential) SASL layer")
        reply = bytes([LAYER_CONFIDENTIALITY]) + CLIENT_MAX_BUFFER.to_bytes(3, "big")
        result = send_sasl_negotiation(conn, None, context.wrap(reply, False).message)
        if result["result"] != RESULT_SUCCESS:
            raise _bind_refused(endpoint, bind, result)
    except gssapi_mod.exceptions.GSSError as exc:
        raise _kerberos_failure(endpoint, bind, exc) from None
    except ldap3.core.exceptions.LDAPException as exc:
        raise SourceError(endpoint.url, "kerberos", f"the Kerberos bind failed: {exc}") from None
    finally:
        conn.sasl_in_progress = False
    # RFC 4513 section 5.2.1.7: the layer takes effect right after the successful BindResponse.
    sealed = SealedSocket(conn.socket, context, server_max)
    conn.socket = sealed
    conn.bound = True
    return sealed


def _bind_refused(endpoint: Endpoint, bind: Bind, result: dict[str, Any]) -> SourceError:
    code = result.get("result")
    who = repr(bind.username) if bind.username else "the Kerberos principal"
    detail = f"{result.get('description')} ({code})"
    if code == RESULT_INVALID_CREDENTIALS:
        return SourceError(
            endpoint.url,
            "bind_rejected",
            f"the DC rejected the bind for {who}: invalid credentials ({detail}); "
            "not retried, so the account is not locked out",
        )
    if code == RESULT_STRONGER_AUTH_REQUIRED:
        return SourceError(
            endpoint.url,
            "bind_rejected",
            f"the DC requires stronger authentication for {who} ({detail}): use ldaps:// or auth: kerberos",
        )
    return SourceError(endpoint.url, "bind_rejected", f"the DC rejected the bind for {who}: {detail}")


@contextlib.contextmanager
def open_session(endpoint: Endpoint, bind: Bind) -> Iterator[Session]:
    """Connect, protect and bind, yield the session, then unbind; raise SourceError by reason."""
    ldap3 = import_ldap3()
    # Both also checked when the configuration is read; here so no caller can get around them.
    if not endpoint.tls and not bind.kerberos:
        raise SourceError(endpoint.url, "insecure", "a simple bind over plain ldap:// is refused")
    if endpoint.tls and bind.kerberos:
        raise SourceError(endpoint.url, "unsupported", KERBEROS_OVER_LDAPS)
    tls = _tls_class(ldap3)(endpoint.ca_file, endpoint.server_name) if endpoint.tls else None
    server = ldap3.Server(
        endpoint.host, port=endpoint.port, use_ssl=endpoint.tls, tls=tls, get_info=ldap3.NONE,
        connect_timeout=endpoint.timeout,
    )  # fmt: skip
    # receive_timeout: whole seconds (ldap3 packs it into SO_RCVTIMEO as an integer).
    if bind.kerberos:
        conn = ldap3.Connection(
            server, authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS, read_only=True,
            receive_timeout=math.ceil(endpoint.timeout), raise_exceptions=False,
        )  # fmt: skip
    else:
        password = bind.password.get_secret_value() if bind.password is not None else ""
        conn = ldap3.Connection(
            server, user=bind.username, password=password, authentication=ldap3.SIMPLE, read_only=True,
            receive_timeout=math.ceil(endpoint.timeout), raise_exceptions=False,
        )  # fmt: skip
        del password
    try:
        conn.open(read_server_info=False)
    except (ldap3.core.exceptions.LDAPException, OSError) as exc:
        raise _connection_failure(endpoint, tls, exc) from None
    session = Session(conn, endpoint, "tls" if endpoint.tls else "sasl-gssapi-sealed")
    try:
        if bind.kerberos:
            _gssapi_bind(conn, endpoint, bind)
        else:
            try:
                bound = conn.bind(read_server_info=False)
            except (ldap3.core.exceptions.LDAPException, OSError) as exc:
                message = f"the connection failed during the bind: {exc}"
                raise SourceError(endpoint.url, "unreachable", message) from None
            finally:
                conn.password = None  # ldap3 keeps it for rebinds; there are none
            if not bound:
                raise _bind_refused(endpoint, bind, conn.result)
        yield session
    finally:
        session.close()
