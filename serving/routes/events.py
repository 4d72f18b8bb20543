"""``POST /v1/events``: apps send what users just did; good rows are stored and served at once."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from serving.deps import AppCaller, DataDirDep, ModelsDep
from serving.events import MAX_EVENTS, record_events

router = APIRouter(prefix="/v1", tags=["events"])


class Event(BaseModel):
    """One thing a user did. Fields are checked row by row: a bad value refuses that row, not the batch."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, description="The user; 1–128 characters, no control characters.")
    ts: str | None = Field(
        None,
        description="When, in ISO 8601; without an offset it is UTC. Not in the future.",
        examples=["2025-03-19T12:30:00Z"],
    )
    event_type: str | None = Field(None, description="`view`, `add_to_cart`, `purchase` or `refund`.")
    item_id: str | None = Field(None, description="The item, if any; at most 128 characters.")
    amount: float | None = Field(None, description="Money; finite, and not negative on a purchase.")
    session_id: str | None = Field(None, description="The session, if any; at most 128 characters.")


EXAMPLE_EVENTS: list[JsonValue] = [
    {"user_id": "u000042", "ts": "2025-03-19T12:30:00Z", "event_type": "view", "item_id": "i0007"},
    {
        "user_id": "u000042",
        "ts": "2025-03-19T12:31:10Z",
        "event_type": "purchase",
        "item_id": "i0007",
        "amount": 19.99,
        "session_id": "s-81",
    },
]


class EventBatch(BaseModel):
    """A batch of events, at most 1,000."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"events": EXAMPLE_EVENTS}]})

    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS, description="1 to 1,000 events.")


class RejectedRow(BaseModel):
    """A refused row: its 0-based position in ``events`` and the reason."""

    row: int = Field(examples=[3])
    reason: str = Field(examples=["ts in the future"])


class EventsAccepted(BaseModel):
    """How many events were stored, and which rows were refused."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"accepted": 2, "rejected": [{"row": 2, "reason": "unknown event type"}]}]
        }
    )

    accepted: int = Field(description="Rows stored (durably, before this answer) and served from now on.")
    rejected: list[RejectedRow]


@router.post(
    "/events",
    status_code=202,
    summary="Store a batch of user events; they shape recommendations at once and the next feature run.",
)
def post_events(batch: EventBatch, loaded: ModelsDep, data: DataDirDep, _: AppCaller) -> EventsAccepted:
    recorded = record_events(
        data=data,
        events=[event.model_dump() for event in batch.events],
        live=loaded.live,
    )
    return EventsAccepted(
        accepted=recorded.accepted,
        rejected=[RejectedRow(row=r.row, reason=r.reason) for r in recorded.rejected],
    )
