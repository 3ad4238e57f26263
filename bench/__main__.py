"""``python -m bench``: run every scenario against every available target, then judge."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import judge, report
from .client import loop_factory, raise_nofile_limit
from .records import Result, Spec
from .scenarios import run_scenario
from .targets import ACCESS_LOG_OFF, Target, TargetUnavailable, all_targets

FULL: list[Spec] = [
    Spec("fanout", "fanout N=1000 M=100 R=10", "fanout-a", pollers=1000, messages=100, rate=10),
    Spec("fanout", "fanout N=5000 M=20 R=2", "fanout-b", pollers=5000, messages=20, rate=2),
    Spec("burst", "burst N=50 M=2000 P=8", "burst", pollers=50, messages=2000, publishers=8),
    Spec("hold", "hold N=5000 10 s", "hold-a", pollers=5000, hold_s=10),
    Spec("hold", "hold N=10000 10 s", "hold-b", pollers=10000, hold_s=10),
    Spec("publish", "publish P=1 M=5000", "publish-1", messages=5000, publishers=1),
    Spec("publish", "publish P=50 M=20000", "publish-50", messages=20000, publishers=50),
    Spec(
        "publish",
        "publish P=50 M=5000 +50 pollers",
        "publish-woken",
        pollers=50,
        messages=5000,
        publishers=50,
    ),
    Spec("sse", "sse-fanout N=1000 M=100 R=10", "sse-fanout", pollers=1000, messages=100, rate=10),
    Spec("sse-hold", "sse-hold N=5000 10 s", "sse-hold", pollers=5000, hold_s=10),
    Spec(
        "sse",
        "sse-16ch N=1000 x16 M=160 R=10",
        "sse-16ch",
        pollers=1000,
        messages=160,
        rate=10,
        channels=16,
    ),
]

QUICK: list[Spec] = [
    Spec("fanout", "fanout N=200 M=20 R=10", "fanout-a", pollers=200, messages=20, rate=10),
    Spec("fanout", "fanout N=1000 M=4 R=2", "fanout-b", pollers=1000, messages=4, rate=2),
    Spec("burst", "burst N=50 M=500 P=8", "burst", pollers=50, messages=500, publishers=8),
    Spec("hold", "hold N=1000 1.5 s", "hold-a", pollers=1000, hold_s=1.5),
    Spec("hold", "hold N=2000 1.5 s", "hold-b", pollers=2000, hold_s=1.5),
    Spec("publish", "publish P=1 M=1000", "publish-1", messages=1000, publishers=1),
    Spec("publish", "publish P=50 M=3000", "publish-50", messages=3000, publishers=50),
    Spec(
        "publish",
        "publish P=50 M=1000 +50 pollers",
        "publish-woken",
        pollers=50,
        messages=1000,
        publishers=50,
    ),
    Spec("sse", "sse-fanout N=200 M=20 R=10", "sse-fanout", pollers=200, messages=20, rate=10),
    Spec("sse-hold", "sse-hold N=1000 1.5 s", "sse-hold", pollers=1000, hold_s=1.5),
    Spec(
        "sse",
        "sse-16ch N=200 x16 M=32 R=10",
        "sse-16ch",
        pollers=200,
        messages=32,
        rate=10,
        channels=16,
    ),
]


def _machine() -> dict[str, Any]:
    import tornado

    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
            "",
        )
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "tornado": tornado.version,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="tornado_lp beside the seed, Nchan and the Tornado floors; "
        "judges the targets of issues 11 and 12",
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes, every scenario and target, a few minutes"
    )
    p.add_argument(
        "--repeat", type=int, default=None, help="runs per target x scenario (full: 3, quick: 1)"
    )
    p.add_argument("--json", type=Path, help="write one JSON line per run and per median row here")
    p.add_argument(
        "--plot", type=Path, help="save the plot here (full mode default: docs/bench.png)"
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--targets", default="", help="comma list of substrings of target names to run")
    p.add_argument(
        "--lp-args", default="", help="extra tornado_lp options, e.g. '--log-level WARNING'"
    )
    p.add_argument(
        "--lp-variant",
        action="append",
        default=[],
        metavar="ARGS",
        help="also run tornado_lp memory with these options, interleaved (A/B a change); "
        f"'{ACCESS_LOG_OFF}' runs on fanout-a even without this",
    )
    p.add_argument(
        "--scenarios", default="", help="comma list of roles/kinds to run (e.g. fanout-a,hold)"
    )
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.plot is None and not args.quick and not args.no_plot:
        args.plot = Path("docs/bench.png")
    return args


def _wanted(name: str, filters: str) -> bool:
    keys = [k.strip() for k in filters.split(",") if k.strip()]
    return not keys or any(k in name for k in keys)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def _run(args: argparse.Namespace, specs: list[Spec], targets: list[Target]) -> list[Result]:
    plan = [
        (run, spec, target)
        for run in range(1, args.repeat + 1)
        for spec in specs
        for target in targets
        if target.runs(spec)
    ]
    results: list[Result] = []
    for i, (run, spec, target) in enumerate(plan, 1):
        started = time.monotonic()
        result = await run_scenario(target, spec, run)
        results.append(result)
        per = result.cpu_us_per_delivery or result.cpu_us_per_publish
        notes = " NOTE " + "; ".join(result.notes) if result.notes else ""
        _log(
            f"[{i}/{len(plan)}] run {run} {target.name:28} {spec.label:34} "
            f"{result.delivered}/{result.expected} us/msg={per if per is None else round(per, 1)} "
            f"({time.monotonic() - started:.1f} s){notes}"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    nofile = raise_nofile_limit()
    loop_name, factory = loop_factory()
    specs = [s for s in (QUICK if args.quick else FULL) if _wanted(s.role, args.scenarios)]
    need = max((s.pollers + s.publishers + 2 for s in specs), default=0)
    if need + 50 > nofile:
        _log(f"RLIMIT_NOFILE is {nofile}; scenarios need about {need} sockets")
    targets: list[Target] = []
    for target in all_targets(shlex.split(args.lp_args), args.lp_variant):
        if not _wanted(target.name, args.targets):
            continue
        try:
            target.check_available()
        except TargetUnavailable as exc:
            print(f"> skipped {target.name}: {exc}")
            continue
        targets.append(target)
    machine = {**_machine(), "client_loop": loop_name, "mode": "quick" if args.quick else "full"}
    _log(f"bench: {machine}, targets: {[t.name for t in targets]}, repeat {args.repeat}")

    started = time.monotonic()
    # SIGTERM ends the run like Ctrl-C: the running scenario is cancelled and its
    # server (and redis-server) stopped, instead of left behind.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            results = runner.run(_run(args, specs, targets))
    except KeyboardInterrupt:
        _log("interrupted: the running scenario's server was stopped; no table")
        return 130
    rows = report.combine(results)

    print(f"\n## {'Quick' if args.quick else 'Full'} run, {machine['date']}\n")
    print(
        f"`python -m bench {shlex.join(sys.argv[1:])}`: "
        f"{machine['nproc']} cores ({machine['cpu']}), "
        f"Python {machine['python']}, Tornado {machine['tornado']}, client loop {loop_name}; "
        f"{'median' if args.repeat > 1 else 'one run'} of {args.repeat} "
        f"(lost/dup/ooo: worst run); {time.monotonic() - started:.0f} s in all.\n"
    )
    print(report.markdown_table(rows))
    verdicts = judge.verdicts(rows)
    print("\n### Targets of issues 12 and 11, judged by this run\n")
    print(judge.markdown_verdicts(verdicts))
    print("\n### Issue 7 targets\n")
    print(report.markdown_checks(report.checks(rows)))
    if args.json:
        with args.json.open("w") as stream:
            report.write_jsonl(results, stream, {**machine, "aggregate": False})
            report.write_jsonl(rows, stream, {**machine, "aggregate": True})
            judge.write_verdicts(verdicts, stream, machine)
    if args.plot and not args.no_plot:
        if report.plot(rows, args.plot):
            _log(f"plot saved to {args.plot}")
        else:
            _log("matplotlib is not importable: no plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
