"""The fitted next-best-offer model: uplift learner, catalogue and value rule, and what it chooses.

This is the API the command line and the HTTP layer call::

    model = load_offer_model(tracking_uri)     # None when no `offers` model is registered
    table = model.choose(features, as_of=day)  # user_id, offer_id, uplift_<offer>..., expected_value, reason

``features`` is a feature snapshot (``features.job.build_features`` or the online store's rows): the
model reads its own input columns and, when present, ``value_at_stake`` (activity outcome) or
``expected_order_value`` (purchase outcome) for the value of one unit of outcome.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from training.offers.catalogue import Catalogue, offer_name
from training.offers.policy import NONE, choose, eligibility
from training.offers.uplift import FeatureEncoder, UpliftLearner

MODEL_NAME = "offers"
VALUE_COLUMN = {"activity": "value_at_stake", "purchase": "expected_order_value", "revenue": ""}
"""The column holding the value of one unit of each outcome (``revenue`` is money already)."""


@dataclass
class OfferModel:
    """A fitted uplift learner with the catalogue and the value rule it chooses by.

    Attributes:
        learner: The fitted uplift learner (``predict`` -> ``(n, K)``).
        encoder: Builds its input matrix from a feature frame.
        catalogue: The offers in the learner's column order, with their rules.
        outcome: ``activity``, ``purchase`` or ``revenue``.
        horizon: Outcome window in days.
        default_value: Value of one unit of outcome for a user whose own is unknown.
        calibration: ``(K, 2)`` line ``a + b x raw`` per offer applied to the learner's predictions.
        margin: Expected value after cost an offer must exceed to be given (chosen on validation units;
            ``inf``: the campaigns showed no offer worth giving).
        version: Registered version (set when loaded from the registry).
    """

    learner: UpliftLearner
    encoder: FeatureEncoder
    catalogue: Catalogue
    outcome: str
    horizon: int
    default_value: float
    calibration: np.ndarray | None = None
    margin: float = 0.0
    version: str = ""
    name: str = MODEL_NAME

    @property
    def offer_ids(self) -> list[str]:
        return self.catalogue.offer_ids

    def predict_uplift(self, features: pd.DataFrame) -> np.ndarray:
        """Each offer's predicted effect on the outcome, ``(n, K)``."""
        if features.empty:
            return np.zeros((0, len(self.offer_ids)))
        raw = np.asarray(self.learner.predict(self.encoder.matrix(features)), dtype=float)
        if self.calibration is None:
            return raw
        out: np.ndarray = self.calibration[None, :, 0] + self.calibration[None, :, 1] * raw
        return out

    def values(self, features: pd.DataFrame) -> np.ndarray:
        """Value of one unit of outcome per user (money per retained user, per order, or 1 for revenue)."""
        column = VALUE_COLUMN.get(self.outcome, "")
        if not column:
            return np.ones(len(features))
        if column not in features:
            return np.full(len(features), self.default_value)
        own = pd.to_numeric(features[column], errors="coerce").to_numpy(dtype=float)
        return np.where(np.isfinite(own) & (own > 0), own, self.default_value)

    def choose(
        self,
        features: pd.DataFrame,
        *,
        as_of: date | None = None,
        history: pd.DataFrame | None = None,
        budget: float | None = None,
        allowed: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """The next-best offer for each row of ``features``.

        Args:
            features: ``user_id`` and the model's inputs (missing inputs count as unknown).
            as_of: Day the offers are given, for validity and cooldowns (default: today, UTC).
            history: Past exposures ``user_id, variant, ts`` for cooldowns and caps.
            budget: Total cost allowed; best value per unit of cost first.
            allowed: :meth:`allowed` for the same rows, day and history, when the caller needs it too.

        Returns:
            ``user_id, offer_id`` (``""`` for none), ``uplift_<offer>`` per offer, ``expected_value``,
            ``reason``.
        """
        day = as_of or datetime.now(UTC).date()
        uplift = self.predict_uplift(features)
        value = self.values(features)
        if allowed is None:
            allowed = self.allowed(features, as_of=day, history=history, value=value)
        picked = choose(uplift, value, self.catalogue, allowed, budget=budget, margin=self.margin)
        ids = np.array(self.offer_ids, dtype=object)
        out = pd.DataFrame({"user_id": features["user_id"].astype(str).to_numpy()})
        out["offer_id"] = np.where(picked.offer >= 0, ids[np.maximum(picked.offer, 0)], "")
        for k, offer in enumerate(self.offer_ids):
            out[f"uplift_{offer}"] = uplift[:, k]
        out["expected_value"] = np.round(picked.expected_value, 4)
        out["reason"] = reasons(self, uplift, picked.offer, picked.gain, allowed, picked.over_budget)
        return out

    def allowed(
        self,
        features: pd.DataFrame,
        *,
        as_of: date,
        history: pd.DataFrame | None = None,
        value: np.ndarray | None = None,
    ) -> np.ndarray:
        """Which offer the catalogue's rules allow each row of ``features`` as of ``as_of``, ``(n, K)``:
        eligibility, validity, cooldowns and caps (``value``: :meth:`values`, when already computed)."""
        if self.outcome == "activity":
            features = features.assign(value_at_stake=self.values(features) if value is None else value)
        return eligibility(self.catalogue, features, as_of=as_of, history=history)

    def save(self, path: str | Path) -> Path:
        """Write the model to one file (pickle; LightGBM boosters included)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return path

    @staticmethod
    def load(path: str | Path) -> OfferModel:
        """Read a model written by :meth:`save` (only files this product wrote: pickle runs code)."""
        with open(path, "rb") as handle:
            model = pickle.load(handle)
        if not isinstance(model, OfferModel):
            raise TypeError(f"{path} does not hold an offer model")
        return model


def effect_text(model: OfferModel, uplift: float) -> str:
    """An offer's effect as a person reads it: ``+6.1 pts 30-day activity`` or ``+3.20 30-day revenue``."""
    scale, unit = _effect_unit(model)
    return f"{scale * uplift:+.{2 if scale == 1 else 1}f} {unit}"


def _effect_unit(model: OfferModel) -> tuple[float, str]:
    h = model.horizon
    if model.outcome == "revenue":
        return 1.0, f"{h}-day revenue"
    what = "activity" if model.outcome == "activity" else "purchase rate"
    return 100.0, f"pts {h}-day {what}"


def reasons(
    model: OfferModel,
    uplift: np.ndarray,
    offer: np.ndarray,
    gain: np.ndarray,
    allowed: np.ndarray,
    over_budget: np.ndarray,
) -> list[str]:
    """One line per user that says what was chosen and why, in plain words."""
    names = [offer_name(o) for o in model.offer_ids]
    scale, unit = _effect_unit(model)
    digits = 2 if scale == 1 else 1
    n = len(offer)
    # the offer each line speaks of: the chosen one, else the best allowed one (vectorized: 1M users)
    best = np.argmax(np.where(allowed, gain, -np.inf), axis=1) if gain.shape[1] else np.zeros(n, dtype=int)
    about = np.where(offer != NONE, offer, best)
    rows = np.arange(n)
    effect = (scale * uplift[rows, about]).tolist() if gain.shape[1] else [0.0] * n
    worth = gain[rows, about].tolist() if gain.shape[1] else [0.0] * n
    chosen: list[bool] = (offer != NONE).tolist()
    any_allowed: list[bool] = np.asarray(allowed.any(axis=1), dtype=bool).tolist()
    over: list[bool] = over_budget.tolist()
    about_list: list[int] = about.tolist()
    out = []
    for i in range(n):
        name, e, w = names[about_list[i]] if names else "", effect[i], worth[i]
        if chosen[i]:
            out.append(f"{name}: {e:+.{digits}f} {unit}, worth {w:.2f} after cost")
        elif not any_allowed[i]:
            out.append("no offer: none is allowed now (validity, eligibility, cooldown or cap)")
        elif over[i]:
            out.append(f"no offer: over the budget ({name} worth {w:.2f} after cost)")
        elif w > 0:
            out.append(
                f"no offer: not worth its cost with enough certainty (best {name}: {e:+.{digits}f} {unit}, "
                f"{w:.2f} after cost)"
            )
        else:
            out.append(
                f"no offer: none is worth its cost (best {name}: {e:+.{digits}f} {unit}, {w:.2f} after cost)"
            )
    return out
