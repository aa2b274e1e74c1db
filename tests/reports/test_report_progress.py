"""Progress bar: drawn on a terminal only, never with host text, safe from many threads."""

from __future__ import annotations

import io
import threading

import pytest

from reports.progress import Progress
from scanner.core.models import HostError, Observation, OsInfo, Stage
from tests.support.sample_report import HOSTILE_CAPTION, target


class FakeTty(io.StringIO):
    """A captured stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


def observations(count: int) -> list[Observation]:
    """Return `count` observations, every third unread, all with hostile names and captions."""
    error = HostError(stage=Stage.CONNECT, reason="refused", message=HOSTILE_CAPTION)
    return [
        Observation(target=target(f"\x1b[31mhost{i}"), error=error)
        if i % 3 == 0
        else Observation(
            target=target(f"\x1b[31mhost{i}"), os=OsInfo(version="10.0", caption=HOSTILE_CAPTION)
        )
        for i in range(count)
    ]


def test_silent_when_stderr_is_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(total=5, stream=stream) as progress:
        for observation in observations(5):
            progress.advance(observation)
    assert stream.getvalue() == ""
    assert not progress.enabled
    assert (progress.done, progress.errors) == (5, 2)


def test_draws_counts_on_a_terminal_without_host_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    stream = FakeTty()
    with Progress(total=6, stream=stream) as progress:
        assert progress.enabled
        for observation in observations(6):
            progress.advance(observation)
    out = stream.getvalue()
    assert "6/6" in out
    assert "2 unread" in out
    assert "host" not in out
    assert "evil" not in out


def test_advance_from_many_threads_counts_every_host() -> None:
    items = observations(300)
    with Progress(total=len(items), stream=io.StringIO()) as progress:

        def work(chunk: list[Observation]) -> None:
            for observation in chunk:
                progress.advance(observation)

        threads = [threading.Thread(target=work, args=(items[i::4],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert progress.done == 300
    assert progress.errors == 100


def test_the_bar_is_stopped_when_the_scan_is_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    stream = FakeTty()
    progress = Progress(total=3, stream=stream)

    def scan() -> None:
        with progress:
            progress.advance(observations(1)[0])
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan()
    assert progress._bar is None
    assert "1/3" in stream.getvalue()
