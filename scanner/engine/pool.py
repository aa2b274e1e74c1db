"""The local engine: run one host's work (a read or an apply) on many hosts at once, streaming each Observation."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from scanner.collect.collector import collect_with
from scanner.collect.wsman.auth import AuthMaterial
from scanner.core.models import DEFAULT_CONCURRENCY, CollectOptions, Credentials, Observation, Target
from scanner.engine.logon import Admission, LogonPolicy

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
    logon: LogonPolicy | None = None,
    material: AuthMaterial | None = None,
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

    Every start is asked of `logon` (a fresh `LogonPolicy` when None): one host in flight until a
    logon is accepted, then `concurrency`; when its breaker trips, no host starts any more and each
    host not started is reported (to `on_result` too) as `auth/not_attempted`
    (docs/authentication.md#lockout-safety). A policy sharing its account with other engines (a
    site's workers) may also make this engine wait for them, or stop with its own error.

    Credentials are proven before any host is contacted: with Kerberos the scan's TGT is fetched
    first (a refused logon raises KerberosLoginError, exit 2). A caller that proved them already
    passes its `material` (and closes it); otherwise the ticket lives until this call returns.
    """
    own = material is None
    material = AuthMaterial(credentials) if material is None else material
    policy = logon if logon is not None else LogonPolicy(concurrency=max(1, concurrency))
    stop_event = stop if stop is not None else threading.Event()
    auth = material
    try:
        # Under the policy's probe lease: engines sharing the account make one AS exchange at a time.
        policy.prove(lambda: auth.prove(targets, options), stop_event, options.host_timeout)
        material.nt_hash()  # derive once, before the workers share it
        return _collect(targets, material, options, concurrency, on_result, stop_event, keep, policy, work)
    finally:
        policy.release()
        if own:
            material.close()


def _collect(
    targets: Sequence[Target],
    material: AuthMaterial,
    options: CollectOptions,
    concurrency: int,
    on_result: Callable[[Observation], None] | None,
    stop_event: threading.Event,
    keep: bool,
    policy: LogonPolicy,
    work: HostWork,
) -> list[Observation]:
    results: list[Observation | None] = [None] * len(targets) if keep else []
    next_index = 0  # the next target to start: taken only once the policy noted its logon
    # One lock for dispatch and the policy: a start is decided on the outcomes of every host
    # finished before it, and a finishing host wakes the workers waiting for the width to grow.
    dispatch = threading.Condition()
    result_lock = threading.Lock()
    failures: list[BaseException] = []
    in_flight = 0

    def deliver(index: int, observation: Observation) -> bool:
        if keep:
            results[index] = observation
        if on_result is None:
            return True
        with result_lock:
            if failures:
                return False
            try:
                on_result(observation)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                failures.append(exc)
                return False
        return True

    def worker() -> None:
        nonlocal in_flight, next_index
        while True:
            with dispatch:
                while True:
                    if stop_event.is_set() or failures or next_index >= len(targets):
                        return
                    admission = policy.admit(in_flight)
                    if admission is Admission.STOP:
                        return
                    if admission is Admission.START and policy.begin(targets[next_index], options.host_timeout):
                        break
                    # A finishing host notifies; the timeout also sees `stop` and what other engines
                    # sharing the account did (docs/authentication.md#lockout-safety).
                    dispatch.wait(policy.poll)
                index = next_index
                next_index += 1
                in_flight += 1
            observation = work(targets[index], material, options)
            with dispatch:
                in_flight -= 1
                policy.record(observation)
                dispatch.notify_all()
            if not deliver(index, observation):
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
    if policy.stopped and not failures:
        # The breaker kept the credentials away from every host not started (never retried).
        for index in range(next_index, len(targets)):
            if not deliver(index, policy.not_attempted(targets[index])):
                break
    if failures:
        raise failures[0]
    return [observation for observation in results if observation is not None]
