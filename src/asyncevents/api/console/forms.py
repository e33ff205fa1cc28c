"""A console form's refusals: every one at once, each under the field it names.

A refused form comes back with a summary at its top (each problem, its
field's label linking to the field) and each message next to its field,
which is marked ``aria-invalid`` and described by it. What was typed is kept,
except secrets (the token), which are never sent back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from asyncevents.api.problems import Problem, public_detail
from asyncevents.errors import AsyncEventsError

__all__ = ["LABELS", "FieldError", "FormErrors"]

LABELS = {
    "event_name": "Event name", "sink": "Sink", "recipient": "Recipient",
    "token": "Verification token", "filter": "Filter", "retry_policy": "Retry policy",
    "rate": "Rate", "max_in_flight": "Max in flight", "ordering_key": "Ordering key",
    "signature": "Signature", "headers": "Extra headers", "disable_after": "Disable after",
    "new_token": "New verification token", "grace": "Grace", "metadata": "Metadata",
}
"""The form's label of each field, as the summary names it."""

# The form's names for the fields a problem names in the API's words.
_FORM_NAMES = {"verification_token": "token", "body": "form"}


@dataclass(frozen=True)
class FieldError:
    """One refusal: the form field it is about (``form``: none in particular) and why."""

    field: str
    message: str

    @property
    def label(self) -> str:
        """The field's label."""
        return LABELS.get(self.field, self.field.replace("_", " ").capitalize())


class FormErrors:
    """The refusals of one posted form, the first one of each field kept, in order."""

    def __init__(self) -> None:
        self.by_field: dict[str, FieldError] = {}

    def __bool__(self) -> bool:
        return bool(self.by_field)

    def __contains__(self, field: object) -> bool:
        return field in self.by_field

    @property
    def items(self) -> list[FieldError]:
        """Every refusal, in the order met."""
        return list(self.by_field.values())

    def add(self, field: str | None, message: str) -> None:
        """Keep ``message`` for ``field`` (in the API's or the form's words), unless it has one."""
        name = (field or "form").split(".")[0]
        name = _FORM_NAMES.get(name, name)
        self.by_field.setdefault(name, FieldError(name, message))

    def add_error(self, exc: Exception, field: str = "") -> None:
        """Keep the refusal ``exc`` says (a Problem, an asyncevents error), under its field."""
        if isinstance(exc, Problem):
            if exc.errors:
                for error in exc.errors:
                    self.add(error.get("field"), error.get("message", exc.detail))
            else:
                self.add(exc.field or field, exc.detail)
        elif isinstance(exc, AsyncEventsError):
            self.add(exc.field or field, public_detail(exc))
        else:
            self.add(field, str(exc))

    def add_validation(self, exc: ValidationError) -> None:
        """Keep each error of a request schema, under the field it names."""
        for error in exc.errors():
            location = [str(part) for part in error.get("loc", ())]
            name = _FORM_NAMES.get(location[0], location[0]) if location else "form"
            # As the REST API words it: the field first (pydantic's message does not name it).
            self.add(name, f"{'.'.join([name, *location[1:]])}: {error.get('msg', 'invalid')}")

    @contextmanager
    def field(self, field: str) -> Iterator[None]:
        """Keep a refusal raised inside under ``field`` (unless it names its own)."""
        try:
            yield
        except (Problem, AsyncEventsError) as exc:
            self.add_error(exc, field)

    def validated(self, schema: type[BaseModel], data: dict[str, object]) -> BaseModel | None:
        """``data`` through a REST request schema; None, with its errors kept, when refused."""
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            self.add_validation(exc)
            return None
