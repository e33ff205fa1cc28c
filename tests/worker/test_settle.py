"""Typed outcomes: the engine hands back a ``Settle`` for each message, the worker obeys it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from asyncevents.core.app import App
from asyncevents.core.clock import utcnow
from asyncevents.core.delivery.outcome import Settle
from asyncevents.core.messages import DeliverMessage, Message, TriggerMessage
from asyncevents.core.worker import worker as worker_module


def test_the_engine_answers_with_settle_members(make_settings: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    app = App(make_settings(transport_url="memory://"))
    engine = app._engine(concurrency=1)
    try:
        nobody = TriggerMessage(str(uuid.uuid4()), "shop.order", {}, utcnow())
        missing = DeliverMessage(str(uuid.uuid4()))  # a delivery that does not exist
        assert engine.submit([(nobody, False), (missing, False)]).result(30) == [
            Settle.ACK, Settle.DROP]

        def broken(*_args: Any) -> Any:
            raise RuntimeError("the store is away")

        monkeypatch.setattr(engine.dispatcher, "handle_many", broken)
        again = TriggerMessage(str(uuid.uuid4()), "shop.order", {}, utcnow())
        assert engine.submit([(again, False)]).result(30) == [Settle.REQUEUE]
    finally:
        engine.close()
        app.close()


class _Held:
    """A received message that remembers how it was settled."""

    route = "trigger"
    dead = False

    def __init__(self) -> None:
        self.message: Message = TriggerMessage("e", "n", {}, utcnow())
        self.settled: list[str] = []

    def ack(self) -> None:
        self.settled.append("ack")

    def requeue(self) -> None:
        self.settled.append("requeue")

    def drop(self) -> None:
        self.settled.append("drop")


def test_the_worker_settles_each_message_as_told() -> None:
    held = [_Held() for _ in range(3)]
    worker_module._settle(None, held,  # type: ignore[arg-type]
                          [Settle.REQUEUE, Settle.ACK, Settle.DROP])
    assert [h.settled for h in held] == [["requeue"], ["ack"], ["drop"]]


@pytest.mark.parametrize(("old", "new"), [(True, Settle.ACK), (False, Settle.REQUEUE),
                                          (None, Settle.DROP)])
def test_the_old_encoding_reads_as_settle(old: bool | None, new: Settle) -> None:
    assert Settle(old) is new
