"""WS-Management handlers of one simulated host: per-host state, dispatch, Identify.

The handlers live along the protocol's own seams: `soap` (envelopes, request parsing), `faults`
(s:Fault shapes and the estate's injected faults), `wql` (Win32_OperatingSystem: Enumerate, Pull,
Get), `stdregprov` (the registry provider) and `services` (Win32_Service PolicyAgent: Get, Stop,
Start); `shell` serves the WinRS shell. Shapes follow MS-WSMV
and DMTF DSP0226 as WinRM emits them (docs/lab.md, docs/wire.md).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from scanner.lab import faults, services, stdregprov, wql
from scanner.lab.estate import Host
from scanner.lab.soap import (
    ACT_ENUMERATE,
    ACT_GET,
    ACT_PULL,
    ACT_RELEASE,
    NS_S,
    NS_W,
    NS_WSMID,
    SHELL_ACTIONS,
    SHELL_URI,
    WMI,
    Reply,
    Request,
    envelope,
    text,
)

if TYPE_CHECKING:
    from scanner.lab.shell import ShellState


@dataclass
class HostState:
    """Mutable per-host state: pre-rendered XML, open enumerations and shells."""

    host: Host
    index: int
    now: datetime
    _os_xml: wql.OsRender | None = None
    enumerations: OrderedDict[str, str] = field(default_factory=OrderedDict)
    shells: dict[str, ShellState] = field(default_factory=dict)
    policyagent: services.PolicyAgent = field(init=False)

    def __post_init__(self) -> None:
        # At lab start: a running service has read the estate's value (docs/lab.md, "Applying changes").
        self.policyagent = services.new_agent(self.host)

    @property
    def os_xml(self) -> wql.OsRender:
        """Return the host's Win32_OperatingSystem XML, rendered on first use (keeps start-up fast)."""
        if self._os_xml is None:
            self._os_xml = wql.render_os(self.host, self.index, self.now)
        return self._os_xml

    @property
    def machine(self) -> str:
        """Return the NetBIOS-style machine name used in fault details."""
        return self.host.name.split(".")[0].upper()[:15]


def handle(st: HostState, req: Request) -> Reply:
    """Dispatch one authenticated WS-Man request."""
    act = req.action
    res = req.resource_uri
    if res.startswith(WMI) and (act in (ACT_ENUMERATE, ACT_PULL, ACT_GET) or act.startswith(res + "/")):
        faulted = faults.estate_fault(st, req)
        if faulted is not None:
            faulted.delay_ms = st.host.wmi_ms
            return faulted
    if act == ACT_ENUMERATE:
        r = wql.enumerate_(st, req)
    elif act == ACT_PULL:
        r = wql.pull(st, req)
    elif act == ACT_RELEASE:
        ctx = text(req.body, "EnumerationContext") or ""
        st.enumerations.pop(ctx.strip(), None)
        return Reply(200, envelope(ACT_RELEASE + "Response", req.message_id, ""))
    elif act == ACT_GET:
        r = services.get(st, req) if services.is_service_uri(res) else wql.get(st, req)
    elif services.is_service_uri(res) and act.startswith(res + "/"):
        r = services.invoke(st, req, act[len(res) + 1 :])
    elif res.startswith(WMI) and act.startswith(res + "/"):
        r = stdregprov.call(st, req, act[len(res) + 1 :])
    elif res == SHELL_URI or act.startswith(SHELL_ACTIONS):
        from scanner.lab.shell import handle_shell

        return handle_shell(st, req)
    else:
        return faults.fault(
            req.message_id,
            faults.F_ACTION,
            "The WS-Management service cannot process the request because the action is not supported.",
            value="s:Sender",
            subcode="a:ActionNotSupported",
            machine=st.machine,
        )
    r.delay_ms += st.host.wmi_ms
    return r


def identify(host: Host, authenticated: bool) -> bytes:
    """Answer wsmid:Identify; the OS version appears only to authenticated callers (as on Windows).

    The stack version is the host's WinRM persona (1.1, 2.0 or 3.0).
    """
    ver = f"OS: 0.0.0 SP: 0.0 Stack: {host.winrm}"
    if authenticated:
        ver = f"OS: {host.os.version} SP: {host.os.service_pack}.0 Stack: {host.winrm}"
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{NS_S}"><s:Header/><s:Body>'
        f'<wsmid:IdentifyResponse xmlns:wsmid="{NS_WSMID}">'
        f"<wsmid:ProtocolVersion>{NS_W}</wsmid:ProtocolVersion>"
        f"<wsmid:ProductVendor>Microsoft Corporation</wsmid:ProductVendor>"
        f"<wsmid:ProductVersion>{ver}</wsmid:ProductVersion>"
        f"<wsmid:SecurityProfiles><wsmid:SecurityProfileName>"
        f"http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/http/spnego-kerberos"
        f"</wsmid:SecurityProfileName></wsmid:SecurityProfiles>"
        f"</wsmid:IdentifyResponse></s:Body></s:Envelope>"
    ).encode()


def is_identify(body: bytes) -> bool:
    """Tell an Identify request (no Action header, wsmid:Identify body) from the rest."""
    return b"Identify" in body and NS_WSMID.encode() in body and b"Action>" not in body
