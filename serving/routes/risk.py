"""``GET /v1/users/{user_id}/churn-risk``: how likely a user is to leave, why, and what is at stake.

Scores are computed from the online features when the models are loaded (at start and on each
``POST /v1/admin/reload``): the churn champion scores the online snapshot's whole population once, as
``userops score churn`` does, because its BG/NBD and Gamma-Gamma inputs are fitted on the population's
history and are not in the online copy (see :mod:`serving.models`). A request is a look-up; after the
feature job writes a new snapshot, a reload refreshes the scores.

A user in the online features but outside the scored population (no activity in the model's look-back,
or none yet) is answered with ``churn_risk`` and ``value_at_stake`` null, the lifecycle stage and RFM
segment of their features, and the reason they were not scored: the model was trained and calibrated
on active users only, so a probability for them would be an extrapolation presented as a calibrated one.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from features.store import OnlineStore
from serving.deps import AppModels
from serving.errors import NotFoundError, NotReadyError
from serving.models import Loaded, ModelInfo, RiskScores
from serving.params import UserIdPath
from serving.routes.recommendations import ModelRef

router = APIRouter(prefix="/v1", tags=["churn risk"])

SCORED_EXAMPLE: JsonDict = {
    "user_id": "u000042",
    "churn_risk": 0.83,
    "lifecycle_stage": "at_risk",
    "rfm_segment": "cant_lose",
    "value_at_stake": 212.4,
    "reasons": [
        "usually buys every 12 days, last bought 45 days ago",
        "not expected back in the next 13 weeks",
        "spends about 26.60 per order",
    ],
    "model": {"name": "churn", "version": "3", "alias": "champion"},
    "features_as_of": "2025-08-29",
}


class ChurnRisk(BaseModel):
    """One user's churn risk, with the drivers behind it and the value a win-back would keep."""

    # one example: the schema generator drops null values, so an unscored example would lose its nulls
    model_config = ConfigDict(json_schema_extra={"examples": [SCORED_EXAMPLE]})

    user_id: str = Field(examples=["u000042"])
    churn_risk: float | None = Field(
        ge=0.0,
        le=1.0,
        description="Calibrated probability of no activity within the model's horizon; null for a user "
        "outside the scored population (no activity in the look-back).",
        examples=[0.83],
    )
    lifecycle_stage: str = Field(examples=["at_risk"])
    rfm_segment: str = Field(examples=["cant_lose"])
    value_at_stake: float | None = Field(
        description="Expected spend over the horizon if retained (BG/NBD x Gamma-Gamma); null if not scored.",
        examples=[212.4],
    )
    reasons: list[str] = Field(
        description="The strongest drivers of the risk, in words, strongest first (up to three).",
        examples=[
            ["usually buys every 12 days, last bought 45 days ago", "not expected back in the next 13 weeks"]
        ],
    )
    model: ModelRef
    features_as_of: date = Field(description="As-of date of the features scored.", examples=["2025-08-29"])


def _ref(info: ModelInfo) -> ModelRef:
    return ModelRef(name=info.name, version=info.version, alias=info.alias)


def _text(value: object) -> str:
    return "" if value is None or pd.isna(value) else str(value)  # type: ignore[call-overload]


def _unscored(*, user_id: str, scores: RiskScores, online: OnlineStore, info: ModelInfo) -> ChurnRisk:
    """A user outside the scored population, from their online features.

    Raises:
        NotFoundError: The user is not in the online features either.
        NotReadyError: The online features moved on since the scores were made (a reload is due).
    """
    found = online.get([user_id])
    if found.empty:
        raise NotFoundError(f"unknown user {user_id!r}: not in the online features")
    row = found.iloc[0]
    as_of = pd.Timestamp(row["as_of"]).date() if "as_of" in row and pd.notna(row["as_of"]) else scores.as_of
    since = pd.to_numeric(pd.Series([row.get("days_since_last_event")]), errors="coerce").iloc[0]
    if as_of != scores.as_of and pd.notna(since) and since <= scores.lookback:
        raise NotReadyError(
            f"the online features are as of {as_of}, the churn scores as of {scores.as_of}: "
            "reload (POST /v1/admin/reload) to score them"
        )
    why = "no activity yet" if pd.isna(since) else f"no activity in the {scores.lookback} days before {as_of}"
    return ChurnRisk(
        user_id=user_id,
        churn_risk=None,
        lifecycle_stage=_text(row.get("lifecycle_stage")),
        rfm_segment=_text(row.get("rfm_segment")),
        value_at_stake=None,
        reasons=[f"{why}: outside the churn model's population"],
        model=_ref(info),
        features_as_of=as_of,
    )


def churn_risk_of(*, loaded: Loaded, user_id: str) -> ChurnRisk:
    """The user's churn risk from the scores made at load, else (outside the population) their features.

    Raises:
        NotReadyError: No churn scores are loaded (no champion, no online features).
        NotFoundError: The user is neither scored nor in the online features.
    """
    scores = loaded.churn
    if scores is None:
        raise NotReadyError(
            "no churn scores are loaded: run `userops pipeline` (or `userops train churn` and "
            "`userops features`), then reload"
        )
    risk = scores.get(user_id)
    if risk is None:
        return _unscored(user_id=user_id, scores=scores, online=loaded.online, info=loaded.churn_info)
    return ChurnRisk(
        user_id=user_id,
        churn_risk=risk.churn_risk,
        lifecycle_stage=risk.lifecycle_stage,
        rfm_segment=risk.rfm_segment,
        value_at_stake=risk.value_at_stake,
        reasons=list(risk.reasons),
        model=_ref(loaded.churn_info),
        features_as_of=scores.as_of,
    )


@router.get(
    "/users/{user_id}/churn-risk",
    summary="Calibrated churn risk, its top reasons and the value at stake for one user.",
    responses={
        404: {"description": "The user is not in the online features."},
        503: {"description": "No churn champion or no online features are loaded."},
    },
)
async def churn_risk(user_id: UserIdPath, loaded: AppModels) -> ChurnRisk:
    """Scores come from the online features as of ``features_as_of``, computed when the models were
    loaded and refreshed by a reload; a user with no activity in the model's look-back is not scored
    (``churn_risk`` null, with the reason)."""
    # a coroutine: a scored user is a look-up in memory, made at load
    return churn_risk_of(loaded=loaded, user_id=user_id)
