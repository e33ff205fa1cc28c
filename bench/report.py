"""The results table (medians, ranges, ratios) and the targets, PASS or MISS."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import Results

# The baseline each contender of a scenario is compared with, by name prefix.
BASELINES = {
    "e2e_rabbit": "celery prefork -c 2",
    "e2e_sql": None,  # per database, below
    "publish": "kombu, confirm per message",
    "latency": "kombu loop amqp",
    "scaleout": "asyncevents, 1 worker process",
    "whatif": None,  # per transport, below
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or value != value:
        return "n/a"
    if math.isinf(value):
        return "inf"
    if unit in ("MB", "ms") or abs(value) < 10:
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,.0f}"
    return text


def _baseline(scenario: str, contender: str) -> str | None:
    if scenario == "e2e_sql":
        if contender.startswith("asyncevents sqla+"):
            return "kombu stock sqla+" + contender.split("sqla+", 1)[1]
        return None
    if scenario == "whatif":
        return contender.split(",", 1)[0] + ", as shipped"
    return BASELINES.get(scenario)


def table(results: Results) -> str:
    rows = [("scenario", "contender", "metric", "median", "min..max", "n", "vs baseline")]
    for s in results.samples.values():
        vals = [v for v in s.values if v == v]
        spread = f"{_fmt(min(vals), s.unit)}..{_fmt(max(vals), s.unit)}" if len(vals) > 1 else ""
        ratio = ""
        base = _baseline(s.scenario, s.contender)
        if base and base != s.contender:
            other = results.get(s.scenario, base, s.metric)
            if other and s.median is not None and other == other and s.median == s.median \
                    and not math.isinf(other) and not math.isinf(s.median) and other != 0:
                ratio = f"{s.median / other:.2f}x {base}"
        rows.append((s.scenario, s.contender, s.metric, f"{_fmt(s.median, s.unit)} {s.unit}",
                     spread, str(len(s.values)), ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(r)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    notes = [(s.scenario, s.contender, s.metric, n) for s in results.samples.values()
             for n in s.notes]
    if notes:
        out += ["", "notes:"]
        out += [f"  {sc} / {c} / {m}: {n}" for sc, c, m, n in notes]
    return "\n".join(out)


@dataclass
class Target:
    text: str
    measure: Callable[[Results], tuple[float | None, str]]
    ok: Callable[[float], bool]


Measure = Callable[[Results], tuple[float | None, str]]


def _ratio(scenario: str, a: str, b: str, metric: str) -> Measure:
    def measure(r: Results) -> tuple[float | None, str]:
        x, y = r.get(scenario, a, metric), r.get(scenario, b, metric)
        if x is None or y is None or not y:
            return None, "not measured"
        return x / y, f"{x:,.0f} / {y:,.0f} {metric}"
    return measure


def _value(scenario: str, contender: str, metric: str, unit: str) -> Measure:
    def measure(r: Results) -> tuple[float | None, str]:
        x = r.get(scenario, contender, metric)
        return (x, f"{_fmt(x, unit)} {unit}") if x is not None else (None, "not measured")
    return measure


def _behind(r: Results) -> tuple[float | None, str]:
    fresh = r.get("e2e_sql", "asyncevents sqla+postgresql", "events/s")
    behind = next((s for (sc, c, m), s in r.samples.items()
                   if sc == "e2e_sql" and c.startswith("asyncevents sqla+postgresql, ")
                   and m == "events/s"), None)
    if fresh is None or behind is None or behind.median is None:
        return None, "not measured"
    return behind.median / fresh, f"{behind.median:,.0f} ev/s ({behind.contender}) / {fresh:,.0f}"


def _batch(r: Results) -> tuple[float | None, str]:
    batch = r.get("publish", "asyncevents publish_many", "events/s")
    per_msg = r.get("publish", "kombu, confirm per message", "events/s")
    loop = r.get("publish", "asyncevents publish() loop", "events/s")
    if batch is None:
        if per_msg is None:
            return None, "not measured"
        return None, "no batch publish API (App.publish_many) to measure"
    if not per_msg:
        return None, "not measured"
    extra = f"; {batch / loop:.1f}x the publish() loop" if loop else ""
    return batch / per_msg, (f"publish_many {batch:,.0f} / kombu confirm-per-message "
                             f"{per_msg:,.0f} ev/s{extra}")


TARGETS = [
    Target("RabbitMQ end to end >= 2x Celery prefork",
           _ratio("e2e_rabbit", "asyncevents", "celery prefork -c 2", "events/s"),
           lambda v: v >= 2.0),
    Target("RabbitMQ end to end >= 70% of the bare kombu+HTTP loop",
           _ratio("e2e_rabbit", "asyncevents", "kombu loop", "events/s"),
           lambda v: v >= 0.7),
    Target("  (the same, asyncevents with 2 worker processes like Celery's -c 2)",
           _ratio("e2e_rabbit", "asyncevents, 2 worker processes", "celery prefork -c 2",
                  "events/s"),
           lambda v: v >= 2.0),
    Target("own SQL transport on PostgreSQL >= 5x stock kombu sqla+",
           _ratio("e2e_sql", "asyncevents sqla+postgresql", "kombu stock sqla+postgresql",
                  "events/s"),
           lambda v: v >= 5.0),
    Target("PostgreSQL: no slowdown with 100k delivered events behind (>= 0.9x fresh)",
           _behind, lambda v: v >= 0.9),
    Target("PostgreSQL publish->receipt p95 <= 100 ms at 200 ev/s",
           _value("latency", "asyncevents sqla+postgresql", "p95", "ms"), lambda v: v <= 100),
    Target("RabbitMQ publish->receipt p95 <= 20 ms at 200 ev/s",
           _value("latency", "asyncevents amqp", "p95", "ms"), lambda v: v <= 20),
    Target("batch publish with confirms >= 4x per-message confirmed publish",
           _batch, lambda v: v >= 4.0),
    Target("soak: RSS growth after warm-up < 10 MB",
           lambda r: next(((s.median, f"{_fmt(s.median, 'MB')} MB") for (sc, c, m), s
                           in r.samples.items() if sc == "soak"
                           and m == "RSS growth after warm-up"), (None, "not measured")),
           lambda v: v < 10),
]


def targets(results: Results) -> tuple[str, list[dict[str, object]]]:
    lines = ["targets:"]
    verdicts: list[dict[str, object]] = []
    for t in TARGETS:
        value, detail = t.measure(results)
        verdict = ("n/a " if value is None or value != value
                   else "PASS" if t.ok(value) else "MISS")
        shown = "" if value is None or value != value else (
            f"{value:.2f}" if not math.isinf(value) else "inf")
        lines.append(f"  [{verdict}] {t.text}: {shown} ({detail})")
        verdicts.append({"target": t.text, "value": value, "verdict": verdict.strip(),
                         "detail": detail})
    return "\n".join(lines), verdicts
