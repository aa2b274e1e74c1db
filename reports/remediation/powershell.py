"""The `powershell` plan format: one script for the estate, -ComputerName to pick hosts, -WhatIf to preview.

The script runs on an administrator's machine and reaches each host over PowerShell remoting
(Invoke-Command to the address the audit used). Per host it first re-reads every value the plan
changes; when one is neither what the audit saw (the before) nor what the plan sets (the after),
the host is left unchanged and reported. Then, through ShouldProcess (so -WhatIf and -Confirm
work), it sets the value at the key that applies to the OS, deletes the strays, and restarts the
IPsec Policy Agent when the value changed (it reads the value when it starts, KB 885407).

Every host-supplied string is data, never code: printable ASCII goes into a single-quoted literal
with the apostrophe doubled, and every other character (the typographic quotes U+2018..U+201B,
which PowerShell also takes as apostrophes, line breaks, bidi controls) is spliced in as
`[char]0xNNNN`. Nothing a host stored can end a literal, start a statement or hide from a reviewer.
"""

from __future__ import annotations

from typing import Final

from reports.remediation.plan import HostPlan, Observed, RemediationPlan
from reports.remediation.text import header_lines

FILE: Final = "Remediate-NattAudit.ps1"


def _char(code: int) -> str:
    return f"[string][char]0x{code:04X}"


def ps_string(text: str) -> str:
    """Return `text` as a PowerShell expression that evaluates to exactly that string.

    Printable ASCII goes into single-quoted literals with the apostrophe doubled; every other
    character, the typographic quotes PowerShell also ends a literal with (U+2018..U+201B) among
    them, is spliced in by code (astral characters as their UTF-16 surrogate pair).
    """
    parts: list[str] = []
    literal: list[str] = []
    for ch in text:
        if " " <= ch <= "~":
            literal.append("''" if ch == "'" else ch)
            continue
        if literal:
            parts.append("'" + "".join(literal) + "'")
            literal = []
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            parts += [_char(0xD800 + (code >> 10)), _char(0xDC00 + (code & 0x3FF))]
        else:
            parts.append(_char(code))
    if literal or not parts:
        parts.append("'" + "".join(literal) + "'")
    return parts[0] if len(parts) == 1 else "(" + " + ".join(parts) + ")"


def _data(observed: Observed) -> str:
    data = observed.data
    if data is None or isinstance(data, bool):
        return "$null"
    if isinstance(data, int):
        return f"[uint64]{data}"
    if isinstance(data, list):
        return "@(" + ", ".join(ps_string(item) for item in data) + ")"
    return ps_string(data)


def ps_state(observed: Observed | None) -> str:
    """Return a before as the hashtable the script's Read-NattValue returns for it."""
    if observed is None:
        return "@{ Present = $false }"
    return f"@{{ Present = $true; Type = {ps_string(observed.type)}; Data = {_data(observed)} }}"


def _host(host: HostPlan) -> list[str]:
    set_value = host.set_value
    lines = [
        "    @{",
        f"        Name    = {ps_string(host.name)}",
        f"        Address = {ps_string(host.address)}",
        f"        Rules   = @({', '.join(ps_string(rule) for rule in host.rules)})",
    ]
    if set_value is None:
        lines.append("        Set     = $null")
    else:
        lines.append(
            f"        Set     = @{{ Key = {ps_string(set_value.key.value)}; Data = {set_value.after.data}; "
            f"Before = {ps_state(set_value.before)} }}"
        )
    deletes = [f"@{{ Key = {ps_string(d.key.value)}; Before = {ps_state(d.before)} }}" for d in host.deletes]
    if deletes:
        lines.append("        Delete  = @(")
        lines.extend(f"            {d}{',' if i < len(deletes) - 1 else ''}" for i, d in enumerate(deletes))
        lines.append("        )")
    else:
        lines.append("        Delete  = @()")
    lines.append(f"        Restart = ${'true' if host.restart else 'false'}")
    lines.append("    }")
    return lines


_BODY = r"""
$ValueName = 'AssumeUDPEncapsulationContextOnSendRule'

# Runs on the host: what is stored at HKLM\<Key>\<Name>, in the audit's terms (unsigned DWORDs,
# REG_EXPAND_SZ expanded as StdRegProv's GetExpandedStringValue returns it, REG_BINARY as hex).
$ReadValue = {
    param([string] $Key, [string] $Name)
    $k = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($Key)
    if ($null -eq $k) { return @{ Present = $false } }
    try {
        if (@($k.GetValueNames()) -notcontains $Name) { return @{ Present = $false } }
        $raw = $k.GetValue($Name)
        switch ($k.GetValueKind($Name).ToString()) {
            'DWord' {
                $data = [BitConverter]::ToUInt32([BitConverter]::GetBytes([int32]$raw), 0)
                return @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]$data }
            }
            'QWord' {
                $data = [BitConverter]::ToUInt64([BitConverter]::GetBytes([int64]$raw), 0)
                return @{ Present = $true; Type = 'REG_QWORD'; Data = [uint64]$data }
            }
            'String' { return @{ Present = $true; Type = 'REG_SZ'; Data = [string]$raw } }
            'ExpandString' { return @{ Present = $true; Type = 'REG_EXPAND_SZ'; Data = [string]$raw } }
            'MultiString' { return @{ Present = $true; Type = 'REG_MULTI_SZ'; Data = @($raw) } }
            'Binary' {
                $hex = @($raw | ForEach-Object { $_.ToString('x2') }) -join ''
                return @{ Present = $true; Type = 'REG_BINARY'; Data = $hex }
            }
            default { return @{ Present = $true; Type = 'REG_TYPE_?'; Data = $null } }
        }
    }
    finally { $k.Close() }
}
$SetDword = {
    param([string] $Key, [string] $Name, [int] $Data)
    $k = [Microsoft.Win32.Registry]::LocalMachine.CreateSubKey($Key)
    try { $k.SetValue($Name, $Data, [Microsoft.Win32.RegistryValueKind]::DWord) } finally { $k.Close() }
}
$DeleteValue = {
    param([string] $Key, [string] $Name)
    $k = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($Key, $true)
    if ($null -ne $k) { try { $k.DeleteValue($Name, $false) } finally { $k.Close() } }
}
$RestartAgent = { Restart-Service -Name PolicyAgent -Force }

# Whether what a host holds now is the state the plan recorded: type and data, exactly.
function Test-NattState([hashtable] $Now, [hashtable] $Expected) {
    if ([bool]$Now.Present -ne [bool]$Expected.Present) { return $false }
    if (-not $Expected.Present) { return $true }
    if ($null -eq $Expected.Data) { return ($Now.Type -like 'REG_TYPE_*') -or ($Now.Type -ceq $Expected.Type) }
    if ($Now.Type -cne $Expected.Type) { return $false }
    $a = @($Now.Data)
    $b = @($Expected.Data)
    if ($a.Count -ne $b.Count) { return $false }
    for ($i = 0; $i -lt $a.Count; $i++) {
        if (($a[$i] -is [string]) -or ($b[$i] -is [string])) {
            if ([string]$a[$i] -cne [string]$b[$i]) { return $false }
        }
        elseif ([uint64]$a[$i] -ne [uint64]$b[$i]) { return $false }
    }
    return $true
}

function Show-NattState([hashtable] $State) {
    if (-not $State.Present) { return 'absent' }
    return ('{0} {1}' -f $State.Type, (@($State.Data) -join ', '))
}

$failed = 0
foreach ($h in $Plan) {
    if ($ComputerName -and ($ComputerName -notcontains $h.Name)) { continue }
    $remote = @{ ComputerName = $h.Address; ErrorAction = 'Stop' }
    if ($Credential) { $remote.Credential = $Credential }
    try {
        # Re-read every value the plan changes before changing any.
        $checks = @()
        if ($null -ne $h.Set) {
            $after = @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]$h.Set.Data }
            $checks += @{ Key = $h.Set.Key; Before = $h.Set.Before; After = $after }
        }
        foreach ($d in $h.Delete) { $checks += @{ Key = $d.Key; Before = $d.Before; After = @{ Present = $false } } }
        foreach ($c in $checks) {
            $c.Now = Invoke-Command @remote -ScriptBlock $ReadValue -ArgumentList $c.Key, $ValueName
            $c.Done = Test-NattState $c.Now $c.After
            if (-not $c.Done -and -not (Test-NattState $c.Now $c.Before)) {
                $now, $saw = (Show-NattState $c.Now), (Show-NattState $c.Before)
                throw ('HKLM\{0} is {1}, the audit saw {2}: left unchanged' -f $c.Key, $now, $saw)
            }
        }
        $changed = $false
        foreach ($c in $checks) {
            $target = '{0}: HKLM\{1}\{2}' -f $h.Name, $c.Key, $ValueName
            $saw = Show-NattState $c.Before
            if ($c.Done) { Write-Verbose "$target is already as planned"; continue }
            if ($c.After.Present) {
                if ($PSCmdlet.ShouldProcess($target, ('Set REG_DWORD {0} (the audit saw {1})' -f $h.Set.Data, $saw))) {
                    Invoke-Command @remote -ScriptBlock $SetDword -ArgumentList $c.Key, $ValueName, $h.Set.Data
                    $changed = $true
                }
                elseif ($WhatIfPreference) { $changed = $true }  # so that -WhatIf shows the restart too
            }
            elseif ($PSCmdlet.ShouldProcess($target, "Delete (the audit saw $saw at a key the OS ignores)")) {
                Invoke-Command @remote -ScriptBlock $DeleteValue -ArgumentList $c.Key, $ValueName
            }
        }
        # The IPsec Policy Agent reads the value when it starts (KB 885407).
        if ($h.Restart -and $changed -and $PSCmdlet.ShouldProcess($h.Name, 'Restart-Service PolicyAgent')) {
            Invoke-Command @remote -ScriptBlock $RestartAgent
        }
    }
    catch {
        $failed++
        Write-Error ('{0}: {1}' -f $h.Name, $_.Exception.Message) -ErrorAction Continue
    }
}
if ($failed -gt 0) { exit 1 }
"""


def render(plan: RemediationPlan) -> str:
    """Return the script (CRLF line ends are added by `write`)."""
    head = [f"# {line}" for line in header_lines(plan)]
    lines = [
        "<#",
        ".SYNOPSIS",
        "Apply a natt-audit remediation plan for AssumeUDPEncapsulationContextOnSendRule.",
        ".DESCRIPTION",
        "For each planned host (or only those named by -ComputerName): re-read every value the plan",
        "changes and leave the host unchanged if one is neither what the audit saw nor what the plan",
        "sets; set the value at the key that applies to the OS; delete the values at the key the OS",
        "ignores; restart the IPsec Policy Agent when the value changed (KB 885407: it reads the value",
        "when it starts). Hosts are reached with Invoke-Command at the address the audit used.",
        ".PARAMETER ComputerName",
        "Only these hosts of the plan (names as in the report). Default: every planned host.",
        ".PARAMETER Credential",
        "The account for PowerShell remoting; default: the current user.",
        ".EXAMPLE",
        f".\\{FILE} -WhatIf",
        ".EXAMPLE",
        f".\\{FILE} -ComputerName host1,host2 -Confirm",
        "#>",
        *head,
        "[CmdletBinding(SupportsShouldProcess)]",
        "param(",
        "    [string[]] $ComputerName,",
        "    [System.Management.Automation.PSCredential] $Credential",
        ")",
        "Set-StrictMode -Version 2.0",
        "$ErrorActionPreference = 'Stop'",
        "",
        "# The plan: one entry per host; Before is what the audit saw (host-supplied data, quoted).",
        "$Plan = @(",
    ]
    for index, host in enumerate(plan.hosts):
        block = _host(host)
        if index < len(plan.hosts) - 1:
            block[-1] += ","
        lines.extend(block)
    lines.append(")")
    return "\n".join(lines) + "\n" + _BODY.lstrip("\n")


def write(plan: RemediationPlan) -> dict[str, bytes]:
    """Return the files of this format: the script, UTF-8 with a BOM and CRLF as Windows PowerShell reads it."""
    text = render(plan).replace("\n", "\r\n")
    return {FILE: b"\xef\xbb\xbf" + text.encode("utf-8")}
