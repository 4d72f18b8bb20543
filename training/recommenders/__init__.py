"""Recommender families behind one interface (see :mod:`training.recommenders.base`)."""

from __future__ import annotations

from training.recommenders.als import ALSRecommender
from training.recommenders.base import RecommenderModel
from training.recommenders.bpr import BPRRecommender
from training.recommenders.ease import EASERecommender
from training.recommenders.families import FAMILIES, load_model
from training.recommenders.itemknn import ItemKNNRecommender
from training.recommenders.popularity import PopularityRecommender

__all__ = [
    "FAMILIES",
    "ALSRecommender",
    "BPRRecommender",
    "EASERecommender",
    "ItemKNNRecommender",
    "PopularityRecommender",
    "RecommenderModel",
    "load_model",
]
