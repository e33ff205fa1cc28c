"""The results table (medians, ranges, ratios) and the targets, PASS or MISS."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import Results
from bench.scenarios import e2e_rabbit, fanout, latency, scaleout, search

# The baseline each contender of a scenario is compared with, by name prefix.
BASELINES = {
    "e2e_rabbit": e2e_rabbit.CELERY,
    "e2e_sql": None,  # per database, below
    "publish": "kombu, confirm per message",
    "latency": "kombu loop amqp",
    "scaleout": "asyncevents, 1 worker process",
    "whatif": None,  # per transport, below
}


#: Metrics a ratio to the baseline says nothing about.
NO_RATIO = {"publish rate achieved", "sent in catch-up batches"}


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
        if base and base != s.contender and s.metric not in NO_RATIO:
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
class Check:
    """One target's outcome: the figure shown, PASS (True), MISS (False) or n/a (None)."""

    shown: str
    ok: bool | None
    detail: str


@dataclass
class Target:
    text: str
    check: Callable[[Results], Check]


NOT_MEASURED = Check("", None, "not measured")


def _usable(*values: float | None) -> bool:
    return all(v is not None and v == v and not math.isinf(v) for v in values)


def _at_least_ratio(scenario: str, a: str, b: str, metric: str, least: float,
                    ) -> Callable[[Results], Check]:
    def check(r: Results) -> Check:
        x, y = r.get(scenario, a, metric), r.get(scenario, b, metric)
        if not _usable(x, y) or not y:
            return NOT_MEASURED
        assert x is not None and y is not None
        ratio = x / y
        return Check(f"{ratio:.2f}x", ratio >= least, f"{x:,.0f} / {y:,.0f} {metric}")
    return check


def _at_most(scenario: str, contender: str, metric: str, most: float, unit: str,
             scale: float = 1.0, what: str = "") -> Callable[[Results], Check]:
    def check(r: Results) -> Check:
        x = r.get(scenario, contender, metric)
        if x is None or x != x:
            return NOT_MEASURED
        x *= scale
        detail = what or f"{contender} / {metric}"
        return Check(f"{_fmt(x, unit)} {unit}", x <= most, detail)
    return check


def _latency_200(r: Results) -> Check:
    rabbit = r.get("latency", latency.AMQP, "p95")
    pg = r.get("latency", latency.PG, "p95")
    if rabbit is None and pg is None:
        return NOT_MEASURED
    oks = [v <= limit for v, limit in ((rabbit, 10.0), (pg, 20.0)) if v is not None and v == v]
    ok = all(oks) if len(oks) == 2 else (False if not all(oks) else None)
    return Check(f"{_fmt(rabbit, 'ms')} / {_fmt(pg, 'ms')} ms", ok,
                 "RabbitMQ / PostgreSQL p95, one worker process")


def _latency_1000(r: Results) -> Check:
    p99 = r.get("latency", latency.HIGH, "p99")
    reached = r.get("latency", latency.HIGH, "publish rate achieved")
    if p99 is None:
        return NOT_MEASURED
    if reached is None or reached < latency.KEPT * latency.HIGH_RATE:
        return Check(f"{_fmt(p99, 'ms')} ms", None,
                     f"not at {latency.HIGH_RATE:,.0f} ev/s: the publisher reached only "
                     f"{_fmt(reached)} ev/s")
    return Check(f"{_fmt(p99, 'ms')} ms", p99 <= 100.0,
                 f"p99, publisher at {reached:,.0f} ev/s")


def _search_exact(r: Results) -> Check:
    sample = next((s for (sc, c, m), s in r.samples.items()
                   if sc == "search" and c.endswith(search.EXACT) and m.startswith("count (")),
                  None)
    if sample is None or sample.median is None:
        return NOT_MEASURED
    rows = sample.metric.removeprefix("count (").rstrip(")")
    note = "" if rows == "1M rows" else " (not the 1M rows of the target)"
    return Check(f"{_fmt(sample.median, 'ms')} ms", sample.median <= search.EXACT_TARGET_MS,
                 f"count_deliveries({search.EXACT}) over {rows}{note}")


def _rss_growth(r: Results) -> Check:
    sample = next((s for (sc, c, m), s in r.samples.items()
                   if sc == "soak" and m == "RSS growth after warm-up"), None)
    if sample is None or sample.median is None:
        return NOT_MEASURED
    done = r.get("soak", sample.contender, "events delivered")
    return Check(f"{_fmt(sample.median, 'MB')} MB", sample.median < 10.0,
                 f"{sample.contender}, after warm-up to the end of {_fmt(done)} events")


#: Issue 14's targets, each PASS or MISS from figures measured in the same run.
TARGETS = [
    Target("RabbitMQ e2e, 1 worker process vs Celery prefork -c 2 >= 1.0x",
           _at_least_ratio("e2e_rabbit", e2e_rabbit.ONE, e2e_rabbit.CELERY, "events/s", 1.0)),
    Target("RabbitMQ e2e, --processes 2 vs Celery prefork -c 2 >= 1.5x",
           _at_least_ratio("e2e_rabbit", e2e_rabbit.TWO, e2e_rabbit.CELERY, "events/s", 1.5)),
    Target("worker CPU per event (RabbitMQ, 1 process) <= 0.6 ms",
           # CPU-seconds per 1,000 events is CPU-milliseconds per event
           _at_most("e2e_rabbit", e2e_rabbit.ONE, "consumer CPU per 1k events", 0.6, "ms",
                    what="e2e_rabbit, 1 worker process: CPU per 1k events / 1000")),
    Target("own SQL transport on PostgreSQL vs stock kombu sqla+ >= 3x",
           _at_least_ratio("e2e_sql", "asyncevents sqla+postgresql",
                           "kombu stock sqla+postgresql", "events/s", 3.0)),
    Target("publish->receipt p95 at 200 events/s, RabbitMQ / PostgreSQL <= 10 / <= 20 ms",
           _latency_200),
    Target("publish->receipt p99 at 1,000 events/s, RabbitMQ, 2 processes <= 100 ms",
           _latency_1000),
    Target("fan-out 1 event x 100 subscriptions, last copy <= 100 ms",
           _at_most("fanout", f"asyncevents, 1 event x {fanout.SUBSCRIPTIONS} subs",
                    "all copies received after", 100.0, "ms",
                    what="publish until the last of the 100 copies arrived, median")),
    Target("data. exact term count, 1M rows, PostgreSQL <= 50 ms", _search_exact),
    Target("worker RSS growth over 100k events < 10 MB", _rss_growth),
]


def _info_ratio(scenario: str, a: str, b: str, metric: str) -> Callable[[Results], Check]:
    def check(r: Results) -> Check:
        x, y = r.get(scenario, a, metric), r.get(scenario, b, metric)
        if not _usable(x, y) or not y:
            return NOT_MEASURED
        assert x is not None and y is not None
        return Check(f"{x / y:.2f}x", None, f"{x:,.0f} / {y:,.0f} {metric}")
    return check


def _behind(r: Results) -> Check:
    fresh = r.get("e2e_sql", "asyncevents sqla+postgresql", "events/s")
    behind = next((s for (sc, c, m), s in r.samples.items()
                   if sc == "e2e_sql" and c.startswith("asyncevents sqla+postgresql, ")
                   and m == "events/s"), None)
    if not _usable(fresh) or not fresh or behind is None or behind.median is None:
        return NOT_MEASURED
    return Check(f"{behind.median / fresh:.2f}x", None,
                 f"{behind.median:,.0f} ev/s ({behind.contender}) / {fresh:,.0f}")


def _batch(r: Results) -> Check:
    batch = r.get("publish", "asyncevents publish_many", "events/s")
    per_msg = r.get("publish", "kombu, confirm per message", "events/s")
    loop = r.get("publish", "asyncevents publish() loop", "events/s")
    if batch is None:
        if per_msg is None:
            return NOT_MEASURED
        return Check("", None, "no batch publish API (App.publish_many) to measure")
    if not per_msg:
        return NOT_MEASURED
    extra = f"; {batch / loop:.1f}x the publish() loop" if loop else ""
    return Check(f"{batch / per_msg:.2f}x", None,
                 f"publish_many {batch:,.0f} / kombu confirm-per-message {per_msg:,.0f} "
                 f"ev/s{extra}")


#: Figures worth a line beside the targets, with no verdict.
INFORMATION = [
    Target("RabbitMQ e2e, 1 worker process vs the bare kombu+HTTP loop",
           _info_ratio("e2e_rabbit", e2e_rabbit.ONE, "kombu loop", "events/s")),
    Target("RabbitMQ e2e, --processes 2 vs 1 worker process",
           _info_ratio("e2e_rabbit", e2e_rabbit.TWO, e2e_rabbit.ONE, "events/s")),
    Target("own SQL transport on SQLite vs stock kombu sqla+",
           _info_ratio("e2e_sql", "asyncevents sqla+sqlite", "kombu stock sqla+sqlite",
                       "events/s")),
    Target("PostgreSQL with 100k delivered events behind vs fresh", _behind),
    Target("batch publish with confirms vs per-message confirmed publish", _batch),
    Target("scale-out drain, --processes 2 vs 1",
           _info_ratio("scaleout", scaleout.label_for(2), scaleout.label_for(1),
                       "events/s (drain)")),
    Target("scale-out drain, --processes 4 vs 1",
           _info_ratio("scaleout", scaleout.label_for(4), scaleout.label_for(1),
                       "events/s (drain)")),
]


def targets(results: Results) -> tuple[str, list[dict[str, object]]]:
    """The targets (PASS, MISS or n/a) and the information lines, as text and as JSON rows."""
    lines = ["targets (issue 14):" if not results.info.get("quick") else
             "targets (issue 14; a --quick run: small numbers, the verdicts only show that "
             "each row is measured):"]
    verdicts: list[dict[str, object]] = []
    for heading, rows in (("", TARGETS), ("information (no target):", INFORMATION)):
        if heading:
            lines += ["", heading]
        for t in rows:
            c = t.check(results)
            if rows is TARGETS:
                verdict = "n/a " if c.ok is None else "PASS" if c.ok else "MISS"
                lines.append(f"  [{verdict}] {t.text}: {c.shown or '-'} ({c.detail})")
            else:
                verdict = "info"
                lines.append(f"  {t.text}: {c.shown or '-'} ({c.detail})")
            verdicts.append({"target": t.text, "value": c.shown, "verdict": verdict.strip(),
                             "detail": c.detail})
    return "\n".join(lines), verdicts
