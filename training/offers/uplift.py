"""Uplift models for several offers at once, behind one small interface: ``fit`` then ``predict`` an
``(n, K)`` matrix of each offer's effect on the outcome against no offer.

* :class:`TLearner`: one outcome model per arm; uplift = treated model - control model.
* :class:`XLearner`: T-learner outcome models, then each arm's imputed effects (treated: outcome minus the
  control model; control: the arm's model minus outcome) regressed on the features and blended by the
  arm's share (Kunzel et al. 2019).
* :class:`DRLearner`: the doubly-robust pseudo-outcome (outcome models cross-fitted on two folds, the
  known randomization propensities) regressed on the features (Kennedy 2020).

All use small LightGBM regressors (few shallow trees): campaigns are small and effects are a few points.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from training.errors import OfferDataError

LGB_PARAMS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 8,
    "min_child_samples": 40,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 5.0,
    "verbose": -1,
    "n_jobs": 1,
}
EFFECT_PARAMS: dict[str, Any] = {**LGB_PARAMS, "n_estimators": 80, "num_leaves": 4, "min_child_samples": 100}
"""Effect models see a much noisier target than outcome models: smaller still."""


class FeatureEncoder:
    """The model matrix: numbers as floats, categories with the categories seen in fitting (others NaN)."""

    def __init__(self, features: list[str], categorical: list[str]) -> None:
        self.features = features
        self.categorical = categorical

    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        self.categories_ = {
            c: sorted(frame[c].dropna().astype(str).unique()) if c in frame else [] for c in self.categorical
        }
        return self

    def _codes(self, column: str, values: pd.Series) -> np.ndarray:
        """Category codes of ``values`` as text (-1 for missing or unseen in fitting)."""
        codes = np.asarray(pd.Index(self.categories_[column]).get_indexer(values.astype(str).to_numpy()))
        codes[values.isna().to_numpy()] = -1
        return codes

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The same inputs as :meth:`transform` as one float matrix (categories as their codes, unknown
        as NaN): what the boosters read, without pandas' per-call overhead (one user in well under 1 ms)."""
        out = np.full((len(frame), len(self.features)), np.nan)
        numbers = [j for j, c in enumerate(self.features) if c not in self.categorical and c in frame]
        try:  # numeric columns in one step when they already are numbers (the usual case)
            block = frame[[self.features[j] for j in numbers]].to_numpy(dtype=float, na_value=np.nan)
            out[:, numbers] = block
            done = set(numbers)
        except (TypeError, ValueError):
            done = set()
        for j, c in enumerate(self.features):
            if c not in frame or j in done:
                continue
            values = frame[c]
            if c in self.categorical:
                codes = self._codes(c, values)
                out[:, j] = np.where(codes >= 0, codes, np.nan)
            else:
                out[:, j] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        return out

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        out: dict[str, Any] = {}
        for c in self.features:
            values = frame[c] if c in frame else pd.Series(np.nan, index=frame.index)
            if c in self.categorical:
                out[c] = pd.Categorical.from_codes(
                    self._codes(c, values).tolist(), categories=pd.Index(self.categories_[c])
                )
            else:
                out[c] = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy()
        return pd.DataFrame(out, index=frame.index)


def _regressor(x: pd.DataFrame, y: np.ndarray, seed: int, params: dict[str, Any]) -> lgb.LGBMRegressor:
    model = lgb.LGBMRegressor(**{**params, "random_state": seed})
    model.fit(x, y)
    return model


def _check(arm: np.ndarray, n_offers: int) -> None:
    counts = np.bincount(arm, minlength=n_offers + 1)
    if counts[0] < 2:
        raise OfferDataError("the campaigns have no control unit to fit")
    if (counts[1:] < 2).all():
        raise OfferDataError("the campaigns have no unit given an offer to fit")


class UpliftLearner:
    """The shared interface: ``fit(x, arm, y, propensity)`` returns ``self``; ``predict(x)`` the uplifts.

    Args:
        n_offers: Offers (arms 1..K; arm 0 is control).
        seed: Seed of every fitted model.
    """

    name = "base"

    def __init__(self, n_offers: int, seed: int = 0) -> None:
        self.n_offers = n_offers
        self.seed = seed

    def fit(
        self, x: pd.DataFrame, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray
    ) -> UpliftLearner:  # pragma: no cover - interface
        raise NotImplementedError

    def predict(self, x: Inputs) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def _arm_models(x: pd.DataFrame, arm: np.ndarray, y: np.ndarray, n_offers: int, seed: int) -> list[Any]:
    """One outcome model per arm (a constant where an arm has too few units)."""
    models: list[Any] = []
    for k in range(n_offers + 1):
        rows = arm == k
        if rows.sum() < 2 * LGB_PARAMS["min_child_samples"]:
            models.append(float(y[rows].mean()) if rows.any() else float(y[arm == 0].mean()))
        else:
            models.append(_regressor(x.loc[rows], y[rows], seed + k, LGB_PARAMS))
    return models


Inputs = pd.DataFrame | np.ndarray
"""What learners predict from: :meth:`FeatureEncoder.transform`'s frame or :meth:`FeatureEncoder.matrix`."""


def as_matrix(x: Inputs) -> np.ndarray:
    """An encoded frame as the boosters' float matrix (categories as codes, missing as NaN)."""
    if isinstance(x, np.ndarray):
        return x
    out = np.empty((len(x), x.shape[1]))
    for j, c in enumerate(x.columns):
        col = x[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy()
            out[:, j] = np.where(codes >= 0, codes, np.nan)
        else:
            out[:, j] = col.to_numpy(dtype=float)
    return out


def _predict(model: Any, x: Inputs) -> np.ndarray:
    if isinstance(model, float):
        return np.full(len(x), model)
    # the booster on a plain matrix: the same trees and category codes as the fitted frame, without the
    # wrapper's pandas checks (they cost milliseconds per call)
    matrix = as_matrix(x)
    # one thread for a few rows (starting threads costs more than the trees), all cores for a batch
    threads = 1 if len(matrix) < 2000 else 0
    out: np.ndarray = np.asarray(model.booster_.predict(matrix, num_threads=threads), dtype=float)
    return out


class TLearner(UpliftLearner):
    """One outcome model per arm; an offer's uplift is its model minus the control model."""

    name = "t_learner"

    def fit(self, x: pd.DataFrame, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> TLearner:
        _check(arm, self.n_offers)
        self.outcome_models_ = _arm_models(x, arm, y, self.n_offers, self.seed)
        return self

    def outcomes(self, x: Inputs) -> np.ndarray:
        """Predicted outcome under each arm, ``(n, K + 1)`` (column 0: no offer)."""
        return np.column_stack([_predict(m, x) for m in self.outcome_models_])

    def predict(self, x: Inputs) -> np.ndarray:
        mu = self.outcomes(x)
        out: np.ndarray = mu[:, 1:] - mu[:, :1]
        return out


class XLearner(UpliftLearner):
    """Imputed effects per arm, regressed on the features, blended by the arm's share against control."""

    name = "x_learner"

    def fit(self, x: pd.DataFrame, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> XLearner:
        _check(arm, self.n_offers)
        base = TLearner(self.n_offers, self.seed).fit(x, arm, y, propensity)
        mu = base.outcomes(x)
        control = arm == 0
        self.effect_models_: list[tuple[Any, Any, float]] = []
        for k in range(1, self.n_offers + 1):
            treated = arm == k
            if treated.sum() < 2:
                self.effect_models_.append((0.0, 0.0, 0.5))
                continue
            d1 = y[treated] - mu[treated, 0]
            d0 = mu[control, k] - y[control]
            m1 = _effect_model(x.loc[treated], d1, self.seed + 10 * k)
            m0 = _effect_model(x.loc[control], d0, self.seed + 10 * k + 1)
            share = float(treated.sum() / (treated.sum() + control.sum()))
            self.effect_models_.append((m0, m1, share))
        return self

    def predict(self, x: Inputs) -> np.ndarray:
        cols = [g * _predict(m0, x) + (1 - g) * _predict(m1, x) for m0, m1, g in self.effect_models_]
        return np.column_stack(cols)


def _effect_model(x: pd.DataFrame, target: np.ndarray, seed: int) -> Any:
    if len(target) < 2 * EFFECT_PARAMS["min_child_samples"]:
        return float(target.mean())
    return _regressor(x, target, seed, EFFECT_PARAMS)


class DRLearner(UpliftLearner):
    """The doubly-robust pseudo-outcome of each offer, cross-fitted on two folds, regressed on features."""

    name = "dr_learner"

    def fit(self, x: pd.DataFrame, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> DRLearner:
        _check(arm, self.n_offers)
        rng = np.random.default_rng(self.seed)
        fold = rng.integers(0, 2, len(y))
        mu = np.zeros((len(y), self.n_offers + 1))
        for f in (0, 1):
            other = fold != f
            model = TLearner(self.n_offers, self.seed + f).fit(
                x.loc[other], arm[other], y[other], propensity[other]
            )
            mu[fold == f] = model.outcomes(x.loc[fold == f])
        e = _arm_shares(arm, self.n_offers)
        control = arm == 0
        self.effect_models_: list[Any] = []
        for k in range(1, self.n_offers + 1):
            treated = arm == k
            pseudo = mu[:, k] - mu[:, 0] + treated * (y - mu[:, k]) / e[k] - control * (y - mu[:, 0]) / e[0]
            self.effect_models_.append(_effect_model(x, pseudo, self.seed + 10 * k))
        return self

    def predict(self, x: Inputs) -> np.ndarray:
        out: np.ndarray = np.column_stack([_predict(m, x) for m in self.effect_models_])
        return out


def _arm_shares(arm: np.ndarray, n_offers: int) -> np.ndarray:
    counts = np.bincount(arm, minlength=n_offers + 1).astype(float)
    shares: np.ndarray = np.maximum(counts / counts.sum(), 1e-9)
    return shares


LEARNERS: dict[str, type[UpliftLearner]] = {
    TLearner.name: TLearner,
    XLearner.name: XLearner,
    DRLearner.name: DRLearner,
}
