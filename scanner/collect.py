"""Read one host (or many, concurrently) over WinRM/WMI into `Observation`s; never raise per host.

Per host, shell-free (DOMAIN.md section 3), on one keep-alive connection:

1. NTLM handshake, pre-emptive Negotiate (2 requests), then MS-WSMV message encryption on HTTP;
2. WQL ``Enumerate`` of Win32_OperatingSystem (1 request);
3. ``StdRegProv.GetDWORDValue`` of the NAT-T value at Services\\IPsec and Services\\PolicyAgent
   (2 requests). Both keys are always read: one applies to the OS, the other can only hold a
   stray value (on Windows 2000 / XP before SP2 neither applies: both are stray candidates).

So the common case is exactly 5 HTTP requests. Only when a value exists with another type
(ReturnValue 0x80041005) are ``EnumValues`` (stored name + type code) and the matching
``Get*Value`` added for that key.

Key presence (`KeyRead.key_present`): ReturnValue 0 and 0x80041005 prove the key exists. Windows
returns 2 (ERROR_FILE_NOT_FOUND) for both a missing key and a missing value, so from one
GetDWORDValue call the two cannot be told apart without another request: we report 2 as
``key_present=False`` (meaning "not shown to exist") and 1 as ``key_present=True`` (a value-level
"not found" in an opened key). Both are "absent" for the effective mode (DOMAIN.md section 2), so
the rule changes no verdict. The stored spelling of the value name is known only when EnumValues
was called; otherwise the canonical `VALUE_NAME` is reported.

Failures become ``Observation(error=HostError(stage, reason, message))``; the reason codes are
listed in `scanner.wsman.errors`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from scanner.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    CollectOptions,
    Credentials,
    HostError,
    KeyRead,
    Observation,
    OsInfo,
    RegistryValue,
    Stage,
    Target,
)
from scanner.wsman import wmi
from scanner.wsman.auth import AuthMaterial
from scanner.wsman.errors import CollectError
from scanner.wsman.http import Deadline
from scanner.wsman.protocol import new_protocol
from scanner.wsman.transport import WsmanTransport

KEYS = (IPSEC_KEY, POLICYAGENT_KEY)


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


def _read_host(protocol: wmi.Sender) -> tuple[OsInfo, tuple[KeyRead, ...]]:
    os_info = wmi.read_os(protocol)
    return os_info, tuple(read_key(protocol, key) for key in KEYS)


def _collect(target: Target, material: AuthMaterial, options: CollectOptions) -> Observation:
    deadline = Deadline(options.host_timeout)
    transport: WsmanTransport | None = None
    try:
        transport = WsmanTransport(target, material, options, deadline)
        try:
            os_info, keys = _read_host(new_protocol(target, options, transport))
        finally:
            transport.close()
        return Observation(target=target, requests=transport.requests, os=os_info, keys=keys)
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
    return Observation(
        target=target, requests=transport.requests if transport is not None else 0, error=error
    )


def collect_host(target: Target, credentials: Credentials, options: CollectOptions) -> Observation:
    """Read one host; every failure becomes an error Observation (only KeyboardInterrupt/SystemExit pass)."""
    return _collect(target, AuthMaterial(credentials), options)


def collect_all(
    targets: Sequence[Target],
    credentials: Credentials,
    options: CollectOptions,
    *,
    concurrency: int = 64,
    on_result: Callable[[Observation], None] | None = None,
    stop: threading.Event | None = None,
    keep: bool = True,
) -> list[Observation]:
    """Read every target with at most `concurrency` in flight; return results in inventory order.

    `on_result` is called once per finished host, serialised (never concurrently), in completion
    order. When `stop` is set, hosts not yet started are not started; hosts in flight finish
    (each within its own deadline) and only the finished hosts are returned, in inventory order.
    If `on_result` raises, the scan stops the same way and the exception is re-raised here.
    With `keep=False` nothing is kept and the list is empty: a caller that streams with
    `on_result` then holds no observation per host (docs/performance.md, memory).
    """
    material = AuthMaterial(credentials)
    material.nt_hash()  # derive once, before the workers share it
    stop_event = stop if stop is not None else threading.Event()
    results: list[Observation | None] = [None] * len(targets) if keep else []
    next_index = iter(range(len(targets)))
    dispatch_lock = threading.Lock()
    result_lock = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while True:
            with dispatch_lock:
                if stop_event.is_set() or failures:
                    return
                index = next(next_index, None)
            if index is None:
                return
            observation = _collect(targets[index], material, options)
            if keep:
                results[index] = observation
            if on_result is not None:
                with result_lock:
                    if failures:
                        return
                    try:
                        on_result(observation)
                    except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                        failures.append(exc)
                        return

    workers = [
        threading.Thread(target=worker, name=f"natt-collect-{n}", daemon=True)
        for n in range(max(1, min(concurrency, len(targets))))
    ]
    for thread in workers:
        thread.start()
    try:
        for thread in workers:
            while thread.is_alive():
                thread.join(0.5)
    except BaseException:
        # Interrupted (Ctrl-C): start nothing new; in-flight hosts end by their own deadline.
        stop_event.set()
        raise
    if failures:
        raise failures[0]
    return [observation for observation in results if observation is not None]
