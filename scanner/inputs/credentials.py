"""Find the account to scan with: a password file, the environment, a TTY prompt; never argv.

For Kerberos also a client keytab, or an existing ticket cache (docs/authentication.md#credentials).
Sources and rules are documented in docs/inventory.md ("Credentials"). No message built here ever
contains the password or the content of the password file.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from scanner.core.bounded import InputFileError, read_bounded_stat
from scanner.core.errors import NattError
from scanner.core.models import KERBEROS_METHODS, AuthMethod, Credentials
from scanner.core.sanitize import has_unsafe

ENV_USERNAME = "NATT_AUDIT_USERNAME"
ENV_PASSWORD = "NATT_AUDIT_PASSWORD"  # noqa: S105 - the variable's name, not a password
MAX_PASSWORD_FILE_BYTES = 64 * 1024  # a password is a line; a bigger file is the wrong file

_log = logging.getLogger("natt_audit.inputs")  # under natt_audit: the one stderr path (scanner/core/logsetup.py)

HOW = (
    "give credentials one of three ways: --password-file FILE (first line is the password) with "
    f"{ENV_USERNAME} set; {ENV_USERNAME} and {ENV_PASSWORD} in the environment; or run on a terminal "
    "to be prompted (with Kerberos also --keytab FILE, or a ticket from kinit). Passwords are never "
    "accepted as command-line arguments."
)

# Long options that would put a secret in argv (and in `ps`, shell history, CI logs). "--pass"..
# "--password" are also the abbreviations argparse would expand to --password-file.
_SECRET_OPTIONS = frozenset(
    {"password", "passwd", "pwd", "pw", "pass", "passw", "passwo", "passwor", "secret"}
)
_URL_USERINFO = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s@]*:[^/?#\s]*@")


class CredentialError(NattError):
    """No usable credentials; the message says why and how to give them, never the secret."""


def reject_secret_arguments(argv: Sequence[str]) -> None:
    """Raise CredentialError when argv carries a password option or a URL with user:password@."""
    for position, arg in enumerate(argv, start=1):
        if arg.startswith("--"):
            option = arg[2:].split("=", 1)[0].lower()
            if option in _SECRET_OPTIONS:
                raise CredentialError(
                    f"argument {position} (--{option}) would put a password on the command line, "
                    f"where other users and logs can see it; {HOW}"
                )
        elif arg.startswith("-P"):
            raise CredentialError(
                f"argument {position} (-P) would put a password on the command line, "
                f"where other users and logs can see it; {HOW}"
            )
        if _URL_USERINFO.search(arg):
            raise CredentialError(
                f"argument {position} holds a URL with user:password@; credentials never go in "
                f"arguments or URLs; {HOW}"
            )


def _ask_on_stderr(prompt: str) -> str:
    """Prompt on stderr and read one line from stdin, so stdout stays clean for reports."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def _has_controls(value: str) -> bool:
    return has_unsafe(value)


def _check_username(username: str, origin: str) -> str:
    if username == "":
        raise CredentialError(f"the username from {origin} is empty; {HOW}")
    if username != username.strip() or _has_controls(username):
        raise CredentialError(f"the username from {origin} has surrounding whitespace or control characters")
    return username


def _read_password_file(path: str) -> str:
    """Return the first line of `path` without its line ending; messages never quote the file."""
    try:
        # A pipe is allowed (`--password-file <(pass show audit)`), within the size cap and a timeout.
        raw, info = read_bounded_stat(path, MAX_PASSWORD_FILE_BYTES, pipes=True)
    except InputFileError as exc:
        if exc.too_large:
            raise CredentialError(
                f"password file {path!r} is larger than {MAX_PASSWORD_FILE_BYTES} bytes; it should hold one line"
            ) from None
        raise CredentialError(f"password file {path!r}: {exc.reason}") from None
    if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Warn rather than refuse: secrets mounted by orchestrators are often 0644 inside a private
        # container, and refusing would push people towards the environment, which leaks more.
        _log.warning(
            "password file %r is accessible to group or others (mode %s); chmod 600 it",
            path,
            oct(stat.S_IMODE(info.st_mode)),
        )
    first = raw.split(b"\n", 1)[0]
    if first.endswith(b"\r"):
        first = first[:-1]
    try:
        password = first.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialError(f"password file {path!r}: the first line is not UTF-8") from None
    if password == "":
        raise CredentialError(f"password file {path!r}: the first line is empty")
    return password


def _keytab_credentials(keytab: str, name: str | None, transports: set[AuthMethod]) -> Credentials:
    """Return Kerberos credentials from a client keytab, after checking it can be read."""
    others = sorted(method.value for method in transports - KERBEROS_METHODS)
    if others:
        raise CredentialError(
            f"a keytab ({keytab!r}) logs on with Kerberos only, but the inventory has {', '.join(others)} hosts:"
            " give a password for those, or scan them with transport kerberos or negotiate"
        )
    try:
        with open(keytab, "rb") as handle:
            info = os.fstat(handle.fileno())
            head = handle.read(2)
    except OSError as exc:
        raise CredentialError(f"keytab {keytab!r}: {exc.strerror or type(exc).__name__}") from None
    if head[:1] != b"\x05":  # MIT keytab format: version 0x05 0x01 or 0x05 0x02 (keytab file format)
        raise CredentialError(f"keytab {keytab!r} is not a Kerberos keytab file")
    if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        _log.warning(
            "keytab %r is accessible to group or others (mode %s): it is as good as the password; chmod 600 it",
            keytab,
            oct(stat.S_IMODE(info.st_mode)),
        )
    return Credentials(username=name or "", keytab=keytab)


def load_credentials(
    *,
    password_file: str | None,
    environ: Mapping[str, str],
    stdin_isatty: bool,
    prompt: Callable[[str], str] = getpass.getpass,
    username: str | None = None,
    ask: Callable[[str], str] = _ask_on_stderr,
    keytab: str | None = None,
    transports: set[AuthMethod] | None = None,
    ticket_cache: Callable[[str | None], str | None] | None = None,
) -> Credentials:
    """Return the scan account from, in order: a keytab, the password file, the environment, a ticket cache, a prompt.

    The ticket cache (KRB5CCNAME or the default, found by `ticket_cache`, which returns its principal)
    is used only when every host logs on with Kerberos and no password was given: then nothing is
    prompted for.
    """
    name = _check_username(username, "the username option") if username is not None else None
    if name is None and ENV_USERNAME in environ:
        name = _check_username(environ[ENV_USERNAME], ENV_USERNAME)
    kerberos_only = bool(transports) and transports is not None and transports <= KERBEROS_METHODS
    if keytab is not None:
        if password_file is not None:
            raise CredentialError("give either a keytab or a password file, not both")
        return _keytab_credentials(keytab, name, transports or set())

    password: str | None = None
    if password_file is not None:
        password = _read_password_file(password_file)
    elif ENV_PASSWORD in environ:
        password = environ[ENV_PASSWORD]
        if password == "":
            raise CredentialError(f"{ENV_PASSWORD} is set but empty; {HOW}")

    if password is None and kerberos_only and ticket_cache is not None:
        cache = environ.get("KRB5CCNAME") or None
        principal = ticket_cache(cache)
        if principal is not None:
            return Credentials(username=name or principal, ccache=cache or "")

    if (name is None or password is None) and not stdin_isatty:
        missing = "username" if name is None else "password"
        if name is None and password is None:
            missing = "username and password"
        raise CredentialError(f"no {missing} and no terminal to prompt on; {HOW}")
    try:
        if name is None:
            name = _check_username(ask("Username (DOMAIN\\user): "), "the prompt")
        if password is None:
            password = prompt(f"Password for {name}: ")
    except EOFError:
        raise CredentialError(f"no credentials entered at the prompt; {HOW}") from None
    if password == "":
        raise CredentialError("an empty password was entered")
    return Credentials(username=name, password=SecretStr(password))


def read_password_file(path: str) -> str:
    """Return the first line of a password file, refused with the same rules as the scan account's."""
    return _read_password_file(path)
# The credential fingerprint kept in the resume journal (docs/authentication.md#the-credential-fingerprint):
# HMAC-SHA256 keyed with scrypt(secret, salt), over a version tag, the kind of secret and the
# case-folded username. scrypt's cost (N=2^15, r=8, p=1: 32 MiB, tens of ms once per scan) makes a
# guess at the password from a stolen journal as dear as from any scrypt hash; the salt (16 random
# bytes per journal) makes two journals' fingerprints of one password unrelated.
FINGERPRINT_VERSION = 1
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
_SALT_BYTES = 16
_TAG = b"natt-audit credential fingerprint v1"


@dataclass(frozen=True)
class CredentialFingerprint:
    """Who the scan logged on as and a salted, keyed digest of the secret; never the secret itself."""

    salt: str  # hex
    digest: str  # hex
    kind: str = "password"  # the kind of secret: a password from a file, the environment or a prompt

    def to_json(self) -> dict[str, object]:
        """Return the fingerprint as the journal header stores it."""
        return {"version": FINGERPRINT_VERSION, "kind": self.kind, "salt": self.salt, "digest": self.digest}

    @classmethod
    def from_json(cls, data: object) -> CredentialFingerprint:
        """Read a stored fingerprint; ValueError when it is not one this version wrote."""
        if not isinstance(data, dict) or data.get("version") != FINGERPRINT_VERSION:
            raise ValueError("not a version-1 credential fingerprint")
        salt, digest, kind = data.get("salt"), data.get("digest"), data.get("kind")
        if not (isinstance(salt, str) and isinstance(digest, str) and isinstance(kind, str)):
            raise ValueError("a credential fingerprint needs text salt, digest and kind")
        if len(bytes.fromhex(salt)) < _SALT_BYTES or len(bytes.fromhex(digest)) != 32:  # ValueError: not hex
            raise ValueError("a credential fingerprint's salt or digest has the wrong length")
        return cls(salt=salt, digest=digest, kind=kind)

    def matches(self, credentials: Credentials, kind: str = "password") -> bool:
        """Return whether `credentials` are the ones this fingerprint was made from."""
        again = credential_fingerprint(credentials, kind=kind, salt=bytes.fromhex(self.salt))
        return hmac.compare_digest(again.digest, self.digest) and kind == self.kind


def credential_fingerprint(
    credentials: Credentials, *, kind: str = "password", salt: bytes | None = None
) -> CredentialFingerprint:
    """Return the fingerprint of `credentials` with `salt` (a fresh random one when None)."""
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    if credentials.password is not None:
        secret = credentials.password.get_secret_value()
    else:
        # A keytab or a ticket cache: no password to guess; its source tells two apart (a rotated
        # keytab is a new file or a new path, a renewed cache is a new TGT proven before any host).
        secret = f"keytab:{credentials.keytab}" if credentials.keytab is not None else f"ccache:{credentials.ccache}"
    key = hashlib.scrypt(secret.encode("utf-8", "surrogatepass"), salt=salt, **_SCRYPT)
    message = b"\0".join((_TAG, kind.encode("utf-8"), credentials.username.casefold().encode("utf-8")))
    digest = hmac.new(key, message, hashlib.sha256).hexdigest()
    return CredentialFingerprint(salt=salt.hex(), digest=digest, kind=kind)
