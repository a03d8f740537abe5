"""``switchover lab``: the pair in network namespaces, and fault scenarios against it (root only).

- ``lab up``: build the lab (servers A and B, a router/gateway, two NetTest hosts), write a config per
  server, start a node and the reference module inside each server namespace, wait until one is
  Primary and the other Backup;
- ``lab status``: namespaces, processes, roles, faults in force;
- ``lab down``: stop everything and remove the lab (also after a crash: it sweeps by prefix);
- ``lab run SCENARIO...``: run scenarios of ``deploy/scenarios`` (names or paths, ``all`` for every
  one), each in a fresh lab, print a timeline per run and a pass/fail summary; ``--png DIR`` draws
  the timelines, ``--repeat N`` runs each scenario N times;
- ``lab chaos --minutes N --seed S``: a randomized fault run (deploy/lab/chaos.py): a DS write workload
  through the active while a seeded nemesis applies the lab's faults, then the checks (two actives,
  writes, switch bounds, hooks, leaks); the same seed replays the same fault schedule.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from cli.output import error, print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lab", help="the pair in network namespaces; fault scenarios (root only)")
    ops = p.add_subparsers(dest="lab_op", required=True)

    def common(q: argparse.ArgumentParser, default_prefix: str) -> None:
        q.add_argument(
            "--prefix",
            default=default_prefix,
            help=f"name prefix of the lab's namespaces (default {default_prefix})",
        )
        q.add_argument("--labdir", help="state, configs, data and logs (default /run/switchover-lab/PREFIX)")
        q.add_argument("--verbose", action="store_true", help="log what the lab does")

    up = ops.add_parser("up", help="build the lab and start the pair (A Primary, B Backup)")
    common(up, "solab")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for Primary + Backup")
    up.add_argument("--manual-switch-only", action="store_true", help="start B with --manual-switch-only")
    up.add_argument("--no-module", action="store_true", help="do not start the reference modules")
    up.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server parameter on top of the fast profile (repeatable)",
    )
    down = ops.add_parser("down", help="stop the pair and remove the lab")
    common(down, "solab")
    status = ops.add_parser("status", help="namespaces, processes, roles and faults of the lab")
    common(status, "solab")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    run = ops.add_parser("run", help="run fault scenarios (deploy/scenarios/*.toml), each in a fresh lab")
    common(run, "solabrun")
    run.add_argument(
        "scenarios",
        nargs="+",
        metavar="SCENARIO",
        help="scenario names (node-crash), paths to .toml files, or 'all'",
    )
    run.add_argument("--png", metavar="DIR", help="also draw each run's timeline as DIR/<run>.png")
    run.add_argument("--repeat", type=int, default=1, metavar="N", help="run each scenario N times")
    run.add_argument(
        "--keep",
        action="store_true",
        help="leave the last scenario's lab and pair running for inspection (lab status/down)",
    )
    run.add_argument("--quiet", action="store_true", help="print only the summaries")
    chaos = ops.add_parser("chaos", help="randomized fault run: workload + seeded nemesis, then the checks")
    common(chaos, "solabchaos")
    chaos.add_argument("--minutes", type=float, default=2.0, help="length of the fault phase (default 2)")
    chaos.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default 1)")
    chaos.add_argument("--plan", action="store_true", help="print the fault schedule of the seed and exit")
    p.set_defaults(func=main)


def _quiet_logs(verbose: bool) -> None:
    from loguru import logger

    logger.remove()
    logger.add(
        sys.stderr,
        level="INFO" if verbose else "WARNING",
        format="{time:HH:mm:ss.SSS} | {level: <8} | {message}",
    )


def main(args: argparse.Namespace) -> int:
    from deploy.lab.scenario import ScenarioError
    from deploy.lab.topology import LabError

    _quiet_logs(args.verbose)
    try:
        if args.lab_op == "up":
            return do_up(args)
        if args.lab_op == "down":
            return do_down(args)
        if args.lab_op == "status":
            return do_status(args)
        if args.lab_op == "chaos":
            return do_chaos(args)
        return do_run(args)
    except ScenarioError as exc:
        print(f"switchover lab: {exc}", file=sys.stderr)
        return 2
    except LabError as exc:  # includes the "needs root" error
        return error(f"lab: {exc}")


# ------------------------------------------------------------------------------------------- up


def _pair_dir(lab: Any) -> Path:
    """Where the nodes' data is: recorded in the lab state by the runner, ``<labdir>/pair`` by default."""
    recorded = lab.read_state().get("pair_dir")
    return Path(recorded) if recorded else Path(lab.dir) / "pair"


def do_up(args: argparse.Namespace) -> int:
    from deploy.lab.procs import Procs
    from deploy.lab.runner import LabPair
    from deploy.lab.topology import Lab, LabConfig, LabError, cleanup_prefix, require_root

    require_root()
    params: dict[str, str] = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            return error(f"--param {item!r}: expected NAME=VALUE")
        params[name.strip()] = value.strip()
    with contextlib.suppress(LabError):
        existing = Lab.load(args.labdir or args.prefix)
        if existing.is_up() and any(Procs(existing).alive(n) for n in Procs(existing).list()):
            return error(
                f"lab {args.prefix} is already up with the pair running; "
                f"`switchover lab down --prefix {args.prefix}` first"
            )
    cleanup_prefix(args.prefix)
    lab = Lab(LabConfig(prefix=args.prefix, labdir=args.labdir)).up()
    pair = LabPair(
        lab,
        Path(lab.dir) / "pair",
        parameters=params,
        node_args={"b": ["--manual-switch-only"]} if args.manual_switch_only else None,
        modules={"a": not args.no_module, "b": not args.no_module},
    )
    try:
        roles = pair.up(timeout=args.timeout)
    except LabError as exc:
        print(
            f"lab {args.prefix} is left up for inspection (logs in {lab.dir}/logs, "
            f"{pair.node_log('a')}); `switchover lab down --prefix {args.prefix}` removes it",
            file=sys.stderr,
        )
        return error(f"lab up: {exc}")
    print(f"lab {args.prefix} is up (state and logs in {lab.dir})")
    for node in ("a", "b"):
        print(f"  {node.upper()}  {lab.addr[node]:<12}  {roles[node]:<8}  config {pair.config_path(node)}")
    print("try:")
    print(f"  ip netns exec {lab.ns('b')} switchover ctl --config {pair.config_path('b')} status")
    print(f"  switchover admin --node {pair.data_dir('a')} actors")
    print(f"  switchover lab status --prefix {args.prefix}      switchover lab down --prefix {args.prefix}")
    return 0


# ----------------------------------------------------------------------------------------- down


def do_down(args: argparse.Namespace) -> int:
    from deploy.lab.topology import Lab, LabError, cleanup_prefix, require_root

    require_root()
    try:
        lab = Lab.load(args.labdir or args.prefix)
    except LabError:
        removed = cleanup_prefix(args.prefix)
    else:
        removed = lab.down(grace=2.0)
    if not any(removed.values()):
        print(f"lab {args.prefix}: nothing to remove")
        return 0
    print(
        f"lab {args.prefix} removed: {len(removed['netns'])} namespaces, {len(removed['pids'])} processes, "
        f"{len(removed['links'])} links, {len(removed['nft_tables'])} nft tables"
    )
    return 0


# --------------------------------------------------------------------------------------- status


def do_status(args: argparse.Namespace) -> int:
    from deploy.lab.procs import Procs
    from deploy.lab.topology import Lab, LabError, _list_netns, require_root
    from transport.admin_client import AdminCallError, admin_call

    require_root()
    try:
        lab = Lab.load(args.labdir or args.prefix)
    except LabError as exc:
        leftovers = [ns for ns in _list_netns() if ns.startswith(args.prefix + "-")]
        detail = f"; namespaces left with this prefix: {', '.join(leftovers)}" if leftovers else ""
        return error(f"lab {args.prefix}: {exc}{detail}")
    st = lab.status()
    roles: dict[str, Any] = {}
    for node in ("a", "b"):
        data = _pair_dir(lab) / node
        try:
            roles[node] = admin_call(str(data), "status", {}, timeout=1.0)
        except AdminCallError as exc:
            roles[node] = {"error": str(exc)}
    st["roles"] = roles
    if args.json:
        print_json(st)
        return 0
    print(f"lab {st['prefix']}: {'up' if st['up'] else 'NOT up'} (labdir {st['labdir']})")
    print("namespaces:")
    for host, ns in st["namespaces"].items():
        links = ", ".join(
            f"{name} {info['state']} {' '.join(info['addresses'])}".strip()
            for name, info in ns["links"].items()
            if name != "lo"
        )
        print(f"  {host:<4} {ns['name']:<16} {'exists' if ns['exists'] else 'MISSING':<8} {links}")
    print("processes:")
    if not st["processes"]:
        print("  (none)")
    for name, info in sorted(st["processes"].items()):
        state = Procs(lab).status(name) if info["alive"] else "dead"
        print(f"  {name:<14} pid {info['pid']:<8} {state:<10} in {info['netns']}  log {info['log']}")
    print("roles:")
    for node, r in roles.items():
        if "error" in r:
            print(f"  {node.upper()}  unreachable: {r['error']}")
        else:
            print(f"  {node.upper()}  {r.get('role')}, generation {r.get('generation')}")
    faults = st["faults"]
    print("faults in force:" + ("" if faults else " none"))
    for fid, f in faults.items():
        print(f"  {fid}: {json.dumps(f, sort_keys=True)}")
    return 0 if st["up"] else 1


# ------------------------------------------------------------------------------------------ run


def do_run(args: argparse.Namespace) -> int:
    from deploy.lab.runner import ScenarioResult, run_scenario
    from deploy.lab.scenario import find_scenario, load_scenario, scenario_files
    from deploy.lab.topology import require_root

    if args.repeat < 1:
        return error("--repeat must be at least 1")
    paths: list[Path] = []
    for name in args.scenarios:
        paths += scenario_files() if name == "all" else [find_scenario(name)]
    scenarios = [load_scenario(p) for p in paths]  # every file is checked before anything runs
    require_root()
    png = Path(args.png) if args.png else None
    echo = None if args.quiet else (lambda line: print(line, flush=True))
    results: list[ScenarioResult] = []
    total = len(scenarios) * args.repeat
    for i, scenario in enumerate(s for s in scenarios for _ in range(args.repeat)):
        keep = args.keep and i == total - 1
        result = run_scenario(
            scenario, prefix=args.prefix, labdir=args.labdir, png_dir=png, echo=echo, keep=keep
        )
        results.append(result)
        if not args.quiet:
            print(result.timeline)
        print(result.summary(), flush=True)
        if result.png is not None:
            print(f"  timeline picture: {result.png}")
        print(flush=True)
    print("summary:")
    print(f"  {'scenario':<22} {'result':<6} {'detection':>10} {'switch':>9} {'2 primaries':>12} {'took':>7}")
    for r in results:
        m = r.measurements
        det = f"{m.detection:.3f}" if m.detection is not None else "-"
        sw = f"{m.switch:.3f}" if m.switch is not None else "-"
        print(
            f"  {r.scenario.name:<22} {'PASS' if r.passed else 'FAIL':<6} {det:>10} {sw:>9} "
            f"{m.dual_primary_max:>12.3f} {r.duration:>6.1f}s"
        )
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def do_chaos(args: argparse.Namespace) -> int:
    from deploy.lab.chaos import make_schedule, run_chaos
    from deploy.lab.topology import require_root

    if args.minutes <= 0:
        return error(f"--minutes must be more than 0 (got {args.minutes:g})")
    if args.plan:
        for f in make_schedule(args.seed, args.minutes * 60.0):
            print(f.describe())
        return 0
    require_root()
    result = run_chaos(
        minutes=args.minutes, seed=args.seed, prefix=args.prefix, labdir=args.labdir,
        echo=lambda line: print(line, flush=True),
    )
    print(result.summary(), flush=True)
    return 0 if result.passed else 1
