"""The MLflow ``pyfunc`` flavour of a :class:`~training.recommenders.service.Recommender`.

Kept apart so that importing the recommenders loads no MLflow; the class lives at module level so the
logged model refers to it by name instead of carrying a pickled copy of its code.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc.model import PythonModel

from training.recommenders.service import Recommender


class RecommenderPyfunc(PythonModel):
    """The logged artifact is a saved :class:`Recommender` folder under the name ``recommender``.

    ``predict`` takes a frame with ``user_id`` (params: ``k``, default 10) and returns
    ``user_id, rank, item_id, score``.
    """

    recommender: Recommender

    def load_context(self, context: Any) -> None:
        """Read the saved recommender from the logged artifacts."""
        self.recommender = Recommender.load(context.artifacts["recommender"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Top-k rows for each ``user_id`` of ``model_input``."""
        k = int((params or {}).get("k", 10))
        return self.recommender.recommend_frame(model_input["user_id"].astype(str), k)
