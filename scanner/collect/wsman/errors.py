"""Classified collection failures: one exception type carrying a stage and a stable reason code.

Every failure while reading a host ends as ``HostError(stage, reason, message)``. The reason codes
are part of the report format (JSON, SIEM exports): keep them stable, add new ones at the end.

=========  ======================  ===========================================================
stage      reason                  meaning
=========  ======================  ===========================================================
connect    dns                     the name did not resolve (or the resolver hung past the deadline)
connect    refused                 TCP connection refused (RST to SYN)
connect    unreachable             no route / network or host unreachable / other socket error
connect    connect_timeout         no TCP connection within ``connect_timeout`` (SYN black-holed)
connect    reset                   the peer reset an established connection
connect    closed                  the peer closed the connection before a full reply
tls        tls_verify              certificate not trusted, expired or for another name
tls        tls_handshake           any other TLS failure
auth       unauthorized            HTTP 401: bad credentials, or authenticated but not authorised
auth       auth_failed             the authentication exchange itself broke (bad/missing token)
auth       transport_unavailable   the auth method needs an extra that is not installed
auth       insecure_basic          Basic requested over plain HTTP: refused, nothing sent
collect    http_<status>           an HTTP status other than 200/401/500 (e.g. http_502, http_503)
collect    wsman_fault             a SOAP fault not listed below; the WSManFault Code is in the message
collect    quota                   a quota fault: WSManFault or MSFT_WmiError 2150859173 / 2150859174 ...
collect    access_denied           an access-denied fault in any shape (5, 0x80070005, 0x80041003,
                                   0x80338104...), or StdRegProv ReturnValue 5
collect    wmi_class               not found: resource, WMI class, namespace or query (2150858752 ...)
collect    operation_timeout       fault 2150858793 (WS-Man operation timeout) and its kin
collect    unexpected_return       a StdRegProv ReturnValue or reply content we cannot interpret
collect    internal_error          a bug in natt-audit; message holds the exception type name only
parse      malformed_xml           the reply is not well-formed XML (or not UTF-8)
parse      xml_forbidden           the reply holds a DOCTYPE / entity declaration (bombs, XXE)
parse      xml_too_deep            element nesting deeper than the limit
parse      oversize                headers or body larger than the caps
parse      missing_element         a required element is absent or empty
parse      relates_to              ``a:RelatesTo`` missing or not our ``a:MessageID``
parse      bad_encryption          an unencrypted, badly framed or tampered reply on an encrypted session
parse      bad_os_version          ``Win32_OperatingSystem.Version`` missing or not a version number
parse      bad_http                a reply that is not HTTP/1.x
timeout    deadline                the per-host wall-clock deadline passed
collect    invalid_selectors       the host refused the request's selectors (2150858813 ...)
collect    not_supported           the host does not support the action, filter or method asked for
collect    request_rejected        the host refused the request itself: schema, XML, headers, size
site       bad_result              a site worker's result for the host was malformed or refused (docs/sites.md)
site       no_collector            no live worker took the host's site's batches within ``--site-timeout``
auth       not_attempted           not contacted: the lockout breaker stopped the scan after other
                                   hosts rejected the credentials (scanner/engine/logon.py)
auth       ntlm_refused            HTTP 401 to the NTLM NEGOTIATE: the host does not take NTLM at all
auth       spn_unknown             the KDC knows no HTTP/<name> (KDC_ERR_S_PRINCIPAL_UNKNOWN)
auth       no_spn                  Kerberos for an IP address without an ``spn`` (negotiate only)
auth       no_password             NTLM/Basic/CredSSP on a scan that has only Kerberos credentials
auth       kdc_unreachable         (negotiate, no NTLM fallback) no KDC could be reached
auth       clock_skew              (negotiate, no NTLM fallback) KRB_AP_ERR_SKEW
auth       etype_unsupported       no common Kerberos encryption type (KDC_ERR_ETYPE_NOSUPP ...)
auth       ticket_expired          KRB_AP_ERR_TKT_EXPIRED
auth       kerberos_error          a krb5 code not classified; the message names it
site       no_logon_state          a site worker could not read its account's shared logon state
                                   (the broker) while unproven: not contacted (docs/sites.md)
=========  ======================  ===========================================================

A refused Kerberos logon (preauth_failed, client_revoked, client_unknown, password_expired,
kdc_policy, kdc_unreachable, clock_skew, keytab_unusable, no_ticket) stops the scan before any
host (exit 2, `scanner.collect.wsman.kerberos.KerberosLoginError`) and is never a host's error;
the reasons are the same words. The krb5 codes behind each are in scanner/collect/wsman/kerberos.py.

The fault families (which codes, subcodes and texts belong to which reason) are in
`scanner.collect.wsman.faults`; docs/wire.md lists every fault shape with its public source.
"""

from __future__ import annotations

from scanner.core.models import HostError, Stage


class CollectError(Exception):
    """A classified failure while reading one host; never carries a credential."""

    def __init__(self, stage: Stage, reason: str, message: str) -> None:
        super().__init__(f"{stage.value}/{reason}: {message}")
        self.stage = stage
        self.reason = reason
        self.message = message

    def to_host_error(self) -> HostError:
        """Return the report form of this failure."""
        return HostError(stage=self.stage, reason=self.reason, message=self.message)


class HttpStatusError(CollectError):
    """A reply whose HTTP status is not 200; `body` is the (decrypted) body for fault parsing.

    `unencrypted` marks a body that came in clear on an encrypted session, `handshake` one that came
    during authentication: either may be read only as a fault
    (scanner.collect.wsman.faults.status_error), never as data.
    """

    def __init__(
        self, status: int, body: bytes, message: str, *, unencrypted: bool = False, handshake: bool = False
    ) -> None:
        super().__init__(Stage.COLLECT, f"http_{status}", message)
        self.status = status
        self.body = body
        self.unencrypted = unencrypted
        self.handshake = handshake


class ConnectionDropped(CollectError):
    """A reused keep-alive connection closed or reset before any byte of the reply arrived.

    The request may not have been processed; a client may retry it once on a new connection (RFC
    9112 section 9.3.1, the usual keep-alive race).
    """


def deadline_error() -> CollectError:
    """Return the error for a host whose wall-clock budget ran out."""
    return CollectError(Stage.TIMEOUT, "deadline", "host deadline exceeded")
