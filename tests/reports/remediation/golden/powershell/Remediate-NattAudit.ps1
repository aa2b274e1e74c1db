<#
.SYNOPSIS
Apply a natt-audit remediation plan for AssumeUDPEncapsulationContextOnSendRule.
.DESCRIPTION
For each planned host (or only those named by -ComputerName): re-read every value the plan
changes and leave the host unchanged if one is neither what the audit saw nor what the plan
sets; set the value at the key that applies to the OS; delete the values at the key the OS
ignores; restart the IPsec Policy Agent when the value changed (KB 885407: it reads the value
when it starts). Hosts are reached with Invoke-Command at the address the audit used.
.PARAMETER ComputerName
Only these hosts of the plan (names as in the report). Default: every planned host.
.PARAMETER Credential
The account for PowerShell remoting; default: the current user.
.EXAMPLE
.\Remediate-NattAudit.ps1 -WhatIf
.EXAMPLE
.\Remediate-NattAudit.ps1 -ComputerName host1,host2 -Confirm
#>
# natt-audit 0.1.0 remediation plan: AssumeUDPEncapsulationContextOnSendRule
# scan 3f7c2a10-0b1e-4f5e-9a6d-1c2b3a4d5e6f, finished 2026-11-27T01:02:03Z
# policies: baseline
# 10 hosts to change; 5 hosts left out in whole or part (see the json plan for why)
[CmdletBinding(SupportsShouldProcess)]
param(
    [string[]] $ComputerName,
    [System.Management.Automation.PSCredential] $Credential
)
Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'

# The plan: one entry per host; Before is what the audit saw (host-supplied data, quoted).
$Plan = @(
    @{
        Name    = 'w10-binary'
        Address = '192.0.2.8'
        Rules   = @('NATT-002')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Data = 0; Before = @{ Present = $true; Type = 'REG_BINARY'; Data = '02000000' } }
        Delete  = @()
        Restart = $true
    },
    @{
        Name    = 'w10-mode2-stray'
        Address = '192.0.2.4'
        Rules   = @('NATT-001', 'NATT-003')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Data = 0; Before = @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]2 } }
        Delete  = @(
            @{ Key = 'SYSTEM\CurrentControlSet\Services\IPsec'; Before = @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]2 } }
        )
        Restart = $true
    },
    @{
        Name    = 'w10-multi'
        Address = '192.0.2.7'
        Rules   = @('NATT-002')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Data = 0; Before = @{ Present = $true; Type = 'REG_MULTI_SZ'; Data = @('{{ lookup(''pipe'', ''touch /tmp/natt-pwned'') }}', '</desc><x a=''1''>', ([string][char]0x2019 + '; exit' + [string][char]0x2018)) } }
        Delete  = @()
        Restart = $true
    },
    @{
        Name    = 'w10-qword-lower'
        Address = '192.0.2.9'
        Rules   = @('NATT-002')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Data = 0; Before = @{ Present = $true; Type = 'REG_QWORD'; Data = [uint64]2 } }
        Delete  = @()
        Restart = $true
    },
    @{
        Name    = 'w10-sz'
        Address = '192.0.2.5'
        Rules   = @('NATT-002')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Data = 0; Before = @{ Present = $true; Type = 'REG_SZ'; Data = '2' } }
        Delete  = @()
        Restart = $true
    },
    @{
        Name    = 'w11-dword3'
        Address = '192.0.2.6'
        Rules   = @('NATT-001', 'NATT-002')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Data = 0; Before = @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]3 } }
        Delete  = @()
        Restart = $true
    },
    @{
        Name    = 'w2003-sz'
        Address = '192.0.2.3'
        Rules   = @('NATT-002', 'NATT-003')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\IPsec'; Data = 0; Before = @{ Present = $true; Type = 'REG_SZ'; Data = '2' } }
        Delete  = @(
            @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Before = @{ Present = $true; Type = 'REG_SZ'; Data = ('1''; Remove-Item C:\ -Recurse #' + [string][char]0x000D + [string][char]0x000A + '"AssumeUDPEncapsulationContextOnSendRule"=dword:00000002' + [string][char]0x202E) } }
        )
        Restart = $true
    },
    @{
        Name    = 'w2019-keyabsent-stray'
        Address = '192.0.2.10'
        Rules   = @('NATT-003')
        Set     = $null
        Delete  = @(
            @{ Key = 'SYSTEM\CurrentControlSet\Services\IPsec'; Before = @{ Present = $true; Type = 'REG_EXPAND_SZ'; Data = '%SystemRoot%' } }
        )
        Restart = $false
    },
    @{
        Name    = 'xp-sp2-mode2'
        Address = '192.0.2.1'
        Rules   = @('NATT-001')
        Set     = @{ Key = 'SYSTEM\CurrentControlSet\Services\IPsec'; Data = 0; Before = @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]2 } }
        Delete  = @()
        Restart = $true
    },
    @{
        Name    = 'xp-sp3-stray'
        Address = '192.0.2.2'
        Rules   = @('NATT-003')
        Set     = $null
        Delete  = @(
            @{ Key = 'SYSTEM\CurrentControlSet\Services\PolicyAgent'; Before = @{ Present = $true; Type = 'REG_DWORD'; Data = [uint64]1 } }
        )
        Restart = $false
    }
)
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
