"""The targets of issues 11 (streams) and 12 (long-poll at the seed's cost), judged from one run.

``verdicts(rows)`` takes the combined rows of *this* run (``report.combine``)
and returns one ``Verdict`` per target: the measured value, the bound and
met / not met. A target whose peer (or whose own row) did not run, or failed,
is not judged, and says which row is missing instead of guessing.

What is judged is ``tornado_lp memory``, the default options (INFO access
log). "Zero CPU while idle" allows 20 ms over the hold (schedstat noise, a
stray timer), and for streams 30 µs more per heartbeat comment received in
the window (a heartbeat is one small write per stream, about a stream
delivery).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import IO, Any

from .records import Result
from .targets import ACCESS_LOG_OFF

__all__ = [
    "FLOOR",
    "LP",
    "LP_QUIET",
    "NCHAN",
    "SEED",
    "SSE_FLOOR",
    "Verdict",
    "markdown_verdicts",
    "verdicts",
    "write_verdicts",
]

LP = "tornado_lp memory"
LP_QUIET = f"tornado_lp memory [{ACCESS_LOG_OFF}]"
SEED = "seed (gevent)"
FLOOR = "floor (bare RequestHandler)"
SSE_FLOOR = "floor SSE (RequestHandler per stream)"
NCHAN = "nchan"

IDLE_CPU_S = 0.02
HEARTBEAT_CPU_S = 30e-6


@dataclasses.dataclass
class Verdict:
    issue: int
    role: str
    text: str
    measured: str
    bound: str
    #: True / False; None: not judged (``why`` says what is missing) or no numeric bound
    met: bool | None
    why: str = ""

    def line(self) -> str:
        if self.met is None:
            state = f"not judged: {self.why}" if self.why else "shown (no numeric bound)"
        else:
            state = "met" if self.met else "not met"
        measured = f" {self.measured}" if self.measured else ""
        return f"{self.text}{measured} ({self.bound}): {state}"


def _failed(row: Result) -> bool:
    return any(n.startswith(("failed:", "scenario stopped")) for n in row.notes)


class _Rows:
    def __init__(self, rows: Sequence[Result]) -> None:
        self.rows = rows

    def why(self, target: str, role: str) -> str:
        """Why ``target`` has no figure for ``role``: not run, or run and failed."""
        row = next((r for r in self.rows if r.target == target and r.role == role), None)
        if row is not None and _failed(row):
            return f"{target} failed on {role} (see the notes)"
        return _missing(target, role)

    def get(self, target: str, role: str) -> Result | None:
        row = next((r for r in self.rows if r.target == target and r.role == role), None)
        return None if row is None or _failed(row) else row

    def label(self, role: str) -> str:
        return next((r.scenario for r in self.rows if r.role == role), role)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _missing(target: str, role: str) -> str:
    return f"{target} did not run {role}"


def _versus(
    rows: _Rows, issue: int, role: str, what: str, attr: str, peer: str, peer_role: str,
    factor: float = 1.0, offset: float = 0.0, unit: str = "", ours: str = LP, digits: int = 1,
) -> Verdict:  # fmt: skip
    """``ours.attr <= factor * peer.attr + offset``."""
    label = rows.label(role)
    scale = "" if factor == 1.0 else f"{factor:g}x "
    plus = f" + {offset:g}{unit}" if offset else ""
    where = "" if peer_role == role else f" {peer_role}"
    bound = f"≤ {scale}{peer}{where}{plus}"
    text = f"{label}: {ours} {what}"
    mine, theirs = rows.get(ours, role), rows.get(peer, peer_role)
    a = getattr(mine, attr) if mine is not None else None
    b = getattr(theirs, attr) if theirs is not None else None
    if a is None or b is None:
        why = rows.why(ours, role) if a is None else rows.why(peer, peer_role)
        return Verdict(issue, role, text, "", bound, None, why)
    limit = factor * b + offset
    measured = f"{_fmt(a, digits)}{unit} vs {peer}{where} {_fmt(b, digits)}{unit}"
    if factor != 1.0 and b:
        measured += f" = {a / b:.2f}x"
    return Verdict(issue, role, text, measured, bound, a <= limit)


def _limit(
    rows: _Rows, issue: int, role: str, what: str, value: Callable[[Result], float | None],
    op: str, bound: float, unit: str = "", digits: int = 1,
) -> Verdict:  # fmt: skip
    label = rows.label(role)
    text = f"{label}: {LP} {what}"
    bound_text = f"{op} {_fmt(bound, digits)}{unit}"
    row = rows.get(LP, role)
    got = value(row) if row is not None else None
    if got is None:
        return Verdict(issue, role, text, "", bound_text, None, rows.why(LP, role))
    met = got <= bound if op == "≤" else got >= bound
    return Verdict(issue, role, text, f"{_fmt(got, digits)}{unit}", bound_text, met)


def _clean(rows: _Rows, issue: int, role: str) -> Verdict:
    label = rows.label(role)
    text = f"{label}: {LP} delivered/expected, lost/dup/ooo"
    bound = "all delivered, lost/dup/ooo = 0"
    row = rows.get(LP, role)
    if row is None or not row.expected:
        return Verdict(issue, role, text, "", bound, None, rows.why(LP, role))
    measured = (f"{row.delivered}/{row.expected}, lost {row.lost}, dup {row.duplicates}, "
                f"ooo {row.out_of_order}")  # fmt: skip
    ok = row.delivered == row.expected and not (row.lost or row.duplicates or row.out_of_order)
    return Verdict(issue, role, text, measured, bound, ok)


def _idle(rows: _Rows, issue: int, role: str, streams: bool) -> Verdict:
    label = rows.label(role)
    text = f"{label}: {LP} idle CPU"
    row = rows.get(LP, role)
    if row is None or row.idle_cpu_s is None:
        bound = "≤ 20 ms" + (" + 30 µs per heartbeat" if streams else "")
        return Verdict(issue, role, text, "", bound, None, rows.why(LP, role))
    beats = row.heartbeats or 0
    limit = IDLE_CPU_S + (HEARTBEAT_CPU_S * beats if streams else 0.0)
    measured = f"{row.idle_cpu_s * 1000:.1f} ms over {row.params.get('hold_s', 0):g} s"
    if streams:
        measured += f", {beats} heartbeats"
        bound = f"≤ 20 ms + 30 µs x {beats} heartbeats = {limit * 1000:.1f} ms"
    else:
        bound = "≤ 20 ms (zero)"
    return Verdict(issue, role, text, measured, bound, row.idle_cpu_s <= limit)


def _batch(row: Result) -> float | None:
    return row.delivered / row.answers if row.answers else None


def _p99(row: Result) -> float | None:
    return row.lat_p99_ms


def _pub_rate(row: Result) -> float | None:
    return row.publish_rate


def _per_request(row: Result) -> float | None:
    requests = row.answers + row.published
    if row.server_cpu_s is None or not requests:
        return None
    return row.server_cpu_s / requests * 1e6


def _access_log(rows: _Rows) -> Verdict:
    role = "fanout-a"
    text = f"{rows.label(role)}: access log (INFO) cost per request, {LP} vs {LP_QUIET}"
    bound = "issue 12: a small fraction of a delivery"
    loud, quiet = rows.get(LP, role), rows.get(LP_QUIET, role)
    a = _per_request(loud) if loud is not None else None
    b = _per_request(quiet) if quiet is not None else None
    if a is None or b is None:
        why = rows.why(LP, role) if a is None else rows.why(LP_QUIET, role)
        return Verdict(12, role, text, "", bound, None, why)
    delivery = loud.cpu_us_per_delivery if loud is not None else None
    share = f" = {(a - b) / delivery * 100:.0f}% of a delivery" if delivery else ""
    measured = f"{a - b:.1f} µs per request{share} ({a:.1f} vs {b:.1f} µs per request)"
    return Verdict(12, role, text, measured, bound, None)


def _all_clean(rows: _Rows) -> Verdict:
    text = f"every {LP} row: lost/dup/ooo"
    mine = [r for r in rows.rows if r.target == LP and not _failed(r)]
    if not mine:
        return Verdict(12, "*", text, "", "= 0", None, f"{LP} did not run")
    bad = [r.scenario for r in mine if r.lost or r.duplicates or r.out_of_order]
    measured = f"{len(mine)} rows, " + (f"not zero in: {', '.join(bad)}" if bad else "all zero")
    return Verdict(12, "*", text, measured, "= 0", not bad)


def _ids(rows: _Rows) -> Verdict:
    text = f"streams: {LP} events (heartbeats aside) without a non-empty id:"
    mine = [rows.get(LP, role) for role in ("sse-fanout", "sse-hold", "sse-16ch")]
    counted = [r for r in mine if r is not None and r.events_without_id is not None]
    if not counted:
        return Verdict(11, "sse-*", text, "", "= 0", None, f"{LP} ran no stream scenario")
    total = sum(r.events_without_id or 0 for r in counted)
    return Verdict(11, "sse-*", text, f"{total} in {len(counted)} rows", "= 0", total == 0)


def verdicts(rows: Sequence[Result]) -> list[Verdict]:
    """Every target of issues 12 and 11, in the issues' order."""
    r = _Rows(rows)
    out = [
        _versus(r, 12, "fanout-a", "µs/delivery", "cpu_us_per_delivery", SEED, "fanout-a"),
        _versus(
            r, 12, "fanout-a", "µs/delivery", "cpu_us_per_delivery", FLOOR, "fanout-a", factor=0.8
        ),
        _limit(r, 12, "fanout-a", "latency p99", _p99, "≤", 100, " ms"),
        _clean(r, 12, "burst"),
        _versus(r, 12, "burst", "µs/delivered message", "cpu_us_per_delivery", SEED, "burst"),
        _limit(r, 12, "burst", "messages/answer", _batch, "≥", 20),
        _limit(r, 12, "burst", "publishes/s", _pub_rate, "≥", 3000),
    ]
    for role in ("hold-a", "hold-b"):
        out += [
            _versus(
                r,
                12,
                role,
                "KiB/held poll",
                "rss_per_held_kib",
                NCHAN,
                role,
                offset=1.0,
                unit=" KiB",
                digits=3,
            ),
            _idle(r, 12, role, streams=False),
            _versus(r, 12, role, "wake-all", "wake_all_ms", NCHAN, role, factor=2.0, unit=" ms"),
        ]
    out += [
        _limit(r, 12, "publish-woken", "publishes/s", _pub_rate, "≥", 5000),
        _all_clean(r),
        _access_log(r),
        _versus(
            r,
            11,
            "sse-fanout",
            "µs/delivery",
            "cpu_us_per_delivery",
            NCHAN,
            "sse-fanout",
            factor=1.5,
        ),
        _limit(r, 11, "sse-fanout", "latency p99", _p99, "≤", 50, " ms"),
        _versus(
            r,
            11,
            "sse-hold",
            "KiB/open stream",
            "rss_per_held_kib",
            NCHAN,
            "sse-hold",
            unit=" KiB",
            digits=3,
        ),
        _idle(r, 11, "sse-hold", streams=True),
        _versus(r, 11, "sse-hold", "wake-all", "wake_all_ms", NCHAN, "hold-a", unit=" ms"),
        _clean(r, 11, "sse-16ch"),
        _versus(r, 11, "sse-16ch", "µs/delivery", "cpu_us_per_delivery", LP, "sse-fanout"),
        _ids(r),
    ]
    return out


def markdown_verdicts(items: Sequence[Verdict]) -> str:
    """One bullet per target, grouped by issue."""
    lines: list[str] = []
    for issue in (12, 11):
        lines.append(f"Issue {issue}:")
        lines.extend(f"- {v.line()}" for v in items if v.issue == issue)
        lines.append("")
    met = sum(1 for v in items if v.met is True)
    judged = sum(1 for v in items if v.met is not None)
    lines.append(f"{met} of {judged} judged targets met; "
                 f"{sum(1 for v in items if v.met is None and v.why)} not judged.")  # fmt: skip
    return "\n".join(lines)


def write_verdicts(items: Sequence[Verdict], stream: IO[str], extra: dict[str, Any]) -> None:
    """One JSON line per verdict: ``{"record": "target", ...}``."""
    for v in items:
        stream.write(json.dumps({**extra, "record": "target", **dataclasses.asdict(v),
                                 "line": v.line()}) + "\n")  # fmt: skip
