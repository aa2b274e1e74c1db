"""The local engine: run one host's work (a read or an apply) on many hosts at once, streaming each Observation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from scanner.collect.collector import collect_with
from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.models import DEFAULT_CONCURRENCY, CollectOptions, Credentials, Observation, Target

# One host's work: given the target, the shared auth material and the options, an Observation
# (the host's facts, or the error that kept them; its logon outcome is what the fan-out accounts).
HostWork = Callable[[Target, AuthMaterial, CollectOptions], Observation]


def collect_all(
    targets: Sequence[Target],
    credentials: Credentials,
    options: CollectOptions,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_result: Callable[[Observation], None] | None = None,
    stop: threading.Event | None = None,
    keep: bool = True,
    work: HostWork = collect_with,
) -> list[Observation]:
    """Read every target with at most `concurrency` in flight; return results in inventory order.

    `on_result` is called once per finished host, serialised (never concurrently), in completion
    order. When `stop` is set, hosts not yet started are not started; hosts in flight finish
    (each within its own deadline) and only the finished hosts are returned, in inventory order.
    If `on_result` raises, the scan stops the same way and the exception is re-raised here.
    With `keep=False` nothing is kept and the list is empty: a caller that streams with
    `on_result` then holds no observation per host (docs/performance.md, memory).
    `work` is what is done per host: reading it (the default), or applying a plan to it
    (scanner/engine/apply.py), so both go through the same fan-out and its credential rules.
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
            observation = work(targets[index], material, options)
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
