"""`natt-audit lab`: serve a simulated Windows estate on loopback, or print a generated one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scanner.core.yamlfile import FileError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `lab` command and its `serve` / `generate` sub-commands."""
    lab = subparsers.add_parser("lab", help="simulated Windows estate on loopback (tests, demos, benchmarks)")
    sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = sub.add_parser("serve", help="serve every host of an estate file until SIGINT/SIGTERM")
    serve.add_argument("estate", type=Path, metavar="ESTATE.yaml")
    serve.add_argument(
        "--inventory-out",
        type=Path,
        required=True,
        metavar="INVENTORY.yaml",
        help="where to write the scanner inventory once every listener is up",
    )
    serve.add_argument(
        "--port-base",
        type=int,
        default=None,
        metavar="N",
        help="host i listens on port N+i (default: free ports)",
    )
    serve.add_argument(
        "--bind", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--stats-out",
        type=Path,
        default=None,
        metavar="STATS.json",
        help="write request/connection counters here on SIGUSR1 and at exit (for benchmarks)",
    )
    serve.add_argument(
        "--keytab",
        type=Path,
        default=None,
        metavar="FILE",
        help="keys of the account the hosts' HTTP/<fqdn> SPNs belong to: accept Kerberos (docs/lab.md#kerberos)",
    )
    serve.add_argument(
        "--state-out",
        type=Path,
        default=None,
        metavar="STATE.json",
        help="write each host's NAT-T registry values and Policy Agent state here on SIGUSR1 and at exit",
    )
    gen = sub.add_parser(
        "generate",
        help="print a realistic estate file to stdout",
        description="Print a realistic estate file (docs/lab.md); the same options print the same file.",
    )
    gen.add_argument("--count", type=int, default=200, metavar="N", help="hosts in the estate, 1..100000 (default 200)")
    gen.add_argument(
        "--seed", type=int, default=1, metavar="S", help="random seed of the OS, mode, role and site mix (default 1)"
    )
    gen.add_argument(
        "--prefix", default="host-", metavar="P", help="host names are P0001, P0002, ... (default host-)"
    )
    gen.add_argument(
        "--latency-ms",
        type=int,
        default=0,
        metavar="MS",
        help="modelled network latency added to every reply, in milliseconds (default 0)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the `lab` sub-command named in `args`."""
    if args.lab_command == "generate":
        from scanner.lab.generate import generate_estate

        if args.count < 1 or args.count > 100_000:
            print("natt-audit lab: --count must be 1..100000", file=sys.stderr)  # noqa: T201
            return 2
        sys.stdout.write(generate_estate(args.count, args.seed, args.prefix, args.latency_ms))
        return 0
    from scanner.lab.estate import load_estate
    from scanner.lab.server import serve

    if args.port_base is not None and not 1 <= args.port_base <= 65535:
        print("natt-audit lab: --port-base must be 1..65535", file=sys.stderr)  # noqa: T201
        return 2
    if args.keytab is not None and not args.keytab.is_file():
        print(f"natt-audit lab: --keytab {args.keytab}: no such file", file=sys.stderr)  # noqa: T201
        return 2
    try:
        estate = load_estate(args.estate)
    except FileError as exc:
        for line in str(exc).splitlines():  # one problem per line, each with the prefix
            print(f"natt-audit lab: {line}", file=sys.stderr)  # noqa: T201
        return 2
    return serve(
        estate,
        args.inventory_out,
        port_base=args.port_base,
        bind=args.bind,
        stats_out=args.stats_out,
        keytab=args.keytab,
        state_out=args.state_out,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m scanner.lab`."""
    parser = argparse.ArgumentParser(prog="python -m scanner.lab")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(parser.parse_args(["lab", *argv]))
