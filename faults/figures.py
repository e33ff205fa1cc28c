"""Counting what a fault run published, delivered, duplicated and lost, and the table.

The receiver is the judge of what arrived: a delivery is the pair (event,
subscription), and it arrived when the subscription's path answered 200 to a
request carrying that event. A second 200 for the same pair is a duplicate;
it is allowed (at-least-once) only when it carries the same ``webhook-id``,
so the receiver can drop it. The store is checked against what arrived.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from asyncevents.core.store import Store
from faults.receiver import Hit

__all__ = ["Row", "Tally", "format_table", "store_check", "tally"]


@dataclass
class Tally:
    """What arrived, counted from the receiver's hits."""

    published: int
    delivered: int
    duplicated: int
    lost: int
    unidentifiable: int
    """Pairs that arrived under more than one ``webhook-id``: duplicates no receiver can drop."""
    webhook_ids: set[str] = field(default_factory=set)


@dataclass
class Row:
    """One line of the table: a fault on a transport, its figures and its verdict."""

    fault: str
    transport: str
    published: int = 0
    delivered: int = 0
    duplicated: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        """No loss, no unidentifiable duplicate, no failed check."""
        return not self.skipped and self.lost == 0 and not self.problems

    def add(self, counted: Tally) -> None:
        """Fold a tally into the figures (a run may have several receivers)."""
        self.published += counted.published
        self.delivered += counted.delivered
        self.duplicated += counted.duplicated
        self.lost += counted.lost
        if counted.unidentifiable:
            self.problems.append(f"{counted.unidentifiable} duplicates without one webhook-id")

    def check(self, condition: bool, problem: str) -> None:
        """Record ``problem`` unless ``condition`` holds."""
        if not condition:
            self.problems.append(problem)

    def verdict(self) -> str:
        """``ok``, ``FAIL`` or ``skip``."""
        if self.skipped:
            return "skip"
        return "ok" if self.ok else "FAIL"


def tally(hits: Iterable[Hit], event_ids: Iterable[str], paths: Sequence[str]) -> Tally:
    """Count deliveries of ``event_ids`` to every one of ``paths`` (receiver paths)."""
    wanted = set(event_ids)
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    successes: dict[tuple[str, str], int] = defaultdict(int)
    for hit in hits:
        if hit.status != 200 or hit.path not in paths or hit.event_id not in wanted:
            continue
        key = (hit.event_id, hit.path)
        ids[key].add(hit.webhook_id)
        successes[key] += 1
    expected = len(wanted) * len(paths)
    delivered = len(successes)
    return Tally(
        published=expected,
        delivered=delivered,
        duplicated=sum(successes.values()) - delivered,
        lost=expected - delivered,
        unidentifiable=sum(1 for seen in ids.values() if len(seen) > 1),
        webhook_ids={w for seen in ids.values() for w in seen},
    )


@dataclass
class StoreCheck:
    """The store against the receiver: every request it got has its attempt row."""

    deliveries: int
    requests: int
    attempts: int
    unrecorded: int
    """Deliveries whose receiver got more requests than there are attempt rows."""
    not_final: int
    """Deliveries that arrived but are not ``delivered`` in the store."""


def store_check(store: Store, hits: Iterable[Hit], paths: Sequence[str]) -> StoreCheck:
    """Compare the attempts in the store with the requests the receiver got."""
    requests: dict[str, int] = defaultdict(int)
    arrived: set[str] = set()
    for hit in hits:
        if hit.path in paths and hit.webhook_id:
            requests[hit.webhook_id] += 1
            if hit.status == 200:
                arrived.add(hit.webhook_id)
    attempts = unrecorded = not_final = 0
    for webhook_id, count in requests.items():
        rows = store.list_attempts(webhook_id)
        attempts += len(rows)
        if len(rows) < count:
            unrecorded += 1
        if webhook_id in arrived and store.get_delivery(webhook_id).status != "delivered":
            not_final += 1
    return StoreCheck(len(requests), sum(requests.values()), attempts, unrecorded, not_final)


_HEADER = ("fault", "transport", "published", "delivered", "duplicated", "lost", "result")


def format_table(rows: Sequence[Row]) -> str:
    """The table ``make faults`` prints, with each row's notes and problems beneath it."""
    cells = [list(_HEADER)] + [
        [r.fault, r.transport, str(r.published), str(r.delivered), str(r.duplicated),
         str(r.lost), r.verdict()] for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_HEADER))]
    numeric = {2, 3, 4, 5}

    def line(values: list[str]) -> str:
        parts = [v.rjust(w) if i in numeric else v.ljust(w)
                 for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "| " + " | ".join(parts) + " |"

    out = [line(cells[0]),
           "|" + "|".join(("-" * (w + 1) + ":" if i in numeric else "-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"]
    out += [line(c) for c in cells[1:]]
    notes = []
    for row in rows:
        for text in ([f"skipped: {row.skipped}"] if row.skipped else []) + row.notes:
            notes.append(f"- {row.fault} / {row.transport}: {text}")
        for text in row.problems:
            notes.append(f"- {row.fault} / {row.transport}: PROBLEM: {text}")
    return "\n".join(out + (["", *notes] if notes else []))
