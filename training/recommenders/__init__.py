"""Recommender families behind one interface (see :mod:`training.recommenders.base`)."""

from __future__ import annotations

from training.recommenders.als import ALSRecommender
from training.recommenders.base import RecommenderModel
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

__all__ = [
    "FAMILIES",
    "ALSRecommender",
    "BPRRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularityRecommender",
    "RecommenderModel",
]
