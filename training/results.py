"""What a training run did, as data: the command line and the API format it, the library never does."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class TrainOutcome:
    """One model kind trained, evaluated beside its baselines, logged and put through promotion.

    Attributes:
        kind: ``churn``, ``propensity`` or ``recommender``.
        run_id: The MLflow run that holds parameters, metrics and plots.
        model_uri: The logged model.
        version: Its registered version.
        alias: ``champion`` or ``challenger``.
        decision: Why, in one sentence (the new score against the champion's on the same holdout).
        metrics: Model and baselines side by side on the holdout: one row per model, one column per metric.
        facts: What the run was fitted and checked on (dates, row counts, the chosen settings), by name.
    """

    kind: str
    run_id: str
    model_uri: str
    version: str
    alias: str
    decision: str
    metrics: pd.DataFrame
    facts: dict[str, object] = field(default_factory=dict)
