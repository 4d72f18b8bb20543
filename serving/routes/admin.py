"""``POST /v1/admin/reload``: load the current champions in every worker."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from serving.deps import AdminCaller, HolderDep

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class Reloaded(BaseModel):
    """What the worker serves after the reload."""

    ready: bool
    problems: list[str]
    models: dict[str, str | None] = Field(examples=[{"recommender": "3", "churn": "5"}])


@router.post("/reload", summary="Load the current champions; requests in flight finish on the old ones.")
def reload(holder: HolderDep, _: AdminCaller) -> Reloaded:
    loaded = holder.reload()
    return Reloaded(
        ready=loaded.ready,
        problems=list(loaded.problems),
        models={info.name: info.version for info in (loaded.recommender_info, loaded.churn_info)},
    )
