"""Benchmark: evaluate 10,000 hosts x 20 rules (target: under one second). Not a test; prints figures."""

from __future__ import annotations

import random
import time
from pathlib import Path

from rules.evaluate import evaluate
from rules.loader import builtin_policy, load_policy
from rules.models import Policy
from scanner.core.models import (
    IPSEC_KEY,
    POLICYAGENT_KEY,
    VALUE_NAME,
    KeyRead,
    Observation,
    OsInfo,
    RegistryValue,
    Target,
)
from scanner.core.semantics import assess
from scanner.core.yamlfile import load_text

HOSTS = 10_000
ROOT = Path(__file__).resolve().parent.parent

# Seven more rules so the set is 3 (baseline) + 4 (strict) + 6 (role-based example) + 7 = 20.
EXTRA = """
name: bench-extra
rules:
""" + "".join(
    f"""
  - id: BENCH-{i}
    title: bench rule {i}
    severity: low
    rationale: benchmark
    remediation: none
    scope: {{tags: {{site: {{glob: "s{i % 3}*"}}}}}}
    check:
      any:
        - {{fact: effective_mode, in: [0, 1]}}
        - all:
            - {{fact: raw_value, less_than: {i + 3}}}
            - {{fact: value_name, matches: '^Assume'}}
        - none:
            - {{fact: address_private, equals: true}}
"""
    for i in range(7)
)


def estate(n: int, seed: int = 7) -> list[Observation]:
    """Build a varied estate: every OS family, all modes, invalid types and values, strays, errors-free."""
    rng = random.Random(seed)
    oses = [
        OsInfo(version="10.0.19045", build=19045, service_pack=0),
        OsInfo(version="6.1.7601", build=7601, service_pack=1),
        OsInfo(version="5.2.3790", build=3790, service_pack=2),
        OsInfo(version="5.1.2600", build=2600, service_pack=1),
        OsInfo(version="5.0.2195", build=2195, service_pack=4),
    ]
    values = [
        None,
        RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=0),
        RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=1),
        RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=2),
        RegistryValue(name=VALUE_NAME, type="REG_DWORD", data=4294967295),
        RegistryValue(name=VALUE_NAME, type="REG_SZ", data="2"),
    ]
    out = []
    for i in range(n):
        os = rng.choice(oses)
        here, other = (POLICYAGENT_KEY, IPSEC_KEY) if os.version >= "6" else (IPSEC_KEY, POLICYAGENT_KEY)
        stray = rng.choice([None] * 9 + [values[3]])
        target = Target(
            name=f"host{i:05d}.corp.example",
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" if i % 4 else f"198.51.100.{i % 256}",
            port=5985,
            tags={"role": rng.choice(["vpn-gateway", "web", "db"]), "site": f"s{i % 5}"},
            group=rng.choice(["lab", "office", None]),
        )
        keys = (
            KeyRead(key=here, key_present=True, value=rng.choice(values)),
            KeyRead(key=other, key_present=stray is not None, value=stray),
        )
        out.append(Observation(target=target, os=os, keys=keys))
    return out


def main() -> None:
    """Run and print the figures."""
    policies: list[Policy] = [
        builtin_policy("baseline"),
        builtin_policy("strict"),
        load_policy(ROOT / "docs" / "examples" / "role-based-policy.yaml"),
        Policy.model_validate(load_text(EXTRA, "<bench-extra>").data),
    ]
    rules = sum(len(p.rules) for p in policies)
    observations = estate(HOSTS)
    evaluate(observations[0], policies)  # compile once, as a scan does before its first host
    t0 = time.perf_counter()
    settings = [assess(o) for o in observations]
    t1 = time.perf_counter()
    results = 0
    for o, s in zip(observations, settings, strict=True):
        results += len(evaluate(o, policies, setting=s))
    t2 = time.perf_counter()
    for o in observations:
        evaluate(o, policies)
    t3 = time.perf_counter()
    print(f"hosts={HOSTS} rules={rules} results={results}")
    print(f"evaluate (setting given):        {t2 - t1:.3f} s  ({(t2 - t1) / results * 1e6:.2f} us/result)")
    print(f"assess alone:                    {t1 - t0:.3f} s")
    print(f"evaluate (assess inside):        {t3 - t2:.3f} s")
    print("target: evaluate under 1.000 s:", "OK" if t2 - t1 < 1.0 else "MISSED")


if __name__ == "__main__":
    main()
