"""``GET /v1/users/{user_id}/recommendations`` and ``GET /v1/items/{item_id}/similar``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from experiments.errors import StoreError
from experiments.service import assign_unit_async
from serving.deps import AppModels, designs_of, exposures_of
from serving.errors import NotReadyError
from serving.models import Loaded, ModelInfo
from serving.params import ID_PATTERN, ItemIdPath, KQuery, UserIdPath

if TYPE_CHECKING:
    from training.recommenders.service import Recommender

router = APIRouter(prefix="/v1", tags=["recommendations"])


class ScoredItem(BaseModel):
    item_id: str = Field(examples=["i0007"])
    score: float = Field(examples=[0.42])


class ModelRef(BaseModel):
    """The registered model that answered."""

    name: str = Field(examples=["recommender"])
    version: str | None = Field(examples=["3"])
    alias: str = Field(examples=["champion"])


class UserRecommendations(BaseModel):
    user_id: str = Field(examples=["u000042"])
    items: list[ScoredItem]
    source: str = Field(description="`model`, or `fallback` (popularity) for a user the model does not know")
    model: ModelRef
    experiment: str | None = Field(
        None,
        description="The variant (a registry alias) when a recommender rollout experiment routed this user; "
        "its exposure is logged before the answer.",
        examples=["challenger"],
    )
    experiment_key: str | None = Field(
        None, description="The rollout experiment that routed this user, if any.", examples=["ranker_rollout"]
    )


class SimilarItems(BaseModel):
    item_id: str = Field(examples=["i0007"])
    items: list[ScoredItem]


def _recommender(loaded: Loaded) -> Recommender:
    if loaded.recommender is None:
        raise NotReadyError("no recommender is loaded: run `userops train recommender`, then reload")
    return loaded.recommender


async def _routed(
    loaded: Loaded, user_id: str, request: Request
) -> tuple[Recommender, ModelInfo, str | None]:
    """The model that answers this user: a rollout variant's when a rollout enrols them (exposure
    committed first, awaited), else the champion."""
    rollout = loaded.rollout
    if rollout is not None:
        try:
            variant, _ = await assign_unit_async(
                designs=designs_of(request),
                experiment=rollout.experiment,
                unit_id=user_id,
                log=exposures_of(request),
            )
        except StoreError:  # stopped or deleted since the models were loaded: the champion answers
            variant = None
        if variant is not None and variant in rollout.models:
            model, info = rollout.models[variant]
            return model, info, variant
    return _recommender(loaded), loaded.recommender_info, None


@router.get("/users/{user_id}/recommendations", summary="Top-k items for one user, filters applied.")
async def recommendations(
    user_id: UserIdPath,
    request: Request,
    loaded: AppModels,
    k: KQuery = 10,
    category: Annotated[
        str | None,
        Query(max_length=128, pattern=ID_PATTERN, description="Show only items of this category."),
    ] = None,
    exclude_purchased: Annotated[bool, Query(description="Leave out what the user bought.")] = True,
) -> UserRecommendations:
    # a coroutine: scoring one user takes well under a millisecond; only a rollout's commit waits
    if loaded.live is not None:  # events other workers stored since the last look
        loaded.live.catch_up()
    model, info, variant = await _routed(loaded, user_id, request)
    rec = model.recommend(
        user_id, k, exclude_bought=exclude_purchased, include_categories=[category] if category else None
    )
    return UserRecommendations(
        user_id=user_id,
        items=[ScoredItem(item_id=i, score=s) for i, s in zip(rec.item_ids, rec.scores, strict=True)],
        source=rec.source,
        model=ModelRef(name=info.name, version=info.version, alias=info.alias),
        experiment=variant,
        experiment_key=loaded.rollout.experiment if variant is not None and loaded.rollout else None,
    )


@router.get("/items/{item_id}/similar", summary="The k items most like this one.")
async def similar(item_id: ItemIdPath, loaded: AppModels, k: KQuery = 10) -> SimilarItems:
    rec = _recommender(loaded).similar_items(item_id, k)
    return SimilarItems(
        item_id=item_id,
        items=[ScoredItem(item_id=i, score=s) for i, s in zip(rec.item_ids, rec.scores, strict=True)],
    )
