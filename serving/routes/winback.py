"""``GET /v1/winback``: the latest scored win-back list, filtered as an operator asks, in JSON or CSV.

The list is the newest ``DATA/winback/winback_as_of=YYYY-MM-DD.csv`` that ``userops pipeline`` wrote; it is
read on each request, so a new run is served as soon as its file is in place (files are renamed into place
whole).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from datetime import date
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from serving.deps import DataDirDep, OperatorCaller
from serving.errors import NotReadyError
from serving.params import ID_PATTERN
from training.winback import WinbackFilters, filter_winback, latest_winback, read_winback

router = APIRouter(prefix="/v1", tags=["win-back"])

REASONS_SEPARATOR = " | "
"""How the written list joins a user's reasons."""


class WinbackUser(BaseModel):
    """One user to win back: how likely to leave, what is at stake, why, and what to offer."""

    user_id: str = Field(examples=["u000211"])
    churn_risk: float = Field(
        description="Calibrated probability of churning within the horizon.", examples=[0.32]
    )
    value_at_stake: float = Field(
        description="Expected spend over the horizon if retained.", examples=[71.34]
    )
    expected_value_saved: float = Field(description="churn_risk × value_at_stake.", examples=[23.1])
    lifecycle_stage: str = Field(examples=["at_risk"])
    rfm_segment: str = Field(examples=["champions"])
    reasons: list[str] = Field(
        description="The strongest drivers of the risk, in words, strongest first.",
        examples=[
            ["usually buys every 12 days, last bought 45 days ago", "not expected back in the next 13 weeks"]
        ],
    )
    offer_id: str | None = Field(description="The offer to make; null for none.", examples=["free_shipping"])
    expected_value: float = Field(
        description="The offer's expected incremental value after its cost (0 for none).", examples=[3.46]
    )


class WinbackList(BaseModel):
    """The win-back list of the latest scoring run, largest expected value saved first."""

    as_of: date = Field(description="The scoring date of the list.", examples=["2025-04-01"])
    users: list[WinbackUser]


CSV_EXAMPLE = (
    "user_id,churn_risk,value_at_stake,expected_value_saved,lifecycle_stage,rfm_segment,reasons,offer_id,"
    "expected_value\n"
    'u000211,0.3238,71.34,23.10,at_risk,champions,"usually buys every 12 days, last bought 45 days ago | '
    'not expected back in the next 13 weeks",free_shipping,3.46\n'
)


@router.get(
    "/winback",
    response_model=WinbackList,
    summary="The latest win-back list: who to win back, what is at stake, why, with what offer.",
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}}},
        422: {"description": "A bad parameter, or a segment no user of the list is in."},
        503: {"description": "No list has been scored yet: run `userops pipeline`."},
    },
)
def winback(
    folder: DataDirDep,
    _: OperatorCaller,
    top: Annotated[int | None, Query(ge=1, le=1_000_000, description="Keep the first N users.")] = None,
    segment: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=ID_PATTERN,
            description="Keep users whose RFM segment or lifecycle stage is this.",
            examples=["at_risk"],
        ),
    ] = None,
    min_value: Annotated[
        float, Query(ge=0, allow_inf_nan=False, description="Keep users with at least this value at stake.")
    ] = 0.0,
    output: Annotated[
        Literal["json", "csv"], Query(alias="format", description="`json` (default) or `csv` text.")
    ] = "json",
) -> Response | WinbackList:
    latest = latest_winback(folder)
    if latest is None:
        raise NotReadyError("no win-back list has been scored yet: run `userops pipeline`")
    as_of, path = latest
    frame = filter_winback(read_winback(path), WinbackFilters(top=top, segment=segment, min_value=min_value))
    if output == "csv":
        return Response(
            frame.to_csv(index=False),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="winback_as_of={as_of.isoformat()}.csv"'},
        )
    return WinbackList(as_of=as_of, users=[_user(row) for row in frame.to_dict("records")])


def _offer_value(value: object) -> float:
    """The offer's expected value, 0 where a list has none (written before offers, or no offer)."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return 0.0 if pd.isna(number) else float(number)


def _user(row: Mapping[Hashable, Any]) -> WinbackUser:
    """One row of the written list as the API shows it: reasons as a list, no offer as null."""
    reasons = str(row["reasons"])
    return WinbackUser(
        user_id=str(row["user_id"]),
        churn_risk=float(row["churn_risk"]),
        value_at_stake=float(row["value_at_stake"]),
        expected_value_saved=float(row["expected_value_saved"]),
        lifecycle_stage=str(row["lifecycle_stage"]),
        rfm_segment=str(row["rfm_segment"]),
        reasons=reasons.split(REASONS_SEPARATOR) if reasons else [],
        offer_id=str(row["offer_id"]) or None,
        expected_value=_offer_value(row.get("expected_value")),
    )
