"""The WinRS shell resource (Create, Command, Receive, Signal, Delete), `reg query` and PowerShell reads.

Enough of cmd.exe, reg.exe and powershell.exe is simulated for the way people read this key by hand
(pywinrm `Session.run_cmd('reg', ['query', ...])` and `Session.run_ps(...)`), so the naive approach can
be benchmarked against the same estate. Process start-up is a modelled cost (docs/lab.md).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from scanner.lab import faults, soap, stdregprov, wsman
from scanner.lab.estate import Host, RegKey

NS_RSP = soap.NS_RSP
STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
MAX_SHELLS = 30  # WinRM's default MaxShellsPerUser
REG_NOT_FOUND = "ERROR: The system was unable to find the specified registry key or value.\r\n"


@dataclass
class CommandResult:
    """Output of one simulated process."""

    stdout: bytes
    stderr: bytes
    exit_code: int


@dataclass
class ShellState:
    """One open shell and its commands."""

    shell_id: str
    commands: dict[str, CommandResult] = field(default_factory=dict)


def _id() -> str:
    return str(uuid.uuid4()).upper()


def handle_shell(st: wsman.HostState, req: soap.Request) -> soap.Reply:
    """Dispatch one shell-resource action."""
    act = req.action
    host = st.host
    if act == soap.ACT_CREATE:
        if len(st.shells) >= MAX_SHELLS:
            return faults.fault(
                req.message_id,
                faults.F_QUOTA_SHELLS,
                soap.CANNOT + ". This user is allowed a maximum number of"
                " 30 concurrent shells, which has been exceeded. Close existing shells or raise the quota for"
                " this user.",
                subcode="w:QuotaLimit",
                machine=st.machine,
            )
        sid = _id()
        st.shells[sid] = ShellState(sid)
        body = (
            f"<x:ResourceCreated><a:Address>{soap.ANON}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{soap.SHELL_URI}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{sid}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            f'</x:ResourceCreated><rsp:Shell xmlns:rsp="{NS_RSP}"><rsp:ShellId>{sid}</rsp:ShellId>'
            f"<rsp:ResourceUri>{soap.SHELL_URI}</rsp:ResourceUri><rsp:Owner>LAB\\auditor</rsp:Owner>"
            f"<rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams>"
            f"</rsp:Shell>"
        )
        return soap.Reply(
            200,
            soap.envelope(soap.ACT_CREATE + "Response", req.message_id, body),
            delay_ms=host.shell_create_ms,
        )
    shell = st.shells.get(req.selectors.get("ShellId", ""))
    if shell is None:
        return faults.fault(
            req.message_id,
            faults.F_BAD_SELECTOR,
            "The request for the Windows Remote Shell with ShellId failed because the shell was not found on"
            " the server. Possible causes are: the specified ShellId is incorrect or the shell no longer"
            " exists on the"
            " server.",
            value="s:Sender",
            subcode="w:InvalidSelectors",
            machine=st.machine,
        )
    if act == soap.ACT_DELETE:
        del st.shells[shell.shell_id]
        return soap.Reply(200, soap.envelope(soap.ACT_DELETE + "Response", req.message_id, ""))
    if act == soap.SHELL_ACTIONS + "Command":
        line = (soap.text(req.body, "Command") or "").strip()
        args = soap.text(req.body, "Arguments")
        if args:
            line = f"{line} {args}"
        result, cost = run_command_line(host, line)
        cid = _id()
        shell.commands[cid] = result
        body = (
            f'<rsp:CommandResponse xmlns:rsp="{NS_RSP}"><rsp:CommandId>{cid}</rsp:CommandId>'
            "</rsp:CommandResponse>"
        )
        return soap.Reply(200, soap.envelope(act + "Response", req.message_id, body), delay_ms=cost)
    if act == soap.SHELL_ACTIONS + "Receive":
        ds = soap.child(req.body, "DesiredStream")
        cid = ds.get("CommandId", "") if ds is not None else ""
        res = shell.commands.get(cid)
        if res is None:
            return _bad_command(st, req)
        streams = []
        for name, data in (("stdout", res.stdout), ("stderr", res.stderr)):
            if data:
                streams.append(
                    f'<rsp:Stream Name="{name}" CommandId="{cid}">'
                    f"{base64.b64encode(data).decode()}</rsp:Stream>"
                )
            streams.append(f'<rsp:Stream Name="{name}" CommandId="{cid}" End="true"></rsp:Stream>')
        body = (
            f'<rsp:ReceiveResponse xmlns:rsp="{NS_RSP}">{"".join(streams)}'
            f'<rsp:CommandState CommandId="{cid}" State="{STATE_DONE}">'
            f"<rsp:ExitCode>{res.exit_code}</rsp:ExitCode>"
            f"</rsp:CommandState></rsp:ReceiveResponse>"
        )
        return soap.Reply(200, soap.envelope(act + "Response", req.message_id, body))
    if act == soap.SHELL_ACTIONS + "Signal":
        sig = req.body
        cid = sig.get("CommandId", "") if sig is not None else ""
        if cid not in shell.commands:
            return _bad_command(st, req)
        del shell.commands[cid]
        body = f'<rsp:SignalResponse xmlns:rsp="{NS_RSP}"/>'
        return soap.Reply(200, soap.envelope(act + "Response", req.message_id, body))
    return faults.fault(
        req.message_id,
        faults.F_ACTION,
        "The WS-Management service cannot process the request because the action is not supported.",
        value="s:Sender",
        subcode="a:ActionNotSupported",
        machine=st.machine,
    )


def _bad_command(st: wsman.HostState, req: soap.Request) -> soap.Reply:
    return faults.fault(
        req.message_id,
        faults.F_BAD_SELECTOR,
        "The WS-Management service cannot process the request because the CommandId is not valid.",
        value="s:Sender",
        subcode="w:InvalidSelectors",
        machine=st.machine,
    )


# ---------------------------------------------------------------- cmd.exe / reg.exe


def split_command_line(line: str) -> list[str]:
    """Split a Windows command line (double quotes group, as CommandLineToArgvW does for simple cases)."""
    return [
        m.group(1) if m.group(1) is not None else m.group(2) for m in re.finditer(r'"([^"]*)"|(\S+)', line)
    ]


def run_command_line(host: Host, line: str) -> tuple[CommandResult, int]:
    """Run one command line; return its output and the modelled process start cost in ms."""
    argv = split_command_line(line)
    prog = argv[0].lower().removesuffix(".exe") if argv else ""
    light = host.process_start_ms // 10  # cmd.exe + a small console tool: a tenth of PowerShell's start-up
    if prog == "reg":
        return reg_exe(host, argv[1:]), light
    if prog == "powershell" or prog == "pwsh":
        return powershell(host, argv[1:]), host.process_start_ms
    if prog in ("hostname",):
        return CommandResult(host.name.split(".")[0].upper().encode() + b"\r\n", b"", 0), light
    msg = (
        f"'{argv[0] if argv else ''}' is not recognized as an internal or external command,\r\n"
        "operable program or batch file.\r\n"
    )
    return CommandResult(b"", msg.encode(), 1), light


_HIVES = {"hklm": "HKEY_LOCAL_MACHINE", "hkey_local_machine": "HKEY_LOCAL_MACHINE"}


def _split_hive(path: str) -> tuple[str, str] | None:
    hive, _, sub = path.partition("\\")
    full = _HIVES.get(hive.lower().rstrip(":"))
    return None if full is None else (full, sub.strip("\\"))


def _reg_data(vtype: str, data: int | str | list[str]) -> str:
    if vtype in ("REG_DWORD", "REG_QWORD"):
        return f"0x{data:x}"
    if vtype == "REG_MULTI_SZ":
        assert isinstance(data, list)
        return "\\0".join(data)
    if vtype == "REG_BINARY":
        return str(data).upper()
    return str(data)


def reg_exe(host: Host, args: list[str]) -> CommandResult:
    """Simulate `reg query KEY [/v NAME | /ve] [/s]`, with reg.exe's layout and messages."""
    if not args or args[0].lower() != "query" or len(args) < 2:
        return CommandResult(b"", b'ERROR: Invalid syntax.\r\nType "REG QUERY /?" for usage.\r\n', 1)
    split = _split_hive(args[1])
    if split is None:
        return CommandResult(b"", b'ERROR: Invalid key name.\r\nType "REG QUERY /?" for usage.\r\n', 1)
    hive, sub = split
    value: str | None = None
    rest = args[2:]
    if len(rest) >= 2 and rest[0].lower() == "/v":
        value = rest[1]
    key = host.key(sub) if hive == "HKEY_LOCAL_MACHINE" else None
    if key is None:
        return CommandResult(b"", REG_NOT_FOUND.encode(), 1)
    if sub.lower() in host.denied:
        return CommandResult(b"", b"ERROR: Access is denied.\r\n", 1)
    shown = f"{hive}\\{sub}"
    out = [f"\r\n{shown}\r\n"]
    if value is not None:
        got = key.values.get(value.lower())
        if got is None:
            return CommandResult(b"", REG_NOT_FOUND.encode(), 1)
        out.append(f"    {got[0]}    {got[1]}    {_reg_data(got[1], got[2])}\r\n")
        out.append("\r\n")
    else:
        out.extend(f"    {n}    {t}    {_reg_data(t, d)}\r\n" for n, t, d in key.values.values())
        out.append("\r\n")
        out.extend(f"{shown}\\{child}\r\n" for child in sorted(key.subkeys.values(), key=str.lower))
    return CommandResult("".join(out).encode("utf-8"), b"", 0)


# ---------------------------------------------------------------- powershell.exe


def _clixml_error(text: str) -> bytes:
    """Render PowerShell's error stream as powershell.exe emits it to a non-console stderr (CLIXML)."""
    lines = "".join(f'<S S="Error">{escape(line)}_x000D__x000A_</S>' for line in text.split("\n"))
    return (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f"{lines}</Objs>"
    ).encode()


def _decode_script(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        low = a.lower()
        if low in ("-encodedcommand", "-enc", "-e", "-ec") and i + 1 < len(args):
            try:
                return base64.b64decode(args[i + 1], validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return None
        if low in ("-command", "-c") and i + 1 < len(args):
            return " ".join(args[i + 1 :])
    return None


_PS_PATH = re.compile(
    r"""(?:-(?:Literal)?Path\s+)?['"]?(?:Microsoft\.PowerShell\.Core\\)?(?:Registry::)?"""
    r"""(?P<hive>HKLM:|HKEY_LOCAL_MACHINE)\\?(?P<sub>[^'"\s)]*)['"]?""",
    re.I,
)
_PS_NAME = re.compile(r"""-Name\s+['"]?(?P<name>[A-Za-z0-9_.\-]+)['"]?""", re.I)
_PS_MEMBER = re.compile(r"""\)\s*\.\s*['"]?(?P<name>[A-Za-z0-9_]+)['"]?""")


def _ps_value(vtype: str, data: int | str | list[str]) -> list[str]:
    """Render a value as PowerShell prints it: REG_DWORD is Int32, REG_QWORD Int64 (signed)."""
    if vtype == "REG_DWORD":
        assert isinstance(data, int)
        return [str(data - (1 << 32) if data >= 1 << 31 else data)]
    if vtype == "REG_QWORD":
        assert isinstance(data, int)
        return [str(data - (1 << 64) if data >= 1 << 63 else data)]
    if vtype == "REG_MULTI_SZ":
        assert isinstance(data, list)
        return list(data)
    if vtype == "REG_BINARY":
        return [str(b) for b in bytes.fromhex(str(data))]
    if vtype == "REG_EXPAND_SZ":
        return [stdregprov.expand(str(data))]
    return [str(data)]


def _ps_list(key: RegKey, names: list[str], shown: str) -> str:
    rows: list[tuple[str, str]] = []
    for n in names:
        v = key.values[n.lower()]
        vals = _ps_value(v[1], v[2])
        rows.append(
            (
                v[0],
                vals[0]
                if len(vals) == 1 and v[1] not in ("REG_MULTI_SZ", "REG_BINARY")
                else "{" + ", ".join(vals) + "}",
            )
        )
    parent, _, child = shown.rpartition("\\")
    rows += [
        ("PSPath", f"Microsoft.PowerShell.Core\\Registry::{shown}"),
        ("PSParentPath", f"Microsoft.PowerShell.Core\\Registry::{parent}"),
        ("PSChildName", child),
        ("PSDrive", "HKLM"),
        ("PSProvider", "Microsoft.PowerShell.Core\\Registry"),
    ]
    width = max(len(n) for n, _ in rows)
    return "\r\n" + "".join(f"{n.ljust(width)} : {v}\r\n" for n, v in rows) + "\r\n\r\n\r\n"


def powershell(host: Host, args: list[str]) -> CommandResult:
    """Answer the usual one-liners that read a registry value; anything else is a PowerShell error."""
    script = _decode_script(args)
    if script is None:
        return CommandResult(b"", _clixml_error("Cannot process the command line: no script was given."), 1)
    silent = re.search(r"-ErrorAction\s+['\"]?(SilentlyContinue|Ignore)", script, re.I) is not None
    cmdlet = re.search(r"\b(Get-ItemPropertyValue|Get-ItemProperty|Test-Path|Get-Item)\b", script, re.I)
    path_m = _PS_PATH.search(script)
    if cmdlet is None or path_m is None:
        word = script.strip().split()[0] if script.strip() else script
        msg = (
            f"{word} : The term '{word}' is not recognized as the name of a cmdlet, function, script file, "
            "or operable program. Check the spelling of the name, or if a path was included, verify that "
            "the path is "
            "correct and try again.\n    + CategoryInfo          : ObjectNotFound: "
            f"({word}:String) [], CommandNotFoundException\n"
            "    + FullyQualifiedErrorId : CommandNotFoundException"
        )
        return CommandResult(b"", _clixml_error(msg), 1)
    verb = cmdlet.group(1).lower()
    sub = path_m.group("sub").strip("\\")
    typed = f"HKLM:\\{sub}"
    shown = f"HKEY_LOCAL_MACHINE\\{sub}"
    key = host.key(sub)
    if verb == "test-path":
        return CommandResult((b"True" if key is not None else b"False") + b"\r\n", b"", 0)
    if key is None:
        if silent:
            return CommandResult(b"", b"", 0)
        msg = (
            f"{cmdlet.group(1)} : Cannot find path '{typed}' because it does not exist.\n"
            f"    + CategoryInfo          : ObjectNotFound: ({typed}:String) [{cmdlet.group(1)}],"
            " ItemNotFoundException"
        )
        return CommandResult(b"", _clixml_error(msg), 1)
    if sub.lower() in host.denied:
        msg = (
            f"{cmdlet.group(1)} : Requested registry access is not allowed.\n"
            "    + CategoryInfo          : PermissionDenied"
        )
        return CommandResult(b"", _clixml_error(msg), 1)
    name_m = _PS_NAME.search(script)
    member_m = _PS_MEMBER.search(script)
    name = name_m.group("name") if name_m else None
    if verb == "get-item":
        return CommandResult(
            f"\r\n\r\n    Hive: HKEY_LOCAL_MACHINE\\{sub.rpartition(chr(92))[0]}\r\n\r\n".encode(), b"", 0
        )
    if name is not None and name.lower() not in key.values:
        if silent:
            return CommandResult(b"", b"", 0)
        msg = (
            f"{cmdlet.group(1)} : Property {name} does not exist at path {shown}.\n"
            f"    + CategoryInfo          : InvalidArgument: ({name}:String) [{cmdlet.group(1)}],"
            " PSArgumentException"
        )
        return CommandResult(b"", _clixml_error(msg), 1)
    if verb == "get-itempropertyvalue":
        if name is None:
            return CommandResult(
                b"", _clixml_error("Get-ItemPropertyValue : Missing an argument for parameter 'Name'."), 1
            )
        v = key.values[name.lower()]
        return CommandResult("".join(f"{s}\r\n" for s in _ps_value(v[1], v[2])).encode("utf-8"), b"", 0)
    if member_m is not None:
        got = key.values.get(member_m.group("name").lower())
        if got is None:
            return CommandResult(b"", b"", 0)  # $null member access prints nothing (no strict mode)
        return CommandResult("".join(f"{s}\r\n" for s in _ps_value(got[1], got[2])).encode("utf-8"), b"", 0)
    names = [name] if name is not None else [v[0] for v in key.values.values()]
    return CommandResult(_ps_list(key, names, shown).encode("utf-8"), b"", 0)
