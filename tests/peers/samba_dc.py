"""A real Samba Active Directory domain controller on loopback, one per pytest session.

`samba_dc_session(workdir)` yields a running DC for realm LAB.TEST (NetBIOS domain LAB, host dc1,
internal DNS), bound to the loopback interface only (`interfaces=lo`, `bind interfaces only=yes`:
127.0.0.1 and ::1). It is Samba's own DC, not a mock: the KDC speaks Kerberos (RFC 4120) and applies
the domain's lockout policy; the LDAP server holds the MS-ADTS directory, answers RFC 2696 paged
searches and refuses a simple bind without transport encryption (smb.conf(5) "ldap server require strong
auth = yes", the default); accounts are managed with `samba-tool ... -s <smb.conf>` as on any Samba DC
(https://wiki.samba.org/index.php/Setting_up_Samba_as_an_Active_Directory_Domain_Controller).

- LDAPS uses a certificate from a throw-away test CA, with subjectAltName DNS:dc1.lab.test and
  IP:127.0.0.1 (the one Samba generates itself has no subjectAltName). `SambaDC.ca_path` is that CA.
- `SambaDC.krb5_conf` is a Kerberos client configuration that needs no DNS (`kdc = 127.0.0.1`,
  `dns_lookup_kdc = false`, `rdns = false`, `dns_canonicalize_hostname = false`): point KRB5_CONFIG at it.
- Services: the defaults minus `s3fs` (smbd, SMB on 445/139), `nbt` (NetBIOS, 137/138) and `dnsupdate`
  (samba_dnsupdate, which checks the DC's DNS records through the resolvers in /etc/resolv.conf).
  Kerberos and LDAP need none of them, and a distribution's own smbd/nmbd, often running, holds those
  ports on every address. No DNS forwarder is configured, so the DNS server on 127.0.0.1:53 never
  forwards a query off the machine.
- Unlike Windows, Samba 4.17 does not enforce MaxPageSize (1,000): a search without the paged-results
  control returned all 2,400 objects, and a page size of 1,500 came back whole. A test of paging must
  ask for pages smaller than the result and check the pages, not rely on the server's cap.
- Only one DC can listen on 127.0.0.1:88/389/636, so sessions on one machine take turns through a lock file.
- Samba must run as root.

Provisioning is done once per machine and package versions: a provisioned, never-started template is
kept under $TMPDIR/natt-audit-samba-template-<uid>/<key> (key: the Samba/ldb package versions and the
provisioning options) and each session copies it. Samba keeps absolute paths only in etc/smb.conf (the
ldb files name their partitions relatively); the copy rewrites them, and building the template checks
that no other file holds its path (otherwise every session provisions afresh). The template is rebuilt
when a file is missing or changed size, and after a week (well within the 42-day maximum password age
of the Administrator password set at provisioning).

Measured on Debian 12, Samba 4.17.12, 2 cores (gVisor sandbox), quiet machine; `SambaDC.timings` has each run's:
- provisioning (`samba-tool domain provision`): 2.5 s, once per machine; copying the cached template: 0.02-0.04 s
- start until 88, 389 and 636 accept connections: 0.3-0.6 s
- `ldbadd()` of 1,200 computer objects: 1.3 s straight into sam.ldb, against 4.5 s for the same LDIF through
  `ldbadd -H ldap://127.0.0.1 -U Administrator` (one server-side transaction per object); with a parallel
  compile hogging the CPUs these were 3 s and 10 s. Without ldb's batch mode (BATCH_MODE below) each added
  object cost time in proportion to the objects already there: 4 ms an object at 10,000, 25 ms past 30,000;
  with it, 500 computers take 0.45 s at 29,000 as at none
- stop (SIGTERM until no samba process is left and the ports are closed): 0.1 s
- the whole of tests/ad: 6 s with the template cached, 8.5 s when the session provisions it
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from scanner.lab.tls import issue_certificates

REALM = "LAB.TEST"
DOMAIN = "LAB"
HOST_NAME = "dc1"
DNS_DOMAIN = "lab.test"
DC_FQDN = f"{HOST_NAME}.{DNS_DOMAIN}"
BASE_DN = "DC=lab,DC=test"
ADDRESS = "127.0.0.1"
ADMIN_PASSWORD = "Adm1n-Lab-Passw0rd!"
KDC_PORT = 88
LDAP_PORT = 389
LDAPS_PORT = 636
READY_PORTS = (KDC_PORT, LDAP_PORT, LDAPS_PORT)
# Every TCP port the DC listens on with SERVICES: DNS, KDC, RPC endpoint mapper, LDAP, kpasswd, LDAPS, GC.
TCP_PORTS = (53, 88, 135, 389, 464, 636, 3268, 3269)
SERVICES = "-s3fs -nbt -dnsupdate"
# Debian packages that provide the programs used here.
APT_PACKAGES = ("samba-ad-dc", "samba-ad-provision", "ldb-tools", "krb5-user")
TOOLS = {
    "samba": "samba-ad-dc",
    "samba-tool": "samba-ad-dc",
    "ldbadd": "ldb-tools",
    "ldbmodify": "ldb-tools",
    "kinit": "krb5-user",
}
PROVISION_DATA = Path("/usr/share/samba/setup/provision.ldif")  # samba-ad-provision

TEMPLATE_FORMAT = 1  # bump when the template's layout or meaning changes
TEMPLATE_MAX_AGE = dt.timedelta(days=7)
MAX_DIR_LENGTH = 70  # Samba puts Unix sockets under the directory; sun_path holds 107 bytes
LOG_TAIL = 4000
# ldb_connect option (ldbadd/ldbmodify -o) that `samba-tool domain provision` and `join` use for bulk loads:
# without it ldb's key-value layer wraps every record in a sub-transaction whose commit copies each index
# list the record touches (objectClass=computer, primaryGroupID=515, ...: one entry per computer), so a
# load grows with the square of the directory. In batch mode a failing record aborts the whole
# transaction instead, which is what a test fixture wants anyway.
BATCH_MODE = ("-o", "batch_mode:1")

_ADDED = re.compile(r"Added (\d+) records successfully")
_KDC_ERROR = re.compile(r"Received error from KDC: (-?\d+)/(.+)")


class SambaDCError(RuntimeError):
    """The DC could not be provisioned, started or driven; the message carries the tool's output."""


class SambaDCUnavailable(SambaDCError):
    """This machine cannot run the DC (missing packages, not root, ports taken); the message says what to do."""


class SambaToolError(SambaDCError):
    """A samba-tool, ldbadd or kinit call failed; holds its argv (passwords masked), exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{' '.join(self.argv)} exited {returncode}:\n{stderr.strip() or stdout.strip()}")


@dataclass(frozen=True)
class User:
    """An account created on the DC."""

    name: str
    password: str

    @property
    def principal(self) -> str:
        """Return the Kerberos principal name, NAME@LAB.TEST."""
        return f"{self.name}@{REALM}"


@dataclass(frozen=True)
class LockoutPolicy:
    """The domain's account lockout settings as the DC reports them after a change."""

    threshold: int
    duration_minutes: int
    reset_minutes: int


@dataclass(frozen=True)
class KinitResult:
    """The outcome of one `kinit`: success, its stderr and the last error the KDC sent (RFC 4120 KRB-ERROR)."""

    ok: bool
    returncode: int
    stderr: str
    kdc_error: str | None  # e.g. "Preauthentication failed", "Client's credentials have been revoked"
    kdc_error_code: int | None  # MIT com_err code, e.g. -1765328360 for KDC_ERR_PREAUTH_FAILED (24)


@dataclass(frozen=True)
class Timings:
    """Seconds spent preparing and starting this session's DC (provision is None when a template was copied)."""

    provision: float | None
    copy: float | None
    start: float


@dataclass(frozen=True)
class _Layout:
    """Where one DC's files live; every path Samba is given is under `root`."""

    root: Path

    @property
    def smb_conf(self) -> Path:
        """Return the smb.conf path."""
        return self.root / "etc" / "smb.conf"

    @property
    def sam_ldb(self) -> Path:
        """Return the directory database path."""
        return self.root / "private" / "sam.ldb"

    @property
    def tls_dir(self) -> Path:
        """Return the folder of the LDAPS key, certificate and CA."""
        return self.root / "tls"

    @property
    def log_dir(self) -> Path:
        """Return the folder of samba's output and log."""
        return self.root / "log"

    @property
    def run_dir(self) -> Path:
        """Return the folder of pid files and sockets."""
        return self.root / "run"

    def provision_options(self) -> list[str]:
        """Return the smb.conf options written at provisioning; every path is under root."""
        tls = self.tls_dir
        options = {
            "interfaces": "lo",
            "bind interfaces only": "yes",
            "server services": SERVICES,
            "dns forwarder": "",
            "tls enabled": "yes",
            "tls keyfile": str(tls / "key.pem"),
            "tls certfile": str(tls / "cert.pem"),
            "tls cafile": str(tls / "ca.pem"),
            "log file": str(self.log_dir / "samba.log"),
            "pid directory": str(self.run_dir),
            "ncalrpc dir": str(self.run_dir / "ncalrpc"),
            "winbindd socket directory": str(self.run_dir / "winbindd"),
            "ntp signd socket directory": str(self.run_dir / "ntp_signd"),
            "nbt client socket address": ADDRESS,
            "prefork children": "1",  # one worker per service instead of four: enough for tests, half the processes
            # DCE/RPC endpoints default to 49152-65535, inside Linux's ephemeral range (32768-60999), where a
            # lab host or any client socket may already sit: the DC then fails to start
            # (NT_STATUS_ADDRESS_ALREADY_ASSOCIATED). Above 60999 the kernel never hands a port out.
            "rpc server dynamic port range": "62000-62999",
        }
        return [f"--option={name}={value}" for name, value in options.items()]

    def provision_argv(self) -> list[str]:
        """Return the `samba-tool domain provision` command line for this layout."""
        return [
            "samba-tool", "domain", "provision",
            f"--realm={REALM}", f"--domain={DOMAIN}", "--server-role=dc", "--dns-backend=SAMBA_INTERNAL",
            f"--adminpass={ADMIN_PASSWORD}", f"--targetdir={self.root}", f"--host-name={HOST_NAME}",
            *self.provision_options(),
        ]  # fmt: skip


def _mask(argv: Sequence[str], secrets: Sequence[str]) -> list[str]:
    """Return argv with every secret replaced by ***."""
    masked = []
    for arg in argv:
        for secret in secrets:
            if secret:
                arg = arg.replace(secret, "***")
        masked.append(arg)
    return masked


def _run(
    argv: Sequence[str],
    *,
    secrets: Sequence[str] = (),
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run a tool; raise SambaToolError with its stderr (secrets masked) when it fails."""
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SambaToolError(_mask(argv, secrets), -1, "", f"timed out after {timeout} s") from exc
    if proc.returncode != 0:
        raise SambaToolError(_mask(argv, secrets), proc.returncode, proc.stdout, proc.stderr)
    return proc


def _tail(path: Path, limit: int = LOG_TAIL) -> str:
    """Return the end of a log file, or a note that it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return f"({path} does not exist)"
    return data[-limit:].decode("utf-8", errors="replace")


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """Return whether something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((ADDRESS, port), timeout=timeout):
            return True
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    """Return whether a process group still has a member that is not a zombie (its parent may reap late)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        except (OSError, IndexError):  # the process exited while we looked
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def check_prerequisites() -> None:
    """Raise SambaDCUnavailable saying what to install or change when this machine cannot run the DC."""
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not PROVISION_DATA.exists():
        missing.append("samba-ad-provision")
    if missing:
        raise SambaDCUnavailable(
            f"the Samba AD DC test fixture needs Debian packages {' '.join(sorted(set(missing)))}: "
            f"run scripts/test as root, or apt-get install --no-install-recommends {' '.join(APT_PACKAGES)}"
        )
    if os.geteuid() != 0:
        raise SambaDCUnavailable("the Samba AD DC test fixture must run as root: samba binds ports below 1024")


class SambaDC:
    """One provisioned domain controller: its files, its process and helpers to manage accounts."""

    def __init__(self, layout: _Layout, krb5_conf: Path, ca_path: Path) -> None:
        self._layout = layout
        self.krb5_conf = krb5_conf
        self.ca_path = ca_path
        self.admin_password = ADMIN_PASSWORD
        self.realm = REALM
        self.domain = DOMAIN
        self.fqdn = DC_FQDN
        self.address = ADDRESS
        self.base_dn = BASE_DN
        self.timings = Timings(provision=None, copy=None, start=0.0)
        self._process: subprocess.Popen[bytes] | None = None
        self._output = layout.log_dir / "samba.out"

    @property
    def root(self) -> Path:
        """Return the directory holding this DC's configuration, databases and logs."""
        return self._layout.root

    @property
    def smb_conf(self) -> Path:
        """Return the smb.conf every samba-tool call is given with -s."""
        return self._layout.smb_conf

    @property
    def sam_ldb(self) -> Path:
        """Return the directory database (sam.ldb) path."""
        return self._layout.sam_ldb

    @property
    def admin(self) -> User:
        """Return the domain's Administrator account."""
        return User("Administrator", ADMIN_PASSWORD)

    @property
    def ldap_url(self) -> str:
        """Return the plain LDAP URL."""
        return f"ldap://{ADDRESS}:{LDAP_PORT}"

    @property
    def ldaps_url(self) -> str:
        """Return the LDAPS URL."""
        return f"ldaps://{ADDRESS}:{LDAPS_PORT}"

    def log(self) -> str:
        """Return the end of what samba wrote (its stdout/stderr and its log file)."""
        return f"--- samba output:\n{_tail(self._output)}\n--- {self._layout.log_dir / 'samba.log'}:\n" + _tail(
            self._layout.log_dir / "samba.log"
        )

    # ----------------------------------------------------------------- process

    def start(self, timeout: float = 60.0) -> None:
        """Start `samba -i` and wait until the KDC and LDAP/LDAPS accept connections."""
        busy = [port for port in TCP_PORTS if _port_open(port, timeout=0.2)]
        if busy:
            raise SambaDCUnavailable(
                f"{ADDRESS} ports {busy} are already in use (another DC, smbd or DNS server?); "
                "the test DC needs them: stop that service first"
            )
        started = time.monotonic()
        with self._output.open("ab") as out:
            self._process = subprocess.Popen(
                ["samba", "-i", "-s", str(self.smb_conf)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so stop() reaches every child
                env=self._tool_env(),
            )
        deadline = started + timeout
        waiting = list(READY_PORTS)
        while waiting:
            if self._process.poll() is not None:
                raise SambaDCError(f"samba exited with {self._process.returncode} before listening\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SambaDCError(f"samba did not listen on {ADDRESS} ports {waiting} in {timeout} s\n{self.log()}")
            waiting = [port for port in waiting if not _port_open(port, timeout=0.2)]
            if waiting:
                time.sleep(0.1)
        self.timings = Timings(self.timings.provision, self.timings.copy, time.monotonic() - started)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop samba with SIGTERM (it stops its children), then SIGKILL its process group; wait for the ports."""
        proc = self._process
        if proc is None:
            return
        self._process = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        # The parent can exit before its children have closed their sockets: give them a moment, then force.
        deadline = time.monotonic() + timeout
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(_port_open(port, timeout=0.2) for port in READY_PORTS) and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """Return whether the samba process is alive."""
        return self._process is not None and self._process.poll() is None

    # ----------------------------------------------------------------- tools

    def _tool_env(self) -> dict[str, str]:
        """Return the environment for Samba and Kerberos tools: this DC's krb5.conf, no inherited ccache."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KRB5")}
        env["KRB5_CONFIG"] = str(self.krb5_conf)
        env["LC_ALL"] = "C"
        return env

    def samba_tool(self, *args: str, secrets: Sequence[str] = ()) -> str:
        """Run `samba-tool ARGS -s smb.conf` against this DC's database; return its stdout."""
        argv = ["samba-tool", *args, "-s", str(self.smb_conf)]
        return _run(argv, secrets=[ADMIN_PASSWORD, *secrets], env=self._tool_env()).stdout

    def create_user(self, name: str, password: str) -> User:
        """Create a user account (enabled, in CN=Users) and return it."""
        self.samba_tool("user", "create", name, password, secrets=[password])
        return User(name, password)

    def disable_user(self, name: str) -> None:
        """Disable an account (userAccountControl ACCOUNTDISABLE)."""
        self.samba_tool("user", "disable", name)

    def unlock_user(self, name: str) -> None:
        """Clear an account's lockout (lockoutTime = 0)."""
        self.samba_tool("user", "unlock", name)

    def set_lockout(self, threshold: int, duration_minutes: int, reset_minutes: int) -> LockoutPolicy:
        """Set the domain's lockout policy (threshold 0 turns lockout off); return it as the DC now reports it."""
        self.samba_tool(
            "domain", "passwordsettings", "set",
            f"--account-lockout-threshold={threshold}",
            f"--account-lockout-duration={duration_minutes}",
            f"--reset-account-lockout-after={reset_minutes}",
        )  # fmt: skip
        shown = self.samba_tool("domain", "passwordsettings", "show")

        def number(label: str) -> int:
            match = re.search(rf"^{re.escape(label)}[^:]*:\s*(\d+)", shown, re.MULTILINE)
            if match is None:
                raise SambaDCError(f"no {label!r} in samba-tool domain passwordsettings show:\n{shown}")
            return int(match.group(1))

        return LockoutPolicy(
            threshold=number("Account lockout threshold"),
            duration_minutes=number("Account lockout duration"),
            reset_minutes=number("Reset account lockout after"),
        )

    def add_spn(self, spn: str, account: str) -> list[str]:
        """Add a servicePrincipalName to an account; return all of that account's SPNs."""
        self.samba_tool("spn", "add", spn, account)
        listing = self.samba_tool("spn", "list", account)
        # "User CN=... has the following servicePrincipalName:" then one indented SPN per line
        return [line.strip() for line in listing.splitlines() if line[:1].isspace() and line.strip()]

    def add_spns(self, account: str, spns: Sequence[str]) -> None:
        """Add many servicePrincipalNames to a user account in one ldbmodify (one transaction).

        `samba-tool spn add` costs about 0.35 s a call (a Python start each); one modify of sam.ldb
        adds any number in about the time of one.
        """
        ldif = "".join(
            [
                f"dn: CN={account},CN=Users,{BASE_DN}\nchangetype: modify\nadd: servicePrincipalName\n",
                *(f"servicePrincipalName: {spn}\n" for spn in spns),
                "-\n",
            ]
        )
        with tempfile.NamedTemporaryFile(
            "w", dir=self.root, prefix="modify-", suffix=".ldif", encoding="utf-8", delete=False
        ) as fh:
            fh.write(ldif)
            path = Path(fh.name)
        try:
            argv = ["ldbmodify", *BATCH_MODE, "-H", str(self.sam_ldb), f"--configfile={self.smb_conf}", str(path)]
            _run(argv, env=self._tool_env(), timeout=120)
        finally:
            path.unlink(missing_ok=True)

    def export_keytab(self, path: Path, principal: str) -> Path:
        """Export the keys of one account (every SPN of it is served by them) to a keytab; return its path."""
        path.unlink(missing_ok=True)
        self.samba_tool("domain", "exportkeytab", str(path), f"--principal={principal}")
        if not path.is_file() or path.stat().st_size == 0:
            raise SambaDCError(f"samba-tool domain exportkeytab wrote no keys for {principal} to {path}")
        return path

    def kinit(self, principal: str, password: str, ccache: Path | str) -> KinitResult:
        """Get a TGT into ccache with MIT kinit; return success, stderr and the KDC's error (from KRB5_TRACE)."""
        with tempfile.NamedTemporaryFile(dir=self.root, prefix="kinit-trace-", delete=False) as trace:
            trace_path = Path(trace.name)
        env = self._tool_env()
        env["KRB5CCNAME"] = str(ccache) if ":" in str(ccache) else f"FILE:{ccache}"
        env["KRB5_TRACE"] = str(trace_path)
        try:
            proc = subprocess.run(
                ["kinit", principal],
                input=password + "\n",
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
            errors = _KDC_ERROR.findall(trace_path.read_text(encoding="utf-8", errors="replace"))
        finally:
            trace_path.unlink(missing_ok=True)
        # A first "Additional pre-authentication required" is the normal start of an AS exchange.
        final = errors[-1] if errors and proc.returncode != 0 else None
        return KinitResult(
            ok=proc.returncode == 0,
            returncode=proc.returncode,
            stderr=proc.stderr.strip(),
            kdc_error=final[1].strip() if final else None,
            kdc_error_code=int(final[0]) if final else None,
        )

    def ldbadd(self, ldif_text: str) -> int:
        """Add LDIF records straight into sam.ldb (through Samba's module stack); return how many were added.

        Writing sam.ldb while the DC runs is what samba-tool does for every local change; it is one
        transaction, so 1,200 objects take about 1.3 s against about 4.5 s over ldap:// (see module docstring).
        """
        with tempfile.NamedTemporaryFile(
            "w", dir=self.root, prefix="add-", suffix=".ldif", encoding="utf-8", delete=False
        ) as fh:
            fh.write(ldif_text)
            ldif = Path(fh.name)
        try:
            argv = ["ldbadd", *BATCH_MODE, "-H", str(self.sam_ldb), f"--configfile={self.smb_conf}", str(ldif)]
            out = _run(argv, env=self._tool_env(), timeout=600).stdout
        finally:
            ldif.unlink(missing_ok=True)
        match = _ADDED.search(out)
        if match is None:
            raise SambaDCError(f"ldbadd did not report what it added:\n{out}")
        return int(match.group(1))


# --------------------------------------------------------------------- preparing a DC


def _write_krb5_conf(path: Path) -> Path:
    """Write a Kerberos client configuration for this realm that needs no DNS (MIT krb5.conf(5))."""
    path.write_text(
        "[libdefaults]\n"
        f"\tdefault_realm = {REALM}\n"
        "\tdns_lookup_realm = false\n"
        "\tdns_lookup_kdc = false\n"
        "\trdns = false\n"
        "\tdns_canonicalize_hostname = false\n"
        "\n[realms]\n"
        f"\t{REALM} = {{\n"
        f"\t\tkdc = {ADDRESS}\n"
        f"\t\tadmin_server = {ADDRESS}\n"
        f"\t\tkpasswd_server = {ADDRESS}\n"
        "\t}\n"
        "\n[domain_realm]\n"
        f"\t.{DNS_DOMAIN} = {REALM}\n"
        f"\t{DNS_DOMAIN} = {REALM}\n",
        encoding="utf-8",
    )
    return path


def _write_tls(layout: _Layout) -> Path:
    """Issue a test CA and a server certificate for dc1.lab.test and 127.0.0.1; return the CA's path."""
    layout.tls_dir.mkdir(parents=True, exist_ok=True)
    pem = issue_certificates([DC_FQDN])
    ca = layout.tls_dir / "ca.pem"
    ca.write_bytes(pem.ca)
    (layout.tls_dir / "cert.pem").write_bytes(pem.cert + pem.ca)  # the chain, so clients can build the path
    key = layout.tls_dir / "key.pem"
    key.unlink(missing_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # Samba refuses a key others can read
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem.key)
    return ca


def _provision(layout: _Layout) -> None:
    """Provision a new domain into layout.root (which must not hold one yet)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    _run(layout.provision_argv(), secrets=[ADMIN_PASSWORD], timeout=600)


def _package_versions() -> str:
    """Return the installed versions of the packages that write and read the template."""
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Package}=${Version}\\n", "samba", "samba-ad-provision", "python3-samba",
             "libldb2", "ldb-tools"],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
    except FileNotFoundError:  # not a Debian system: no version key, so no template reuse
        return ""


def _manifest(root: Path) -> dict[str, int]:
    """Return every file under root with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _only_smb_conf_holds(root: Path) -> bool:
    """Return whether root's absolute path appears in no file but etc/smb.conf (so a copy can be relocated)."""
    needle = str(root).encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path != root / "etc" / "smb.conf":
            with path.open("rb") as fh:
                if needle in fh.read():
                    return False
    return True


def _template_dir() -> tuple[Path, str] | None:
    """Return the cache folder and key for this machine's packages, or None when they cannot be identified."""
    versions = _package_versions()
    if not versions:
        return None
    options = _Layout(Path("/ROOT")).provision_argv()
    key = hashlib.sha256(json.dumps([TEMPLATE_FORMAT, versions, options]).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"natt-audit-samba-template-{os.geteuid()}"
    return cache, key


def _owned_private_dir(path: Path) -> bool:
    """Create path (0700) if needed; return whether it is ours and closed to others."""
    path.mkdir(mode=0o700, exist_ok=True)
    st = path.lstat()
    return path.is_dir() and not path.is_symlink() and st.st_uid == os.geteuid() and (st.st_mode & 0o077) == 0


@contextlib.contextmanager
def _locked(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on path, waiting up to timeout seconds for another holder."""
    deadline = time.monotonic() + timeout
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)  # never through a planted symlink
    with os.fdopen(fd, "r+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    raise SambaDCUnavailable(
                        f"{what}: still locked by process {holder} after {timeout} s ({path})"
                    ) from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _usable_template(template: Path, meta: Path) -> dict[str, object] | None:
    """Return the template's metadata if it is complete, unchanged and young enough, else None."""
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or info.get("root") != str(template):
        return None
    try:
        created = dt.datetime.fromisoformat(str(info.get("created")))
    except ValueError:
        return None
    if dt.datetime.now(dt.UTC) - created > TEMPLATE_MAX_AGE:
        return None
    if not template.is_dir() or info.get("files") != _manifest(template):
        return None
    return info


def _from_template(layout: _Layout) -> tuple[float | None, float | None]:
    """Fill layout.root from the cached template (building it first if needed); return (provision, copy) seconds.

    Falls back to provisioning straight into layout.root when the packages cannot be identified, the cache
    folder is not private to this user, or the provisioned files hold their absolute path outside smb.conf.
    """
    found = _template_dir()
    if found is None or not _owned_private_dir(found[0]):
        started = time.monotonic()
        _provision(layout)
        return time.monotonic() - started, None
    cache, key = found
    template, meta = cache / key, cache / f"{key}.json"
    provision_seconds: float | None = None
    with _locked(cache / f"{key}.lock", 900, "building the Samba DC template"):
        if _usable_template(template, meta) is None:
            meta.unlink(missing_ok=True)
            shutil.rmtree(template, ignore_errors=True)
            started = time.monotonic()
            _provision(_Layout(template))
            provision_seconds = time.monotonic() - started
            for transient in ("msg.sock", "msg.lock"):  # messaging sockets of the provisioning process
                shutil.rmtree(template / transient, ignore_errors=True)
            if not _only_smb_conf_holds(template):
                shutil.rmtree(template, ignore_errors=True)
                started = time.monotonic()
                _provision(layout)
                return time.monotonic() - started, None
            info = {"root": str(template), "created": dt.datetime.now(dt.UTC).isoformat(), "files": _manifest(template)}
            meta.write_text(json.dumps(info), encoding="utf-8")
        started = time.monotonic()
        shutil.copytree(template, layout.root, symlinks=True, dirs_exist_ok=True)  # copy2: keeps sysvol's NT ACL xattrs
    conf = layout.smb_conf.read_text(encoding="utf-8")
    layout.smb_conf.write_text(conf.replace(str(template), str(layout.root)), encoding="utf-8")
    return provision_seconds, time.monotonic() - started


@contextlib.contextmanager
def samba_dc_session(
    workdir: Path, *, start_timeout: float = 60.0, lock_timeout: float = 600.0
) -> Iterator[SambaDC]:
    """Provision (or copy the cached template of) a DC into workdir, run it for the with-block, then stop it.

    Raises SambaDCUnavailable when packages are missing, not root, or 127.0.0.1's DC ports stay taken.
    """
    check_prerequisites()
    root = workdir.resolve()
    if len(str(root)) > MAX_DIR_LENGTH:
        raise SambaDCUnavailable(f"{root} is longer than {MAX_DIR_LENGTH} characters: Samba's sockets would not fit")
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise SambaDCError(f"{root} is not empty: the DC needs a fresh directory")
    layout = _Layout(root)
    # Ports 88/389/636 on 127.0.0.1 are machine-wide: sessions running side by side take turns.
    port_lock = Path(tempfile.gettempdir()) / "natt-audit-samba-dc.lock"
    with _locked(port_lock, lock_timeout, "another test session's Samba DC holds 127.0.0.1:88/389/636"):
        provision_seconds, copy_seconds = _from_template(layout)
        for folder in (layout.log_dir, layout.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        ca = _write_tls(layout)
        dc = SambaDC(layout, _write_krb5_conf(root / "krb5.conf"), ca)
        dc.timings = Timings(provision_seconds, copy_seconds, 0.0)
        try:
            dc.start(start_timeout)
            yield dc
        finally:
            dc.stop()
