"""One Kerberos logon per scan, and what the KDC's and GSSAPI's error codes mean.

The scan gets its TGT once, before any host is contacted (docs/authentication.md#lockout-safety):
one AS exchange with the password or the client keytab, into a scan-private ``MEMORY:`` credential
cache (the user's own cache is never written), or a copy of the TGT of an existing cache
(``kinit``, or a keytab-refreshed cache of a nightly job). Every host's context then takes its
ticket from that cache: one TGS exchange per host, the ticket kept there for the rest of the scan
(a retried host reuses it). MIT krb5 makes one cache safe to share between threads.

Failures are classified from the krb5 error table codes (MIT ``krb5.h``, ``ERROR_TABLE_BASE_krb5``
+ the RFC 4120 section 7.5.9 code), never from the English text: `classify` gives each a stable
reason (the report's ``auth/<reason>``) and a message that says what to do.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from scanner.collect.wsman.errors import CollectError
from scanner.core.errors import NattError
from scanner.core.models import Credentials, Stage

# MIT krb5.h: ERROR_TABLE_BASE_krb5 (-1765328384) + the RFC 4120 KRB-ERROR code, and library codes.
KDC_ERR_C_PRINCIPAL_UNKNOWN = -1765328378
KDC_ERR_S_PRINCIPAL_UNKNOWN = -1765328377
KDC_ERR_POLICY = -1765328372
KDC_ERR_ETYPE_NOSUPP = -1765328370
KDC_ERR_CLIENT_REVOKED = -1765328366
KDC_ERR_KEY_EXP = -1765328361
KDC_ERR_PREAUTH_FAILED = -1765328360
KRB_AP_ERR_TKT_EXPIRED = -1765328352
KRB_AP_ERR_BAD_INTEGRITY = -1765328353  # an AS-REP the password's key cannot decrypt: wrong password
KRB_AP_ERR_SKEW = -1765328347
KRB5_CC_NOTFOUND = -1765328243
KRB5_REALM_UNKNOWN = -1765328230
KRB5_KDC_UNREACH = -1765328228
KRB5_KT_NOTFOUND = -1765328203
KRB5_KT_END = -1765328202
KRB5_FCC_NOFILE = -1765328189
KRB5_REALM_CANT_RESOLVE = -1765328164
KRB5_CC_NOSUPP = -1765328137
KRB5_CC_NOT_KTYPE = -1765328184  # the KDC answered with an encryption type this machine did not ask for

_ACCOUNT_NEXT = "nothing was scanned, and no host was contacted"


@dataclass(frozen=True)
class Failure:
    """What one krb5 error code means: a stable reason and what to do about it."""

    reason: str
    name: str  # the krb5 error name, for people who search for it
    advice: str


_FAILURES: dict[int, Failure] = {
    code: failure
    for codes, failure in (
        (
            (KRB5_KDC_UNREACH, KRB5_REALM_UNKNOWN, KRB5_REALM_CANT_RESOLVE),
            Failure(
                "kdc_unreachable",
                "KRB5_KDC_UNREACH",
                "no KDC of the realm could be reached: check the realm's kdc entries in krb5.conf (or its DNS"
                " SRV records) and that TCP/UDP port 88 to a domain controller is open",
            ),
        ),
        (
            (KDC_ERR_PREAUTH_FAILED, KRB_AP_ERR_BAD_INTEGRITY),
            Failure(
                "preauth_failed",
                "KDC_ERR_PREAUTH_FAILED",
                "the KDC refused the pre-authentication: the password (or the keytab's key) is wrong. The"
                " attempt counts towards the account's lockout threshold: correct the password before the"
                " next run",
            ),
        ),
        (
            (KDC_ERR_CLIENT_REVOKED,),
            Failure(
                "client_revoked",
                "KDC_ERR_CLIENT_REVOKED",
                "the KDC revoked the account's credentials: the account is locked out or disabled. Have a"
                " domain administrator unlock or enable it, and find what locked it before the next run",
            ),
        ),
        (
            (KRB_AP_ERR_SKEW,),
            Failure(
                "clock_skew",
                "KRB_AP_ERR_SKEW",
                "this machine's clock and the KDC's differ by more than the allowed skew (5 minutes by"
                " default): synchronise this machine's clock with the domain (NTP)",
            ),
        ),
        (
            (KDC_ERR_C_PRINCIPAL_UNKNOWN,),
            Failure(
                "client_unknown",
                "KDC_ERR_C_PRINCIPAL_UNKNOWN",
                "the KDC does not know the account: check the username and its realm (user@REALM, the realm"
                " in upper case; DOMAIN\\user takes krb5.conf's default_realm)",
            ),
        ),
        (
            (KDC_ERR_S_PRINCIPAL_UNKNOWN,),
            Failure(
                "spn_unknown",
                "KDC_ERR_S_PRINCIPAL_UNKNOWN",
                "the KDC knows no such service principal: register HTTP/<fqdn> on the host's account"
                " (setspn -S HTTP/<fqdn> <host>), scan the host by the name its SPN has, or give the"
                " inventory entry its spn",
            ),
        ),
        (
            (KDC_ERR_KEY_EXP,),
            Failure("password_expired", "KDC_ERR_KEY_EXPIRED", "the account's password has expired: set a new one"),
        ),
        (
            (KDC_ERR_POLICY,),
            Failure(
                "kdc_policy",
                "KDC_ERR_POLICY",
                "the KDC's policy refuses this logon (logon hours, allowed workstations, Protected Users or"
                " an authentication policy): allow the account to log on from this machine",
            ),
        ),
        (
            (KDC_ERR_ETYPE_NOSUPP, KRB5_CC_NOT_KTYPE),
            Failure(
                "etype_unsupported",
                "KDC_ERR_ETYPE_NOSUPP",
                "the KDC and this machine share no encryption type for the account or the host: check"
                " msDS-SupportedEncryptionTypes and permitted_enctypes in krb5.conf",
            ),
        ),
        (
            (KRB_AP_ERR_TKT_EXPIRED,),
            Failure(
                "ticket_expired",
                "KRB_AP_ERR_TKT_EXPIRED",
                "the ticket has expired: run kinit again (or have the keytab job refresh the cache), or give"
                " a password or a client keytab",
            ),
        ),
        (
            (KRB5_FCC_NOFILE, KRB5_CC_NOTFOUND, KRB5_CC_NOSUPP),
            Failure(
                "no_ticket",
                "KRB5_FCC_NOFILE",
                "the credential cache holds no usable ticket: run kinit, or give a password or a client keytab",
            ),
        ),
        (
            (KRB5_KT_NOTFOUND, KRB5_KT_END),
            Failure(
                "keytab_unusable",
                "KRB5_KT_NOTFOUND",
                "the keytab holds no key for the account: export one (ktutil, or samba-tool domain"
                " exportkeytab --principal=...) or name the principal it holds",
            ),
        ),
    )
    for code in codes
}

# Reasons after which transport negotiate may use NTLM for a host: Kerberos could not name or
# reach it, and no credential was refused (docs/authentication.md#choosing-a-transport).
FALLBACK_REASONS = frozenset({"spn_unknown", "kdc_unreachable", "clock_skew", "no_spn"})


def classify(code: int | None) -> Failure:
    """Return what a krb5 error code means; an unlisted code is `kerberos_error`, named by number."""
    if code is not None and code in _FAILURES:
        return _FAILURES[code]
    number = "no code" if code is None else f"code {code}"
    advice = "a Kerberos error this scanner does not classify; KRB5_TRACE=/dev/stderr shows the exchange"
    return Failure("kerberos_error", number, advice)


def krb5_code(exc: BaseException) -> int | None:
    """Return the krb5 error code behind a pykrb5, python-gssapi or pyspnego exception, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "err_code", None)  # krb5.Krb5Error
        if isinstance(code, int):
            return code
        minor = getattr(current, "min_code", None)  # gssapi.raw.GSSError: the mechanism's (krb5's) code
        if isinstance(minor, int) and minor:
            # GSSAPI's minor status is an OM_uint32; krb5's codes are negative 32-bit integers.
            return minor - (1 << 32) if minor >= 1 << 31 else minor
        base = getattr(current, "base_error", None)  # spnego.exceptions.SpnegoError
        current = base if isinstance(base, BaseException) else (current.__cause__ or current.__context__)
    return None


class KerberosLoginError(NattError):
    """The scan's Kerberos logon failed before any host was contacted (exit 2); `reason` is classify's."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def host_failure(exc: BaseException, spn: str) -> CollectError:
    """Return the classified error of one host's Kerberos context (its TGS exchange or its token)."""
    failure = classify(krb5_code(exc))
    return CollectError(Stage.AUTH, failure.reason, f"Kerberos for {spn}: {failure.name}: {failure.advice}")


def principal_of(username: str) -> str:
    """Return the Kerberos principal for a username: user@REALM as given (realm upper-cased), DOMAIN\\user as user."""
    if "\\" in username:
        # The NetBIOS domain is not the realm; krb5.conf's default_realm is (docs/authentication.md#credentials).
        return username.split("\\", 1)[1]
    user, at, realm = username.rpartition("@")
    return f"{user}@{realm.upper()}" if at and user else username


class KerberosLogin:
    """The scan's TGT, in a MEMORY credential cache that only this process sees; close() destroys it."""

    def __init__(self, context: Any, cache: Any, principal: str) -> None:
        self._context = context
        self._cache = cache
        self.principal = principal
        self.ccache = (cache.cache_type + b":" + cache.name).decode("utf-8")

    def __repr__(self) -> str:
        return f"KerberosLogin(principal={self.principal!r}, ccache={self.ccache!r})"

    def credential(self) -> Any:
        """Return the pyspnego credential that takes tickets from this cache."""
        import spnego

        return spnego.KerberosCCache(ccache=self.ccache)

    def close(self) -> None:
        """Destroy the cache and every ticket in it."""
        import krb5

        if self._cache is not None:
            krb5.cc_destroy(self._context, self._cache)
            self._cache = None


def _fail(credentials: Credentials, principal: str, exc: BaseException) -> KerberosLoginError:
    failure = classify(krb5_code(exc))
    source = "the keytab " + repr(credentials.keytab) if credentials.keytab else (
        "the password" if credentials.password is not None else "the ticket cache"
    )
    return KerberosLoginError(
        f"Kerberos logon as {principal or 'the default principal'} with {source} failed"
        f" (auth/{failure.reason}, {failure.name}): {failure.advice}; {_ACCOUNT_NEXT}",
        failure.reason,
    )


def _unparsed(client: Any, fallback: str) -> str:
    name = client.name
    return name.decode("utf-8", errors="replace") if isinstance(name, bytes) else fallback


def login(credentials: Credentials) -> KerberosLogin:
    """Get the scan's TGT: one AS exchange (password, keytab), or the TGT of an existing cache.

    Raises KerberosLoginError (exit 2) with the classified reason; ImportError when the Kerberos
    extra is missing.
    """
    import gssapi
    import gssapi.raw
    import krb5

    principal = principal_of(credentials.username) if credentials.username else ""
    context = krb5.init_context()
    name = f"MEMORY:natt-audit-{secrets.token_hex(8)}".encode("ascii")
    try:
        cache = krb5.cc_resolve(context, name)
        if credentials.ccache is not None:
            # Copy the TGT out of the user's cache: read it, never write it (tickets go to ours).
            store: dict[bytes | str, bytes | str] = {}
            if credentials.ccache:
                store[b"ccache"] = credentials.ccache.encode("utf-8")
            source = gssapi.raw.acquire_cred_from(store, usage="initiate", mechs=[gssapi.MechType.kerberos]).creds
            gssapi.raw.store_cred_into(
                {b"ccache": name}, source, usage="initiate", mech=gssapi.MechType.kerberos, overwrite=True
            )
            found = krb5.cc_get_principal(context, cache)
            principal = found.name.decode("utf-8") if found.name else principal
            return KerberosLogin(context, cache, principal)
        options = krb5.get_init_creds_opt_alloc(context)
        krb5.get_init_creds_opt_set_canonicalize(options, True)
        if credentials.keytab is not None:
            keytab = krb5.kt_resolve(context, b"FILE:" + credentials.keytab.encode("utf-8"))
            if principal:
                client = krb5.parse_name_flags(context, principal.encode("utf-8"))
                principal = _unparsed(client, principal)
            else:
                entries = list(keytab)
                if not entries:
                    raise KerberosLoginError(
                        f"the keytab {credentials.keytab!r} holds no key; {_ACCOUNT_NEXT}", "keytab_unusable"
                    )
                client = krb5.copy_principal(context, entries[0].principal)
                principal = _unparsed(client, principal)
        else:
            if credentials.password is None:
                raise KerberosLoginError("no password, keytab or ticket cache for Kerberos", "no_ticket")
            client = krb5.parse_name_flags(context, principal.encode("utf-8"))
            principal = _unparsed(client, principal)  # with the default realm added
        # The step API, not krb5_get_init_creds_password/_keytab: those retry a refused
        # pre-authentication against the "primary KDC" when the answer did not come from one, and
        # with no primary_kdc in krb5.conf (the usual AD set-up) no answer does, so one wrong
        # password cost two failed logons (MIT gic_pwd.c; docs/authentication.md#lockout-safety).
        exchange = krb5.init_creds_init(context, client, options)
        if credentials.keytab is not None:
            krb5.init_creds_set_keytab(context, exchange, keytab)
        else:
            assert credentials.password is not None
            password = credentials.password.get_secret_value().encode("utf-8", errors="surrogatepass")
            krb5.init_creds_set_password(context, exchange, password)
        krb5.init_creds_get(context, exchange)
        creds = krb5.init_creds_get_creds(context, exchange)
        krb5.cc_initialize(context, cache, creds.client)
        krb5.cc_store_cred(context, cache, creds)
        found_name = creds.client.name
        return KerberosLogin(context, cache, found_name.decode("utf-8") if found_name else principal)
    except (krb5.Krb5Error, gssapi.raw.GSSError) as exc:
        raise _fail(credentials, principal, exc) from None


def usable_cache(ccache: str | None) -> str | None:
    """Return the principal of a credential cache (None: KRB5CCNAME or the default) that holds a valid TGT.

    None when there is no such cache, it holds no TGT, the TGT has expired, or the Kerberos extra
    is not installed: the caller then asks for a password as usual.
    """
    try:
        import gssapi
        import gssapi.raw
    except ImportError:
        return None
    store: dict[bytes | str, bytes | str] = {b"ccache": ccache.encode("utf-8")} if ccache else {}
    try:
        creds = gssapi.raw.acquire_cred_from(store, usage="initiate", mechs=[gssapi.MechType.kerberos]).creds
        info = gssapi.raw.inquire_cred(creds, name=True, lifetime=True)
    except gssapi.raw.GSSError:
        return None
    if not info.lifetime or info.name is None:
        return None
    return str(gssapi.Name(base=info.name))  # the display name (user@REALM), not the raw handle


def keytab_principal(keytab: str) -> str | None:
    """Return the client keytab's first principal (the one `login` logs on as when no name is given).

    None when the keytab cannot be read, holds no key, or the Kerberos extra is not installed.
    """
    try:
        import krb5
    except ImportError:
        return None
    try:
        context = krb5.init_context()
        entries = list(krb5.kt_resolve(context, b"FILE:" + keytab.encode("utf-8")))
        if not entries:
            return None
        return _unparsed(krb5.copy_principal(context, entries[0].principal), "") or None
    except krb5.Krb5Error:
        return None
