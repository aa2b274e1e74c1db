"""Win32_Service over WS-Management: the PolicyAgent instance (Get), StopService and StartService.

The IPsec Policy Agent reads AssumeUDPEncapsulationContextOnSendRule when it starts (KB 885407,
docs/domain.md#restart): the lab keeps, per host, the value the service read at its last start
(`effective`), so a test can tell a written value from one in force. Return values and states are
the Win32_Service class docs' (docs/lab.md, "Applying changes"); each host's service can be made
to refuse a stop or fail to start (`policyagent:` in the estate file).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from scanner.core.models import VALUE_NAME
from scanner.lab.estate import Host, PolicyAgentSpec, applicable_key
from scanner.lab.faults import (
    F_BAD_SELECTOR,
    F_SCHEMA,
    F_WMI_CLASS,
    fault,
    method_not_found,
)
from scanner.lab.soap import ACT_GET, CANNOT, NS_CIM, WMI_CIMV2, Reply, Request, envelope, local, ns, x

if TYPE_CHECKING:
    from scanner.lab.wsman import HostState

SERVICE_URI = WMI_CIMV2 + "Win32_Service"
SERVICE_NAME = "PolicyAgent"
WBEM_NOT_FOUND = 2147749890  # 0x80041002 WBEM_E_NOT_FOUND
# Win32_Service control method ReturnValues (the class docs' table).
RV_OK, RV_CANNOT_ACCEPT, RV_NOT_ACTIVE, RV_ALREADY_RUNNING = 0, 5, 6, 10


def is_service_uri(resource_uri: str) -> bool:
    """Return whether a resource URI addresses root/cimv2 Win32_Service."""
    return resource_uri.lower() == SERVICE_URI.lower()


@dataclass
class PolicyAgent:
    """Runtime state of one host's IPsec Policy Agent."""

    spec: PolicyAgentSpec
    state: str  # the settled state: Running or Stopped
    effective: tuple[str, int | str | list[str]] | None  # (type, data) read at the last start; None: no value
    pending: str | None = None  # "Stop Pending" / "Start Pending" until `until`
    until: float = 0.0  # time.monotonic() at which the pending state settles
    starts: int = 0
    stops: int = 0

    def current(self) -> str:
        """Return the State property now, settling a pending state whose time has come."""
        if self.pending is not None and time.monotonic() >= self.until:
            self.state = "Stopped" if self.pending == "Stop Pending" else "Running"
            self.pending = None
        return self.pending or self.state


def read_setting(host: Host) -> tuple[str, int | str | list[str]] | None:
    """Return the value the Policy Agent reads at start: the one at the key that applies to the OS."""
    path = applicable_key(host.os)
    key = host.key(path) if path is not None else None
    stored = key.values.get(VALUE_NAME.lower()) if key is not None else None
    return None if stored is None else (stored[1], stored[2])


def new_agent(host: Host) -> PolicyAgent:
    """Return the service as the lab starts it: a running service has read the estate's value."""
    spec = host.policyagent
    running = spec.state == "Running"
    return PolicyAgent(spec=spec, state=spec.state, effective=read_setting(host) if running else None)


def _display_name(host: Host) -> str:
    return "IPsec Policy Agent" if host.os.nt >= (6, 0) else "IPSEC Services"


def render(st: HostState) -> str:
    """Return the Win32_Service instance of PolicyAgent (namespaced, alphabetical, as WinRM sends it)."""
    agent = st.policyagent
    state = agent.current()
    nt6 = st.host.os.nt >= (6, 0)
    running = state == "Running"
    props: dict[str, str | None] = {
        "AcceptPause": "false",
        "AcceptStop": "true" if running else "false",
        "Caption": _display_name(st.host),
        "CheckPoint": "0",
        "CreationClassName": "Win32_Service",
        "Description": "Internet Protocol security (IPsec) supports network-level peer authentication.",
        "DesktopInteract": "false",
        "DisplayName": _display_name(st.host),
        "ErrorControl": "Normal",
        "ExitCode": "0" if running or agent.spec.start_error == 0 else "1067",
        "InstallDate": None,
        "Name": SERVICE_NAME,
        "PathName": (
            "C:\\Windows\\system32\\svchost.exe -k NetworkServiceNetworkRestricted -p"
            if nt6
            else "C:\\WINDOWS\\system32\\lsass.exe"
        ),
        "ProcessId": str(900 + st.index % 5000) if running else "0",
        "ServiceSpecificExitCode": "0",
        "ServiceType": "Share Process",
        "StartMode": "Manual" if nt6 else "Auto",
        "StartName": "NT Authority\\NetworkService" if nt6 else "LocalSystem",
        "Started": "true" if running else "false",
        "State": state,
        "Status": "OK",
        "SystemCreationClassName": "Win32_ComputerSystem",
        "SystemName": st.machine,
        "TagId": "0",
        "WaitHint": "0",
    }
    inner = "".join(
        f'<p:{name} xsi:nil="true"/>' if value is None else f"<p:{name}>{x(value)}</p:{name}>"
        for name, value in props.items()
    )
    return (
        f'<p:Win32_Service xmlns:p="{SERVICE_URI}" xmlns:cim="{NS_CIM}" xsi:type="p:Win32_Service_Type"'
        f' xml:lang="en-US">{inner}</p:Win32_Service>'
    )


def _selector_problem(st: HostState, req: Request) -> Reply | None:
    """Answer a request whose selectors do not name PolicyAgent: bad selectors, or no such instance."""
    if {k.lower() for k in req.selectors} != {"name"}:
        return fault(
            req.message_id,
            F_BAD_SELECTOR,
            CANNOT + " because the request contained invalid selectors for the resource.",
            value="s:Sender",
            subcode="w:InvalidSelectors",
            machine=st.machine,
        )
    name = next(iter(req.selectors.values()))
    if name.strip().lower() != SERVICE_NAME.lower():
        # The lab models one service; any other name is an instance WMI does not find.
        return fault(
            req.message_id,
            F_WMI_CLASS,
            CANNOT + ". The WMI service returned an 'not found' error.",
            value="s:Sender",
            subcode="w:DestinationUnreachable",
            provider=True,
            wmi_code=WBEM_NOT_FOUND,
            machine=st.machine,
            winrm=st.host.winrm,
        )
    return None


def get(st: HostState, req: Request) -> Reply:
    """Answer a WS-Transfer Get of Win32_Service?Name=PolicyAgent."""
    problem = _selector_problem(st, req)
    if problem is not None:
        return problem
    return Reply(200, envelope(ACT_GET + "Response", req.message_id, render(st)))


def _stop(agent: PolicyAgent) -> int:
    if agent.spec.stop_error:
        return agent.spec.stop_error
    state = agent.current()
    if state == "Stopped":
        return RV_NOT_ACTIVE
    if state != "Running":
        return RV_CANNOT_ACCEPT
    agent.stops += 1
    if agent.spec.stop_ms:
        agent.pending, agent.until = "Stop Pending", time.monotonic() + agent.spec.stop_ms / 1000
    else:
        agent.state = "Stopped"
    return RV_OK


def _start(agent: PolicyAgent, host: Host) -> int:
    state = agent.current()
    if state != "Stopped":
        return RV_ALREADY_RUNNING
    if agent.spec.start_error:
        return agent.spec.start_error  # it failed to start: still Stopped, nothing read
    agent.starts += 1
    agent.effective = read_setting(host)  # KB 885407: the value is read when the service starts
    if agent.spec.start_ms:
        agent.pending, agent.until = "Start Pending", time.monotonic() + agent.spec.start_ms / 1000
    else:
        agent.state = "Running"
    return RV_OK


def invoke(st: HostState, req: Request, method: str) -> Reply:
    """Run StopService or StartService on the PolicyAgent instance."""
    body = req.body
    if method not in ("StopService", "StartService"):
        return method_not_found(req.message_id, st.machine, st.host.winrm)
    if body is None or local(body.tag) != f"{method}_INPUT" or (ns(body.tag) and ns(body.tag) != req.resource_uri):
        return fault(
            req.message_id,
            F_SCHEMA,
            "The WS-Management service cannot process the request because the XML is invalid.",
            value="s:Sender",
            subcode="w:SchemaValidationError",
            machine=st.machine,
        )
    problem = _selector_problem(st, req)
    if problem is not None:
        return problem
    agent = st.policyagent
    rv = _stop(agent) if method == "StopService" else _start(agent, st.host)
    res = req.resource_uri
    out = f"<p:{method}_OUTPUT xmlns:p={quoteattr(res)}><p:ReturnValue>{rv}</p:ReturnValue></p:{method}_OUTPUT>"
    return Reply(200, envelope(f"{res}/{method}Response", req.message_id, out))
