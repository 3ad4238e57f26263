"""Turn results into the markdown table, JSON lines, the issue-7 checks and a plot."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from .records import Result

__all__ = ["Check", "checks", "combine", "markdown_checks", "markdown_table", "plot", "write_jsonl"]

#: Correctness counts: the worst run is reported, not the median.
_WORST = ("lost", "duplicates", "out_of_order", "errors")


def _median(values: list[Any]) -> Any:
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not present:
        return None
    m = statistics.median(present)
    return int(m) if all(isinstance(v, int) for v in present) and m == int(m) else m


def combine(results: Sequence[Result]) -> list[Result]:
    """One row per target x scenario: medians of the runs, worst run for losses."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.target, r.scenario), []).append(r)
    rows: list[Result] = []
    for all_runs in groups.values():
        # A run that failed outright (server gone, connection refused) measured
        # nothing: leave it out of the medians, but keep its note.
        runs = [r for r in all_runs if not _failed(r)] or all_runs
        failed = len(all_runs) - len(runs)
        first = runs[0]
        merged = dataclasses.replace(first, run=len(runs), notes=[])
        for f in dataclasses.fields(Result):
            if f.name in ("target", "scenario", "kind", "role", "run", "params", "notes"):
                continue
            values = [getattr(r, f.name) for r in runs]
            if f.name in _WORST:
                setattr(merged, f.name, max(values))
            else:
                setattr(merged, f.name, _median(values))
        seen: set[str] = set()
        if failed:
            merged.notes.append(f"{failed} of {len(all_runs)} runs failed and are left out")
        for r in all_runs:
            for note in r.notes:
                if note not in seen:
                    seen.add(note)
                    merged.notes.append(note)
        rows.append(merged)
    return rows


def _failed(result: Result) -> bool:
    return any(note.startswith(("failed:", "scenario stopped")) for note in result.notes)


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


_COLUMNS: list[tuple[str, str]] = [
    ("target", "target"),
    ("scenario", "scenario"),
    ("delivered", "delivered/expected"),
    ("batch", "msgs/answer"),
    ("lost", "lost"),
    ("duplicates", "dup"),
    ("out_of_order", "ooo"),
    ("lat", "latency p50/p90/p99/max ms"),
    ("server_cpu_s", "srv CPU s"),
    ("per_msg", "srv µs/msg"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("rss_per_held_kib", "KiB/held"),
    ("idle_cpu_s", "idle CPU s"),
    ("heartbeats", "hb"),
    ("wake_all_ms", "wake-all ms"),
    ("publish", "pub/s (p50/p99 ms)"),
    ("client_cpu_s", "client CPU s"),
    ("loadavg", "load"),
]


def _cell(r: Result, key: str) -> str:
    if key == "target":
        return r.target
    if key == "scenario":
        return r.scenario
    if key == "delivered":
        return f"{r.delivered}/{r.expected}" if r.expected or r.delivered else "-"
    if key == "batch":
        return f"{r.delivered / r.answers:.2f}" if r.answers else "-"
    if key == "lat":
        if r.lat_p50_ms is None:
            return "-"
        return "/".join(_fmt(v) for v in (r.lat_p50_ms, r.lat_p90_ms, r.lat_p99_ms, r.lat_max_ms))
    if key == "per_msg":
        if r.cpu_us_per_delivery is not None:
            return _fmt(r.cpu_us_per_delivery)
        return f"{_fmt(r.cpu_us_per_publish)} /pub" if r.cpu_us_per_publish is not None else "-"
    if key == "publish":
        if r.publish_rate is None or r.kind in ("hold", "sse-hold"):
            return "-"
        return f"{_fmt(r.publish_rate)} ({_fmt(r.publish_p50_ms, 2)}/{_fmt(r.publish_p99_ms, 2)})"
    if key == "rss_per_held_kib":
        return _fmt(r.rss_per_held_kib, 2)
    if key in ("idle_cpu_s", "server_cpu_s", "client_cpu_s"):
        return _fmt(getattr(r, key), 2)
    return _fmt(getattr(r, key))


def markdown_table(rows: Iterable[Result]) -> str:
    lines = [
        "| " + " | ".join(h for _, h in _COLUMNS) + " |",
        "|" + "|".join("---" for _ in _COLUMNS) + "|",
    ]
    notes: list[str] = []
    for r in rows:
        lines.append("| " + " | ".join(_cell(r, k) for k, _ in _COLUMNS) + " |")
        for note in r.notes:
            notes.append(f"- {r.target} / {r.scenario}: {note}")
    out = "\n".join(lines)
    if notes:
        out += "\n\nNotes:\n" + "\n".join(notes)
    return out


def write_jsonl(results: Iterable[Result], stream: IO[str], extra: dict[str, Any]) -> None:
    for r in results:
        stream.write(json.dumps({**extra, **dataclasses.asdict(r)}) + "\n")


@dataclasses.dataclass
class Check:
    number: int
    text: str
    measured: str
    met: bool | None  # None: could not be judged (a target or scenario missing)


def _value(rows: Sequence[Result], target: str, role: str, attr: str) -> float | None:
    row = next((r for r in rows if r.target == target and r.role == role), None)
    value = getattr(row, attr) if row is not None else None
    return float(value) if value is not None else None


def _label(rows: Sequence[Result], role: str) -> str:
    return next((r.scenario for r in rows if r.role == role), role)


def _versus(
    number: int, text: str, ours: float | None, theirs: float | None, unit: str, limit: float
) -> Check:
    """A check that ``ours / theirs <= limit``."""
    ratio = ours / theirs if ours is not None and theirs else None
    measured = f"{_fmt(ours)} {unit} vs {_fmt(theirs)} {unit} = {_fmt(ratio, 2)}x"
    return Check(number, text, measured, None if ratio is None else ratio <= limit)


def checks(rows: Sequence[Result]) -> list[Check]:
    """The numbered targets of issue 7 (and issue 3's SQLite publish target)."""
    lp, floor, nchan = "tornado_lp memory", "floor (bare RequestHandler)", "nchan"
    out: list[Check] = []

    fan = _value(rows, lp, "fanout-a", "cpu_us_per_delivery")
    fan_label = _label(rows, "fanout-a")
    fan_floor = _value(rows, floor, "fanout-a", "cpu_us_per_delivery")
    fan_nchan = _value(rows, nchan, "fanout-a", "cpu_us_per_delivery")
    out.append(_versus(1, f"{fan_label}: CPU/delivery <= 1.0x floor", fan, fan_floor, "us", 1.0))
    out.append(_versus(1, "same: <= 4x Nchan", fan, fan_nchan, "us", 4.0))

    kib = _value(rows, lp, "hold-b", "rss_per_held_kib")
    held_bytes = kib * 1024 if kib is not None else None
    out.append(Check(
        2, f"{_label(rows, 'hold-b')}: RSS per held poll <= 12 KB (12,000 bytes)",
        f"{_fmt(kib, 2)} KiB = {_fmt(held_bytes)} bytes",
        None if held_bytes is None else held_bytes <= 12_000,
    ))  # fmt: skip
    idle = _value(rows, lp, "hold-b", "idle_cpu_s")
    out.append(Check(
        2, "same: zero CPU while idle (at most 20 ms over the hold)",
        f"{_fmt(idle, 3)} s", None if idle is None else idle <= 0.02,
    ))  # fmt: skip
    wake = _value(rows, lp, "hold-a", "wake_all_ms")
    wake_nchan = _value(rows, nchan, "hold-a", "wake_all_ms")
    out.append(_versus(2, f"{_label(rows, 'hold-a')}: wake-all <= 2x Nchan", wake, wake_nchan,
                       "ms", 2.0))  # fmt: skip

    burst = next((r for r in rows if r.target == lp and r.role == "burst"), None)
    if burst is None:
        out.append(Check(3, "burst: nothing lost, duplicated or reordered", "not run", None))
    else:
        clean = burst.delivered == burst.expected and not (
            burst.lost or burst.duplicates or burst.out_of_order
        )
        out.append(Check(
            3, f"{burst.scenario}: nothing lost, duplicated or reordered",
            f"{burst.delivered}/{burst.expected}, lost {burst.lost}, dup {burst.duplicates}, "
            f"ooo {burst.out_of_order}",
            clean,
        ))  # fmt: skip
        per = burst.cpu_us_per_delivery
        below = fan / per if fan is not None and per else None
        out.append(Check(
            3, "same: CPU/delivery at least 10x below fanout's",
            f"{_fmt(per)} us vs {_fmt(fan)} us: {_fmt(below)}x below",
            None if below is None else below >= 10,
        ))  # fmt: skip

    rate = _value(rows, lp, "publish-woken", "publish_rate")
    out.append(Check(
        4, f"{_label(rows, 'publish-woken')}: memory >= 3,000 publishes/s",
        f"{_fmt(rate)}/s", None if rate is None else rate >= 3000,
    ))  # fmt: skip

    mem = _value(rows, lp, "publish-50", "publish_rate")
    sql = _value(rows, "tornado_lp sqlite", "publish-50", "publish_rate")
    share = sql / mem if sql is not None and mem else None
    out.append(Check(
        0, f"issue 3, {_label(rows, 'publish-50')}: SQLite >= 80% of memory's rate",
        f"{_fmt(sql)}/s vs {_fmt(mem)}/s = {_fmt(share * 100 if share is not None else None)}%",
        None if share is None else share >= 0.8,
    ))  # fmt: skip
    return out


def markdown_checks(items: Sequence[Check]) -> str:
    lines = ["| # | target | measured | met |", "|---|---|---|---|"]
    for c in items:
        met = "n/a" if c.met is None else ("**met**" if c.met else "**not met**")
        lines.append(f"| {c.number or '-'} | {c.text} | {c.measured} | {met} |")
    return "\n".join(lines)


def plot(rows: Sequence[Result], path: Path) -> bool:
    """Latency percentiles and CPU per delivery against N (fanout); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fan = [r for r in rows if r.kind == "fanout"]
    targets = sorted({r.target for r in fan})
    fig, (ax_lat, ax_cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, t in enumerate(targets):
        color = f"C{i}"
        pts = sorted(((r.params["pollers"], r) for r in fan if r.target == t), key=lambda p: p[0])
        ns = [n for n, _ in pts]
        for attr, style in (("lat_p50_ms", "-o"), ("lat_p99_ms", "--^")):
            vals = [getattr(r, attr) for _, r in pts]
            if any(v is not None for v in vals):
                ys = [v if v is not None else float("nan") for v in vals]
                ax_lat.plot(ns, ys, style, color=color, label=f"{t} {attr[4:7]}")
        cpu = [r.cpu_us_per_delivery for _, r in pts]
        ax_cpu.plot(
            ns, [v if v is not None else float("nan") for v in cpu], "-o", color=color, label=t
        )
    ax_lat.set(
        xlabel="pollers N (fanout)", ylabel="latency ms", yscale="log", title="Delivery latency"
    )
    ax_cpu.set(
        xlabel="pollers N (fanout)",
        ylabel="server CPU µs / delivery",
        title="Server CPU per delivery",
    )
    ax_lat.legend(fontsize=7)
    ax_cpu.legend(fontsize=7)
    ax_cpu.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
