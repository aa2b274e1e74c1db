"""The transport we plug into ``winrm.protocol.Protocol``: auth, encryption, limits, our errors only.

``Protocol.send_message`` calls ``transport.send_message(message)`` and, if that raises pywinrm's
``WinRMTransportError``, re-parses the body with the standard library XML parser. This transport
never raises that type: it raises only `CollectError` (an HTTP 500 arrives as `HttpStatusError`
holding the decrypted body, which the caller parses with the hardened parser).
"""

from __future__ import annotations

import base64
import logging
import time

from scanner.collect.wsman.auth import Authenticator, AuthMaterial, service_principal
from scanner.collect.wsman.encryption import bad_encryption, content_type, decrypt, encrypt, is_encrypted
from scanner.collect.wsman.errors import CollectError, ConnectionDropped, HttpStatusError
from scanner.collect.wsman.faults import status_error
from scanner.collect.wsman.http import Deadline, HttpConnection, Response, tls_context
from scanner.core.models import CollectOptions, Logon, Scheme, Stage, Target

SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
MAX_AUTH_LEGS = 8  # NTLM needs 2, Kerberos 1-2, CredSSP about 5
RETRY_503_WAIT = 0.5  # seconds; Retry-After is honoured up to RETRY_503_MAX_WAIT
RETRY_503_MAX_WAIT = 5.0

log = logging.getLogger("natt_audit.collect")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def unauthorized(detail: str) -> CollectError:
    """Return the error for an HTTP 401 (bad credentials, or not authorised on the host)."""
    return CollectError(Stage.AUTH, "unauthorized", f"HTTP 401: {detail}")


class WsmanTransport:
    """One host's connection: authenticates once, encrypts on HTTP, counts requests."""

    def __init__(
        self, target: Target, material: AuthMaterial, options: CollectOptions, deadline: Deadline
    ) -> None:
        https = target.scheme is Scheme.HTTPS
        self.requests = 0
        self._deadline = deadline
        self._name = target.name
        self._where = f"{target.scheme.value}://{target.address}:{target.port}"
        self._auth = Authenticator(
            target.transport,
            material,
            hostname=target.name,
            https=https,
            spn=service_principal(target),
            ntlm_fallback=options.ntlm_fallback,
        )
        tls = None
        if https:
            try:
                tls = tls_context(options.ca_bundle, options.verify_tls, options.tls_min_version)
            except (OSError, ValueError) as exc:
                raise CollectError(
                    Stage.TLS, "tls_verify", f"cannot load the CA bundle ({type(exc).__name__})"
                ) from None
        host = f"[{target.name}]" if ":" in target.name else target.name
        self._conn = HttpConnection(
            address=target.address,
            port=target.port,
            host_header=f"{host}:{target.port}",
            deadline=deadline,
            connect_timeout=options.connect_timeout,
            max_body=options.max_response_bytes,
            tls=tls,
            server_hostname=target.name if https else None,
        )
        self._authenticated_connection = -1  # HttpConnection.connections value the context belongs to
        # What became of the credentials on this host (docs/authentication.md#lockout-safety). Once
        # REJECTED, no further logon is attempted on this transport: every retry path (503, dropped
        # keep-alive) goes through _ensure_authenticated, which refuses to start another handshake.
        self.logon: Logon | None = None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def authenticate(self) -> None:
        """Run the handshake now (NTLM: two requests); Basic needs none. A fault in reply is classified."""
        try:
            self._ensure_authenticated()
        except HttpStatusError as exc:
            raise status_error(exc) from None

    @property
    def challenge_version(self) -> tuple[int, int, int] | None:
        """Return the version the host's NTLM CHALLENGE announced (MS-NLMP 2.2.2.10), once authenticated."""
        return self._auth.challenge_version if self._auth.complete else None

    def send_message(self, message: str | bytes) -> bytes:
        """Send one SOAP message and return the (decrypted) reply body of an HTTP 200.

        After a 503, or when a reused keep-alive connection drops before replying, the message is
        sent once more, on a new connection with a new security context. Never on the old one:
        whether the host unsealed the first copy (and advanced its sequence number, MS-NLMP 3.4.4)
        is unknown, so sealing it again with the next sequence number could be refused or, worse,
        accepted twice. A new context starts both sides at sequence number 0.
        """
        data = message.encode("utf-8") if isinstance(message, str) else message
        retried = False
        while True:
            try:
                response = self._send(data)
            except ConnectionDropped:
                if retried:
                    raise
                retried = True
                self._conn.close()
                continue
            if response.status == 503 and not retried and self._wait_for_retry(response):
                retried = True
                self._conn.close()
                continue
            return self._handle(response)

    def _connect(self) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            self._conn.connect()
            return
        started = time.perf_counter()
        try:
            self._conn.connect()
        except CollectError as exc:
            log.debug("%s: connection failed after %.1f ms: %s", self._name, _ms(started), exc)
            raise
        log.debug(
            "%s: connected to %s (connection %d) in %.1f ms",
            self._name,
            self._where,
            self._conn.connections,
            _ms(started),
        )

    def _post(self, headers: list[tuple[str, str]], body: bytes, what: str) -> Response:
        if not self._conn.connected:
            self._connect()  # a refused connection or failed TLS handshake sent no request
        self.requests += 1
        if not log.isEnabledFor(logging.DEBUG):
            return self._conn.request(headers, body)
        # Per request, so only under -v: the request's kind, sizes, status and time, never a
        # header value (Authorization carries tokens) or a body.
        started = time.perf_counter()
        try:
            response = self._conn.request(headers, body)
        except CollectError as exc:
            log.debug(
                "%s: request %d (%s, %d bytes) failed after %.1f ms: %s",
                self._name,
                self.requests,
                what,
                len(body),
                _ms(started),
                exc,
            )
            raise
        log.debug(
            "%s: request %d (%s, %d bytes) -> HTTP %d, %d bytes in %.1f ms",
            self._name,
            self.requests,
            what,
            len(body),
            response.status,
            len(response.body),
            _ms(started),
        )
        return response

    def _rejected(self, detail: str) -> CollectError:
        """Record a rejected logon and return its error (an accepted logon earlier still proves the account)."""
        if self.logon is None:
            self.logon = Logon.REJECTED
        return unauthorized(detail)

    def _ensure_authenticated(self) -> None:
        auth = self._auth
        if self.logon is Logon.REJECTED:
            # Never a second logon after a rejection: each one counts against the account's lockout
            # threshold on the domain controller (docs/authentication.md#lockout-safety).
            raise unauthorized("credentials rejected; not tried again on this host")
        if not auth.handshake:
            return
        if self._conn.connected and self._authenticated_connection == self._conn.connections:
            return
        if not self._conn.connected:
            self._connect()
        auth.new_context(self._conn.peer_certificate)
        token = auth.step(None)
        sent_credentials = False
        for leg in range(1, MAX_AUTH_LEGS + 1):
            if token is None:
                raise CollectError(Stage.AUTH, "auth_failed", "authentication produced no token to send")
            sent_credentials = sent_credentials or auth.carries_credentials(token)
            connection = self._conn.connections
            response = self._post(
                [
                    ("Authorization", f"{auth.scheme} {base64.b64encode(token).decode('ascii')}"),
                    ("Content-Type", SOAP_CONTENT_TYPE),
                ],
                b"",
                f"{auth.scheme} auth leg {leg}",
            )
            server_token = auth.server_token(response.header("www-authenticate"))
            if response.status == 200:
                if server_token is not None and not auth.complete:
                    auth.step(server_token)  # Kerberos mutual authentication
                if not auth.complete:
                    raise CollectError(
                        Stage.AUTH, "auth_failed", "host accepted an unfinished authentication"
                    )
                if not self._conn.connected or self._conn.connections != connection:
                    raise CollectError(
                        Stage.AUTH, "auth_failed", "host closed the connection after authenticating"
                    )
                self._authenticated_connection = connection
                self.logon = Logon.ACCEPTED
                if log.isEnabledFor(logging.DEBUG):
                    log.debug(
                        "%s: authenticated as %s with %s (%s) in %d legs%s",
                        self._name,
                        self._auth.material.username,
                        auth.scheme,
                        auth.mechanism if auth.mechanism == auth.method.value else f"negotiate: {auth.mechanism}",
                        leg,
                        ", messages encrypted (MS-WSMV 2.2.9.1)" if auth.encrypts else "",
                    )
                return
            if response.status == 401:
                if server_token is None and leg == 1 and auth.mechanism == "ntlm":
                    # Refused before a CHALLENGE was sent: no credential was checked, the host does
                    # not take NTLM at all (restricted or disabled; docs/authentication.md#choosing-a-transport).
                    raise CollectError(
                        Stage.AUTH,
                        "ntlm_refused",
                        "HTTP 401 to the NTLM NEGOTIATE: the host does not accept NTLM (restricted or disabled"
                        " there); scan it with transport kerberos or negotiate",
                    )
                if server_token is None and leg == 1 and auth.mechanism == "kerberos":
                    raise unauthorized(
                        f"the host refused the Kerberos ticket for {auth.spn_text} (its keytab does not match"
                        " the SPN's account, or the account may not log on to it)"
                    )
                if server_token is None or auth.complete:
                    if not sent_credentials:
                        # Refused before any credential left (NTLM NEGOTIATE): no logon happened.
                        raise unauthorized("the host refused the authentication offer")
                    raise self._rejected("credentials rejected or account not authorised")
                if not self._conn.connected:
                    raise CollectError(
                        Stage.AUTH, "auth_failed", "host closed the connection mid-authentication"
                    )
                token = auth.step(server_token)
                continue
            raise self._status_error(response, handshake=True)
        raise CollectError(
            Stage.AUTH, "auth_failed", f"authentication did not finish in {MAX_AUTH_LEGS} legs"
        )

    def _send(self, data: bytes) -> Response:
        self._ensure_authenticated()
        auth = self._auth
        if auth.encrypts:
            body = encrypt(auth.context, auth.encryption_protocol, data)
            headers = [("Content-Type", content_type(auth.encryption_protocol))]
        else:
            body = data
            headers = [("Content-Type", SOAP_CONTENT_TYPE)]
            if not auth.handshake:
                headers.append(("Authorization", auth.basic_header()))
        return self._post(headers, body, "encrypted message" if auth.encrypts else "message")

    def _wait_for_retry(self, response: Response) -> bool:
        """Sleep before retrying a 503 if the deadline leaves room for the retry; else False."""
        wait = RETRY_503_WAIT
        retry_after = response.header("retry-after").strip()
        if retry_after.isdigit():
            wait = min(float(retry_after), RETRY_503_MAX_WAIT)
        if self._deadline.remaining() <= wait + 1.0:
            return False
        time.sleep(wait)
        return True

    def _body(self, response: Response) -> bytes:
        if not self._auth.encrypts or not response.body:
            return response.body
        if not is_encrypted(response.header("content-type"), self._auth.encryption_protocol):
            raise bad_encryption("the host sent an unencrypted reply on an encrypted session")
        return decrypt(self._auth.context, self._auth.encryption_protocol, response.body)

    def _status_error(self, response: Response, *, handshake: bool = False) -> HttpStatusError:
        """Return the error for a non-2xx reply, holding its body (decrypted if it came encrypted)."""
        reason = "".join(ch for ch in response.reason[:80] if ch.isprintable())
        message = f"HTTP {response.status} {reason}".rstrip()
        body, unencrypted = response.body, False
        if body and self._auth.encrypts and not handshake:
            if is_encrypted(response.header("content-type"), self._auth.encryption_protocol):
                body = decrypt(self._auth.context, self._auth.encryption_protocol, body)
            else:
                # WinRM answers in clear what it could not decrypt or accept (docs/wire.md): such a
                # body is read only as a fault, never as data.
                unencrypted = True
        return HttpStatusError(response.status, body, message, unencrypted=unencrypted, handshake=handshake)

    def _handle(self, response: Response) -> bytes:
        basic = not self._auth.handshake  # Basic: every request carries the credentials
        if response.status == 200:
            if basic and self.logon is None:
                self.logon = Logon.ACCEPTED
            return self._body(response)
        if response.status == 401:
            if basic:
                raise self._rejected("credentials rejected or account not authorised")
            raise unauthorized("the host refused the authenticated request")
        raise self._status_error(response)
