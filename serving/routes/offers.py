"""``GET /v1/users/{user_id}/next-best-offer``: the offer worth giving this user now, or none, and why.

The offers champion chooses for the churn scores' population when the models are loaded (at start and
on each reload), as ``userops offers choose`` does: uplift x the user's value at stake - the offer's
cost, with the catalogue's eligibility, validity, caps and cooldowns applied. A request is a look-up,
except for a user the running exploration experiment enrols (randomized, exposure logged first).
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from experiments.errors import StoreError
from experiments.service import assign_unit_async
from serving.deps import AppModels, designs_of, exposures_of
from serving.errors import NotFoundError, NotReadyError
from serving.params import UserIdPath
from serving.routes.recommendations import ModelRef
from training.offers.explore import EXPLORE_EXPERIMENT

router = APIRouter(prefix="/v1", tags=["offers"])


class NextBestOffer(BaseModel):
    """One user's next-best offer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": "u000042",
                    "offer_id": "free_shipping",
                    "expected_value": 4.2,
                    "reason": "free shipping: +6.1 pts 30-day activity, worth 4.20 after cost",
                    "model": {"name": "offers", "version": "2", "alias": "champion"},
                    "features_as_of": "2025-08-29",
                }
            ]
        }
    )

    user_id: str
    offer_id: str | None = Field(description="The offer to give; null when no offer is worth its cost.")
    expected_value: float = Field(
        description="Expected incremental value after the offer's cost (0 for none)."
    )
    reason: str = Field(description="One line for a person: the offer's effect and its worth, or why none.")
    model: ModelRef
    features_as_of: date = Field(description="As-of date of the features the choice was made from.")


@router.get(
    "/users/{user_id}/next-best-offer",
    summary="The offer with the largest expected value after cost for this user, or none.",
    responses={
        404: {"description": "The user is not in the scored population."},
        503: {"description": "No offers model (or no churn scores) is loaded."},
    },
)
async def next_best_offer(user_id: UserIdPath, request: Request, loaded: AppModels) -> NextBestOffer:
    """When the exploration experiment (``next_best_offer_explore``, started by ``userops offers
    choose --explore``) runs, the users it enrols are randomized as in batch: their exposure is logged
    before the answer, which is the variant's offer (or none for ``control``) with the reason."""
    # a coroutine: the answer is a look-up in memory, made at load (an exploration exposure is awaited)
    choices = loaded.offers
    if choices is None:
        if loaded.offers_info.version is None:
            raise NotReadyError("no offers model is registered: run `userops train offers`, then reload")
        raise NotReadyError("next-best offers are not loaded: see /readyz")
    found = choices.get(user_id)
    if found is None:
        raise NotFoundError(
            f"unknown user {user_id!r}: not among the users active in the churn model's look-back "
            f"as of {choices.as_of}"
        )
    designs = designs_of(request)
    if designs.running(EXPLORE_EXPERIMENT):
        try:
            variant, _ = await assign_unit_async(
                designs=designs, experiment=EXPLORE_EXPERIMENT, unit_id=user_id, log=exposures_of(request)
            )
        except StoreError:  # stopped since it was read: the model's choice stands
            variant = None
        if variant is not None:
            found = choices.explored(user_id, variant)
    info = loaded.offers_info
    return NextBestOffer(
        user_id=user_id,
        offer_id=found.offer_id,
        expected_value=round(found.expected_value, 2),
        reason=found.reason,
        model=ModelRef(name=info.name, version=info.version, alias=info.alias),
        features_as_of=choices.as_of,
    )
