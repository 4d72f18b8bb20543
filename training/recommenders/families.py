"""The recommender families by name, and reading a saved model of any of them.

Kept apart from :mod:`training.recommenders.base` so that the interface knows no family: each family
imports the base, this registry imports the families, and nothing imports back.
"""

from __future__ import annotations

from pathlib import Path

from training.recommenders.als import ALSRecommender
from training.recommenders.base import RecommenderModel, saved_family
from training.recommenders.bpr import BPRRecommender
from training.recommenders.ease import EASERecommender
from training.recommenders.itemknn import ItemKNNRecommender
from training.recommenders.popularity import PopularityRecommender

FAMILIES: dict[str, type[RecommenderModel]] = {
    "als": ALSRecommender,
    "bpr": BPRRecommender,
    "itemknn": ItemKNNRecommender,
    "ease": EASERecommender,
    "popularity": PopularityRecommender,
}
"""Every family by the name its saved files and the training grid use."""


def load_model(path: str | Path) -> RecommenderModel:
    """Read a model written by :meth:`RecommenderModel.save`, whichever family it is.

    Raises:
        ValueError: The file names a family this version does not know.
    """
    family = saved_family(path)
    if family not in FAMILIES:
        raise ValueError(f"{path}: unknown recommender family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family].load(path)
