"""Read one host over WinRM/WMI into `Observation`s; never raise per host.

Per host, shell-free (docs/domain.md#reading-without-a-shell), on one keep-alive connection:

1. NTLM handshake, pre-emptive Negotiate (2 requests), then MS-WSMV message encryption on HTTP;
2. the OS facts: from the VERSION field of the host's NTLM CHALLENGE when it says NT 6.0 or later,
   else from the inventory's os_version when that says 6.0 or later, else (NT 5.x, where the
   service pack decides; Kerberos or Basic without an os_version; a policy reading
   os.service_pack) a WQL ``Enumerate`` of Win32_OperatingSystem (1 request). docs/wire.md, "OS
   facts", explains why that is enough for every verdict;
3. ``StdRegProv.GetDWORDValue`` of the NAT-T value at Services\\IPsec and Services\\PolicyAgent
   (2 requests). Both keys are always read: one applies to the OS, the other can only hold a
   stray value (on Windows 2000 / XP before SP2 neither applies: both are stray candidates).

So the common case on NT 6+ is exactly 4 HTTP requests (5 with the WQL read). Only when a value
exists with another type (ReturnValue 0x80041005) are ``EnumValues`` (stored name + type code) and
the matching ``Get*Value`` added for that key.

With ``--legacy-port-fallback``, a host whose WinRM 2.0+ port (5985/5986) refuses the connection
is tried once more on WinRM 1.1's (80/443), within the same deadline; the observation's target
then names the port actually used.

Key presence (`KeyRead.key_present`): ReturnValue 0 and 0x80041005 prove the key exists. Windows
returns 2 (ERROR_FILE_NOT_FOUND) for both a missing key and a missing value, so from one
GetDWORDValue call the two cannot be told apart without another request: we report 2 as
``key_present=False`` (meaning "not shown to exist") and 1 as ``key_present=True`` (a value-level
"not found" in an opened key). Both are "absent" for the effective mode (docs/domain.md#effective-mode), so
the rule changes no verdict. The stored spelling of the value name is known only when EnumValues
was called; otherwise the canonical `VALUE_NAME` is reported.

Failures become ``Observation(error=HostError(stage, reason, message))``; the reason codes are
listed in `scanner.collect.wsman.errors`.
"""

from __future__ import annotations

import logging
import time

from scanner.collect.wsman import wmi
from scanner.collect.wsman.auth import AuthMaterial
from scanner.collect.wsman.errors import CollectError
from scanner.collect.wsman.http import Deadline
from scanner.collect.wsman.kerberos import KerberosLoginError
from scanner.collect.wsman.protocol import new_protocol
from scanner.collect.wsman.transport import WsmanTransport
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    CollectOptions,
    Credentials,
    HostError,
    KeyRead,
    Observation,
    OsInfo,
    OsSource,
    RegistryValue,
    Stage,
    Target,
)

KEYS = (IPSEC_KEY, POLICYAGENT_KEY)

log = logging.getLogger("natt_audit.collect")


def read_key(protocol: wmi.Sender, key: str) -> KeyRead:
    """Read the NAT-T value at one HKLM key: DWORD in one call; any other type in three."""
    rv, data = wmi.get_dword(protocol, key, VALUE_NAME)
    if rv == wmi.RV_OK:
        return KeyRead(
            key=key, key_present=True, value=RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=data)
        )
    if rv in wmi.RV_NOT_FOUND:
        return KeyRead(key=key, key_present=rv == 1)
    if rv == wmi.RV_ACCESS_DENIED:
        raise wmi.access_denied("GetDWORDValue", key)
    if rv != wmi.RV_TYPE_MISMATCH:
        raise wmi.unexpected("GetDWORDValue", key, rv)
    erv, entries = wmi.enum_values(protocol, key)
    if erv == wmi.RV_ACCESS_DENIED:
        raise wmi.access_denied("EnumValues", key)
    if erv != wmi.RV_OK:
        raise wmi.unexpected("EnumValues", key, erv)
    # Registry names compare case-insensitively; KB 885407 says the name is case-sensitive for
    # IPsec, so keep the stored spelling for the report.
    wanted = VALUE_NAME.upper()
    match = next(((name, code) for name, code in entries if name.upper() == wanted), None)
    if match is None or match[1] == 4:
        raise CollectError(
            Stage.COLLECT,
            "unexpected_return",
            f"GetDWORDValue on HKLM\\{key} reported a type mismatch but EnumValues disagrees",
        )
    name, code = match
    value = wmi.read_typed(protocol, key, name, code)
    return KeyRead(
        key=key, key_present=True, value=RegistryValue(name=name, type=wmi.type_name(code), data=value)
    )


def known_os(target: Target, challenge: tuple[int, int, int] | None, options: CollectOptions) -> OsInfo | None:
    """Return the OS facts when the NTLM CHALLENGE or the inventory settles them (NT 6.0+), else None.

    The challenge is the host speaking now, so it wins over the inventory; one that names NT 5.x
    means WMI must be read (the service pack decides XP's behaviour, KB 885407). A version no
    Windows sends (pyspnego's own 0.x, say) is ignored.
    """
    if options.read_os_always:
        return None
    if challenge is not None and 5 <= challenge[0] < 100 and challenge[2] > 0:
        major, minor, build = challenge
        if major < 6:
            return None
        return OsInfo(version=f"{major}.{minor}.{build}", build=build, source=OsSource.NTLM_CHALLENGE)
    if target.os_version is not None:
        parts = [int(p) for p in target.os_version.split(".")]
        if parts[0] >= 6:
            inventory_build = parts[2] if len(parts) > 2 else None
            return OsInfo(version=target.os_version, build=inventory_build, source=OsSource.INVENTORY)
    return None


def _read_host(
    transport: WsmanTransport, protocol: wmi.Sender, target: Target, options: CollectOptions
) -> tuple[OsInfo, tuple[KeyRead, ...]]:
    transport.authenticate()
    os_info = known_os(target, transport.challenge_version, options) or wmi.read_os(protocol)
    return os_info, tuple(read_key(protocol, key) for key in KEYS)


def _attempt(target: Target, material: AuthMaterial, options: CollectOptions, deadline: Deadline) -> Observation:
    transport: WsmanTransport | None = None
    try:
        transport = WsmanTransport(target, material, options, deadline)
        try:
            os_info, keys = _read_host(transport, new_protocol(target, options, transport), target, options)
        finally:
            transport.close()
        return Observation(
            target=target, requests=transport.requests, os=os_info, keys=keys, logon=transport.logon
        )
    except CollectError as exc:
        error = exc.to_host_error()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001
        # Final guard, by contract: one host's bug must not stop the scan. Only the exception's
        # TYPE is kept: its message could hold request data (never log str(exc) here).
        error = HostError(
            stage=Stage.COLLECT, reason="internal_error", message=f"internal error ({type(exc).__name__})"
        )
    if transport is None:
        return Observation(target=target, error=error)
    return Observation(target=target, requests=transport.requests, error=error, logon=transport.logon)


def _refused(observation: Observation) -> bool:
    """Return whether the host refused the TCP connection, so no credential ever reached it."""
    error = observation.error
    return (
        error is not None
        and error.stage is Stage.CONNECT
        and error.reason == "refused"
        and observation.logon is None  # a host that saw the credentials is never tried on another port
    )


def _collect(target: Target, material: AuthMaterial, options: CollectOptions) -> Observation:
    """Read one host, once more on the WinRM 1.1 port when asked and the first port refused."""
    deadline = Deadline(options.host_timeout)
    observation = _attempt(target, material, options, deadline)
    fallback = dict(options.fallback_ports).get(target.port) if options.legacy_port_fallback else None
    if fallback is None or not _refused(observation) or deadline.expired():
        return observation
    second = _attempt(target.model_copy(update={"port": fallback}), material, options, deadline)
    if _refused(second):
        message = f"connection refused on port {target.port} and on the WinRM 1.1 port {fallback}"
        error = HostError(stage=Stage.CONNECT, reason="refused", message=message)
        return observation.model_copy(update={"error": error})
    return second


def collect_with(target: Target, material: AuthMaterial, options: CollectOptions) -> Observation:
    """Read one host with shared auth material; every failure becomes an error Observation."""
    debug = log.isEnabledFor(logging.DEBUG)
    started = time.perf_counter() if debug else 0.0
    if debug:
        # Where and how, never what with: no credential, token or body is ever logged.
        log.debug(
            "%s: connecting to %s:%d over %s, auth %s (host deadline %g s, connect timeout %g s)",
            target.name,
            target.address,
            target.port,
            target.scheme.value,
            target.transport.value,
            options.host_timeout,
            options.connect_timeout,
        )
    observation = _collect(target, material, options)
    if debug:
        elapsed = (time.perf_counter() - started) * 1000
        if observation.error is None:
            log.debug("%s: read in %.1f ms, %d requests", target.name, elapsed, observation.requests)
        else:
            log.debug(
                "%s: failed after %.1f ms, %d requests: %s/%s: %s",
                target.name,
                elapsed,
                observation.requests,
                observation.error.stage.value,
                observation.error.reason,
                observation.error.message,
            )
    return observation


def collect_host(target: Target, credentials: Credentials, options: CollectOptions) -> Observation:
    """Read one host; every failure becomes an error Observation (only KeyboardInterrupt/SystemExit pass).

    With Kerberos this makes the host's own logon (a scan proves its credentials once, in collect_all).
    """
    material = AuthMaterial(credentials)
    try:
        material.prove([target], options)
    except KerberosLoginError as exc:
        return Observation(target=target, error=HostError(stage=Stage.AUTH, reason=exc.reason, message=str(exc)))
    try:
        return collect_with(target, material, options)
    finally:
        material.close()
