"""Credential sourcing: file, environment, prompt; never argv; the password never in any message."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.core.models import AuthMethod
from scanner.inputs.credentials import (
    ENV_PASSWORD,
    ENV_USERNAME,
    CredentialError,
    load_credentials,
    reject_secret_arguments,
)

SECRET = "Tr0ub4dor&3-hunter2"
USER = "LAB\\auditor"


class FakeTerminal:
    """Stands in for getpass and the username prompt, recording what was asked."""

    def __init__(self, username: str = USER, password: str = SECRET) -> None:
        self.answers = {"user": username, "password": password}
        self.asked: list[str] = []

    def ask(self, prompt: str) -> str:
        self.asked.append(prompt)
        return self.answers["user"]

    def getpass(self, prompt: str) -> str:
        self.asked.append(prompt)
        return self.answers["password"]


def never(prompt: str) -> str:
    raise AssertionError(f"unexpected prompt {prompt!r}")


def secret_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> str:
    path = tmp_path / "pw"
    path.write_bytes(content)
    os.chmod(path, mode)
    return str(path)


def refused(**kwargs: object) -> str:
    """Return the CredentialError text, after checking the secret is nowhere in it."""
    with pytest.raises(CredentialError) as info:
        load_credentials(**kwargs)  # type: ignore[arg-type]
    text = f"{info.value}\n{info.value!r}"
    assert SECRET not in text
    assert "hunter2" not in text
    return str(info.value)


def test_environment() -> None:
    creds = load_credentials(
        password_file=None,
        environ={ENV_USERNAME: USER, ENV_PASSWORD: SECRET},
        stdin_isatty=False,
        prompt=never,
    )
    assert creds.username == USER
    assert creds.password.get_secret_value() == SECRET
    for shown in (repr(creds), str(creds), creds.model_dump_json(), repr(creds.model_dump())):
        assert SECRET not in shown


def test_username_option_wins_over_environment() -> None:
    environ = {ENV_USERNAME: "other", ENV_PASSWORD: SECRET}
    creds = load_credentials(
        password_file=None, environ=environ, stdin_isatty=False, prompt=never, username=USER
    )
    assert creds.username == USER


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (SECRET.encode() + b"\n", SECRET),
        (SECRET.encode() + b"\r\nsecond line ignored\n", SECRET),
        (SECRET.encode(), SECRET),
        (b"  spaced pass  \n", "  spaced pass  "),  # only the line ending is stripped
        ("pässwörd\n".encode(), "pässwörd"),
    ],
)
def test_password_file_first_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = secret_file(tmp_path, content)
    environ = {ENV_USERNAME: USER, ENV_PASSWORD: "from-env-loses"}
    creds = load_credentials(password_file=path, environ=environ, stdin_isatty=False, prompt=never)
    assert creds.password.get_secret_value() == expected
    assert creds.username == USER


def test_password_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {ENV_USERNAME: USER}
    path = secret_file(tmp_path, SECRET.encode() + b"\n", mode=0o644)
    logger = logging.getLogger("natt_audit")  # the one stderr logger; setup_logging may stop its propagation
    logger.addHandler(caplog.handler)
    propagate, logger.propagate = logger.propagate, False  # each record once, whatever ran before
    try:
        load_credentials(password_file=path, environ=environ, stdin_isatty=False, prompt=never)
        assert [r.getMessage() for r in caplog.records] == [
            f"password file {path!r} is accessible to group or others (mode 0o644); chmod 600 it"
        ]
        caplog.clear()
        os.chmod(path, 0o600)
        load_credentials(password_file=path, environ=environ, stdin_isatty=False, prompt=never)
        assert caplog.records == []
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"\n" + SECRET.encode() + b"\n", "the first line is empty"),
        (b"", "the first line is empty"),
        (b"\xff" + SECRET.encode() + b"\n", "the first line is not UTF-8"),
        (SECRET.encode() * 5000, "is larger than 65536 bytes"),
    ],
)
def test_bad_password_file_errors_never_quote_the_file(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = secret_file(tmp_path, content)
    message = refused(password_file=path, environ={ENV_USERNAME: USER}, stdin_isatty=True, prompt=never)
    assert message.startswith(f"password file {path!r}")
    assert fragment in message


def test_missing_password_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope")
    message = refused(password_file=path, environ={ENV_USERNAME: USER}, stdin_isatty=True, prompt=never)
    assert message == f"password file {path!r}: No such file or directory"


def test_prompt_on_a_terminal() -> None:
    tty = FakeTerminal()
    creds = load_credentials(
        password_file=None, environ={}, stdin_isatty=True, prompt=tty.getpass, ask=tty.ask
    )
    assert (creds.username, creds.password.get_secret_value()) == (USER, SECRET)
    assert tty.asked == ["Username (DOMAIN\\user): ", "Password for LAB\\auditor: "]


def test_prompt_only_for_what_is_missing(tmp_path: Path) -> None:
    tty = FakeTerminal()
    creds = load_credentials(
        password_file=None,
        environ={ENV_USERNAME: "envuser"},
        stdin_isatty=True,
        prompt=tty.getpass,
        ask=never,
    )
    assert (creds.username, tty.asked) == ("envuser", ["Password for envuser: "])
    path = secret_file(tmp_path, SECRET.encode())
    tty.asked.clear()
    creds = load_credentials(password_file=path, environ={}, stdin_isatty=True, prompt=never, ask=tty.ask)
    assert (creds.username, creds.password.get_secret_value()) == (USER, SECRET)


def test_no_terminal_and_no_source_explains_the_three_ways() -> None:
    message = refused(password_file=None, environ={}, stdin_isatty=False, prompt=never)
    assert message.startswith("no username and password and no terminal to prompt on")
    for way in (
        "--password-file FILE",
        ENV_USERNAME,
        ENV_PASSWORD,
        "terminal",
        "never accepted as command-line",
    ):
        assert way in message


def test_no_terminal_with_half_the_environment(tmp_path: Path) -> None:
    message = refused(password_file=None, environ={ENV_PASSWORD: SECRET}, stdin_isatty=False, prompt=never)
    assert message.startswith("no username and no terminal")
    message = refused(password_file=None, environ={ENV_USERNAME: USER}, stdin_isatty=False, prompt=never)
    assert message.startswith("no password and no terminal")
    path = secret_file(tmp_path, SECRET.encode())
    message = refused(password_file=path, environ={}, stdin_isatty=False, prompt=never)
    assert message.startswith("no username and no terminal")


def test_empty_or_aborted_input_is_refused() -> None:
    assert refused(
        password_file=None, environ={ENV_USERNAME: USER, ENV_PASSWORD: ""}, stdin_isatty=True, prompt=never
    ).startswith(f"{ENV_PASSWORD} is set but empty")
    assert refused(
        password_file=None, environ={ENV_USERNAME: ""}, stdin_isatty=True, prompt=never
    ).startswith(f"the username from {ENV_USERNAME} is empty")
    assert (
        refused(
            password_file=None,
            environ={ENV_USERNAME: USER},
            stdin_isatty=True,
            prompt=FakeTerminal(password="").getpass,
        )
        == "an empty password was entered"
    )

    def eof(prompt: str) -> str:
        raise EOFError

    assert refused(
        password_file=None, environ={ENV_USERNAME: USER}, stdin_isatty=True, prompt=eof
    ).startswith("no credentials entered at the prompt")
    assert "control characters" in refused(
        password_file=None,
        environ={ENV_USERNAME: "LAB\\aud\x1b[2Jitor", ENV_PASSWORD: SECRET},
        stdin_isatty=False,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "-i", "inv.txt", "--password", SECRET],
        ["scan", f"--password={SECRET}"],
        ["scan", f"--PASSWORD={SECRET}"],
        ["scan", "--pass", SECRET],
        ["scan", "--passwd", SECRET],
        ["scan", "--passw", SECRET],  # argparse would expand this to --password-file and print it as a path
        ["scan", "-P", SECRET],
        ["scan", f"-P{SECRET}"],
        ["scan", "-i", f"https://auditor:{SECRET}@inventory.example/hosts.csv"],
        ["scan", f"--inventory=http://u:{SECRET}@x/y"],
    ],
)
def test_secret_arguments_are_refused_without_echoing_them(argv: list[str]) -> None:
    with pytest.raises(CredentialError) as info:
        reject_secret_arguments(argv)
    message = str(info.value)
    assert SECRET not in message
    assert "hunter2" not in message
    assert "command line" in message or "URL with user:password@" in message
    assert "--password-file FILE" in message  # says what to do instead


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "-i", "inv.txt", "--password-file", "/run/secrets/pw"],
        ["scan", "--password-file=/run/secrets/pw"],
        ["scan", "-p", "policy.yaml", "--policy", "strict.yaml"],
        ["scan", "-i", "https://inventory.example/hosts.csv"],
        ["scan", "-i", "https://auditor@inventory.example/hosts.csv"],  # a user name alone is no secret
        ["scan", "--passive"],
    ],
)
def test_ordinary_arguments_pass(argv: list[str]) -> None:
    reject_secret_arguments(argv)


_secret_tail = st.text(
    alphabet=st.characters(blacklist_characters="/@?#", blacklist_categories=("Zs", "Cc")), max_size=30
)


@given(tail=_secret_tail)
def test_refusals_never_contain_the_secret(tail: str) -> None:
    secret = "Zq9" + tail  # the marker occurs in no message, so finding it means the secret leaked
    for argv in (
        ["--password", secret],
        [f"--password={secret}"],
        [f"-P{secret}"],
        [f"https://u:{secret}@h/"],
    ):
        with pytest.raises(CredentialError) as info:
            reject_secret_arguments(["scan", *argv])
        assert "Zq9" not in f"{info.value}{info.value!r}"


def test_a_kerberos_scan_uses_a_valid_ticket_cache_and_never_prompts() -> None:
    terminal = FakeTerminal()
    asked: list[str | None] = []

    def cache(name: str | None) -> str | None:
        asked.append(name)
        return "auditor@CORP.EXAMPLE.COM"

    kerberos = {AuthMethod.KERBEROS, AuthMethod.NEGOTIATE}
    creds = load_credentials(
        password_file=None,
        environ={"KRB5CCNAME": "FILE:/tmp/krb5cc_test"},
        stdin_isatty=True,
        prompt=terminal.getpass,
        ask=terminal.ask,
        transports=kerberos,
        ticket_cache=cache,
    )
    assert (creds.username, creds.password, creds.ccache) == ("auditor@CORP.EXAMPLE.COM", None, "FILE:/tmp/krb5cc_test")
    assert asked == ["FILE:/tmp/krb5cc_test"] and terminal.asked == []
    # A password, when given, wins (one AS exchange into the scan's own cache); NTLM hosts never use a cache.
    given = load_credentials(
        password_file=None,
        environ={ENV_USERNAME: USER, ENV_PASSWORD: SECRET},
        stdin_isatty=False,
        transports=kerberos,
        ticket_cache=cache,
    )
    assert given.password is not None and given.ccache is None
    with pytest.raises(CredentialError, match="no username and password"):
        load_credentials(
            password_file=None, environ={}, stdin_isatty=False, transports={AuthMethod.NTLM}, ticket_cache=cache
        )
    with pytest.raises(CredentialError, match="kinit"):
        load_credentials(
            password_file=None, environ={}, stdin_isatty=False, transports=kerberos, ticket_cache=lambda _: None
        )


def test_a_client_keytab_is_for_kerberos_hosts_only_and_must_be_a_keytab(tmp_path: Path) -> None:
    keytab = tmp_path / "scan.keytab"
    keytab.write_bytes(b"\x05\x02" + bytes(20))
    keytab.chmod(0o600)
    creds = load_credentials(
        password_file=None, environ={}, stdin_isatty=False, keytab=str(keytab), transports={AuthMethod.KERBEROS}
    )
    assert (creds.username, creds.keytab, creds.password) == ("", str(keytab), None)
    with pytest.raises(CredentialError, match="ntlm hosts"):
        load_credentials(
            password_file=None,
            environ={},
            stdin_isatty=False,
            keytab=str(keytab),
            transports={AuthMethod.KERBEROS, AuthMethod.NTLM},
        )
    not_keytab = tmp_path / "notes.txt"
    not_keytab.write_text("hello\n", encoding="utf-8")
    with pytest.raises(CredentialError, match="is not a Kerberos keytab"):
        load_credentials(
            password_file=None, environ={}, stdin_isatty=False, keytab=str(not_keytab), transports={AuthMethod.KERBEROS}
        )
    with pytest.raises(CredentialError, match="No such file"):
        load_credentials(
            password_file=None,
            environ={},
            stdin_isatty=False,
            keytab=str(tmp_path / "missing.keytab"),
            transports={AuthMethod.KERBEROS},
        )
