"""Path and query parameters shared by the routers, validated the way ingest validates ids.

An id is 1–128 characters with no control characters; ``k`` is 1–100. A bad value is a 422 naming the
field, before any route code runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"

UserIdPath = Annotated[
    str,
    Path(
        min_length=1, max_length=128, pattern=ID_PATTERN, description="The user's id.", examples=["u000042"]
    ),
]
ItemIdPath = Annotated[
    str,
    Path(min_length=1, max_length=128, pattern=ID_PATTERN, description="The item's id.", examples=["i0007"]),
]
KeyPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="The experiment's key.",
        examples=["promo"],
    ),
]
UnitIdQuery = Annotated[
    str, Query(min_length=1, max_length=128, pattern=ID_PATTERN, description="The unit (user) to assign.")
]
KQuery = Annotated[int, Query(ge=1, le=100, description="How many items, 1–100.")]
