"""Outcome charts as inline SVG drawn on the server: no script, no CDN, works offline.

One stacked bar per time bucket (delivered at the bottom, failed on top),
each with a ``<title>`` that a browser shows on hover. Empty buckets draw
nothing. The labels (the scale and the time span) are HTML around the SVG,
which stretches to the page's width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from markupsafe import Markup, escape

__all__ = ["Bucket", "Chart", "outcome_chart"]


class Bucket(Protocol):
    """One bar: the store's ``OutcomeBucket`` (``Store.outcomes_per_bucket``)."""

    @property
    def start(self) -> datetime:
        """When the bucket starts."""

    @property
    def succeeded(self) -> int:
        """Successful attempts in it."""

    @property
    def failed(self) -> int:
        """Failed attempts in it."""

_HEIGHT = 100.0
_OK = "#43a047"
_FAILED = "#e53935"


@dataclass(frozen=True)
class Chart:
    """An SVG chart and what the page prints around it."""

    svg: Markup
    bucket: str
    """What one bar counts: "minute", "10 minutes"."""
    peak: int
    succeeded: int
    failed: int
    start: str
    end: str


def outcome_chart(buckets: Sequence[Bucket], element_id: str, label: str,
                  bucket: str = "minute") -> Chart:
    """The stacked bars of ``buckets`` (each ``bucket`` long), scaled to the busiest one."""
    peak = max((b.succeeded + b.failed for b in buckets), default=0)
    scale = _HEIGHT / peak if peak else 0.0
    width = max(len(buckets), 1)
    ok_total = sum(b.succeeded for b in buckets)
    failed_total = sum(b.failed for b in buckets)
    bars: list[str] = []
    for i, b in enumerate(buckets):
        if not b.succeeded and not b.failed:
            continue
        ok_h, failed_h = b.succeeded * scale, b.failed * scale
        tip = escape(f"{b.start:%Y-%m-%d %H:%M} UTC: {b.succeeded} delivered, {b.failed} failed")
        bars.append(f'<g><title>{tip}</title>'
                    f'<rect x="{i}" y="{_HEIGHT - ok_h:.3f}" width="0.85" height="{ok_h:.3f}" '
                    f'fill="{_OK}"/>'
                    f'<rect x="{i}" y="{_HEIGHT - ok_h - failed_h:.3f}" width="0.85" '
                    f'height="{failed_h:.3f}" fill="{_FAILED}"/></g>')
    summary = escape(f"{label}: {ok_total} delivered, {failed_total} failed attempts; "
                     f"busiest {bucket} {peak}")
    svg = Markup(
        f'<svg id="{escape(element_id)}" class="chart" viewBox="0 0 {width} {_HEIGHT:.0f}" '
        f'preserveAspectRatio="none" role="img" aria-label="{summary}" '
        f'xmlns="http://www.w3.org/2000/svg">' + "".join(bars) + "</svg>")
    start = f"{buckets[0].start:%H:%M}" if buckets else ""
    end = f"{buckets[-1].start:%H:%M}" if buckets else ""
    return Chart(svg, bucket, peak, ok_total, failed_total, start, end)
