"""How to read an experiment: one frozen set of options, built where a request comes in, passed down whole.

The command line (and the API) builds an :class:`AnalysisOptions` once from what the user asked for;
:func:`experiments.analysis.analyze`, :func:`experiments.over_time.effect_over_time` and the service
functions take it whole, as gbstats' ``AnalysisSettingsForStatsEngine`` travels through its engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from experiments.errors import DataError
from experiments.metrics import parse_metric

Correction = Literal["holm", "bh", "none"]
"""Multiple-testing correction across the primary metric × variant comparisons."""

CORRECTIONS: tuple[Correction, ...] = get_args(Correction)
DEFAULT_METRICS = ("conversion", "revenue", "orders")


def parse_correction(text: str) -> Correction:
    """Read a correction name as typed (``holm``, ``bh`` or ``none``).

    Raises:
        DataError: It is none of them.
    """
    for name in CORRECTIONS:
        if text == name:
            return name
    raise DataError(f"unknown correction {text!r}; use {', '.join(CORRECTIONS)}")


@dataclass(frozen=True)
class AnalysisOptions:
    """What to measure and how, for one read of an experiment.

    Args:
        metrics: Primary metric names (see :mod:`experiments.metrics`). Empty: the experiment's own
            metrics when the store defines them, else ``conversion, revenue, orders``.
        guardrails: Guardrail metric names, watched for harm and kept out of the correction's family.
        window_days: Days after a unit's first exposure that count; None = to the end of the data.
        cuped: Adjust non-ratio metrics with the same metric before exposure (CUPED).
        pre_days: Length of the pre-exposure period for CUPED, in days.
        control: Name of the baseline variant.
        alpha: 1 - confidence level of the intervals and the always-valid sequences.
        correction: ``holm``, ``bh`` (Benjamini–Hochberg) or ``none``.
        planned_n: Planned number of units, fixed before the test, where the always-valid interval is
            tightest; None = the units seen so far.

    Raises:
        DataError: A metric name is unknown or a value is out of its range.
    """

    metrics: tuple[str, ...] = ()
    guardrails: tuple[str, ...] = ()
    window_days: float | None = None
    cuped: bool = False
    pre_days: float = 14.0
    control: str = "control"
    alpha: float = 0.05
    correction: Correction = "holm"
    planned_n: int | None = None

    def __post_init__(self) -> None:
        # Lists are welcome from callers; the frozen options keep tuples.
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "guardrails", tuple(self.guardrails))
        for name in (*self.metrics, *self.guardrails):
            parse_metric(name)
        parse_correction(self.correction)
        if not 0.0 < self.alpha < 1.0:
            raise DataError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.window_days is not None and not self.window_days > 0:
            raise DataError(f"the window must be a positive number of days, got {self.window_days}")
        if not self.pre_days > 0:
            raise DataError(f"the CUPED period must be a positive number of days, got {self.pre_days}")
        if self.planned_n is not None and self.planned_n < 1:
            raise DataError(f"planned units must be at least 1, got {self.planned_n}")

    @property
    def primary(self) -> tuple[str, ...]:
        """The primary metrics to read: those asked for, else ``conversion, revenue, orders``."""
        return self.metrics or DEFAULT_METRICS
