"""Profile tornado_lp under one scenario with py-spy: where does a delivery's time go?

``python -m bench.profile --scenario fanout-a`` starts tornado_lp (memory; ``--floor``: the floor),
attaches ``py-spy record`` to it, runs the scenario, and prints the functions
with the largest share of the server's samples, inclusive and self, plus the
µs per delivery they stand for. Raw stacks are kept (``--out``) for a
flamegraph (``py-spy record --format flamegraph`` gives an SVG directly: use
``--svg``). py-spy must be installed (``pip install py-spy``); py-spy pauses
the server for each sample (``--nonblocking`` does not, but then a stack can be
torn and attributed to the wrong line), which adds a little to its CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .__main__ import FULL, QUICK
from .client import loop_factory, raise_nofile_limit
from .records import Result
from .scenarios import run_scenario
from .targets import Floor, Target, TornadoLP

__all__ = ["main", "summarize"]


def summarize(raw: Path, top: int = 25) -> tuple[int, list[tuple[str, int, int]]]:
    """(total samples, [(function, inclusive, self)]) from py-spy's raw collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0] + ")" if " (" in f else f
                  for f in stack.split(";")]  # fmt: skip
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread "):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    names = sorted(set(inclusive) | set(own), key=lambda n: -inclusive[n])
    rows = [(n, inclusive[n], own[n]) for n in names]
    return total, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument(
        "--scenario",
        default="fanout-a",
        help="role of the scenario (fanout-a, burst, publish-50, ...)",
    )
    p.add_argument("--quick", action="store_true", help="use the quick sizes")
    p.add_argument("--storage", default="memory")
    p.add_argument(
        "--floor", action="store_true", help="profile the floor server instead (fanout only)"
    )
    p.add_argument("--lp-args", default="", help="extra tornado_lp options")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument(
        "--out", type=Path, default=Path("/tmp/bench-profile.txt"), help="raw stacks file"
    )
    p.add_argument(
        "--svg", action="store_true", help="write a flamegraph SVG instead of raw stacks"
    )
    p.add_argument("--top", type=int, default=30)
    p.add_argument(
        "--nonblocking",
        action="store_true",
        help="do not pause the server to sample (cheaper, but stacks can be torn)",
    )
    args = p.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        p.error("py-spy is not installed: pip install py-spy")
    spec = next((s for s in (QUICK if args.quick else FULL) if s.role == args.scenario), None)
    if spec is None:
        p.error(f"no scenario with role {args.scenario!r}")
    raise_nofile_limit()
    target: Target = (
        Floor() if args.floor else TornadoLP(args.storage, extra_args=shlex.split(args.lp_args))
    )
    recorder: list[subprocess.Popen[bytes]] = []

    async def attach(t: Target) -> None:
        fmt = ["--format", "flamegraph"] if args.svg else ["--format", "raw"]
        recorder.append(subprocess.Popen(
            [pyspy, "record", "--pid", str(t.tree.root), "--rate", str(args.rate),
             *(["--nonblocking"] if args.nonblocking else []), *fmt, "-o", str(args.out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        ))  # fmt: skip
        await asyncio.sleep(1.0)  # py-spy needs a moment to attach

    async def detach(t: Target) -> None:
        for proc in recorder:
            proc.send_signal(signal.SIGINT)
            await asyncio.get_running_loop().run_in_executor(None, proc.wait)

    _, factory = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        result: Result = runner.run(run_scenario(target, spec, 1, attach, detach))
    per = result.cpu_us_per_delivery or result.cpu_us_per_publish
    print(
        f"{target.name} / {spec.label}: {result.delivered}/{result.expected} delivered, "
        f"server CPU {result.server_cpu_s or 0:.2f} s, {per or 0:.1f} us per message; "
        f"{result.notes}"
    )
    if args.svg:
        print(f"flamegraph: {args.out}")
        return 0
    total, rows = summarize(args.out)
    if not total:
        print(
            "no samples",
            recorder[0].stderr.read().decode() if recorder and recorder[0].stderr else "",
        )
        return 1
    busy = total - sum(
        own
        for name, _, own in rows
        if name.startswith(("select (", "poll (", "EpollSelector.select"))
    )
    # Spread the measured CPU per message over the samples: a function's share
    # of the busy samples times that is its cost per message in microseconds.
    us = per or 0.0
    print(f"\n{total} samples, {busy} not idle in the selector; {us:.1f} us per message.\n")
    header = f"{'incl %':>7} {'self %':>7} {'incl us':>8} {'self us':>8}  function (file)"

    def line(name: str, incl: int, own: int) -> str:
        return (
            f"{100 * incl / busy:7.1f} {100 * own / busy:7.1f} "
            f"{us * incl / busy:8.1f} {us * own / busy:8.1f}  {name}"
        )

    print("By inclusive time:\n" + header)
    for name, incl, own in rows[: args.top]:
        print(line(name, incl, own))
    print("\nBy self time:\n" + header)
    for name, incl, own in sorted(rows, key=lambda r: -r[2])[: args.top]:
        print(line(name, incl, own))
    return 0


if __name__ == "__main__":
    sys.exit(main())
