"""Fit the uplift learners on randomized units, choose one by Qini, evaluate the policy off-line.

Units are split three ways by a seeded shuffle: fit (60%), validation (20%: the learner with the best
Qini coefficient wins), holdout (20%: the policy's value by IPS and DR beside "no offer" and "everyone
gets X"). No unit is in two parts. The winner is refitted on fit + validation; the holdout stays unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.errors import OfferDataError
from training.offers.catalogue import Catalogue
from training.offers.data import CampaignData
from training.offers.metrics import dr_value, ips_value, qini_coefficient, uplift_by_decile
from training.offers.model import VALUE_COLUMN, OfferModel
from training.offers.policy import NONE, choose, eligibility
from training.offers.uplift import LEARNERS, FeatureEncoder, TLearner, UpliftLearner

VALUE_HORIZON = 90
"""Days of spend a retained user is worth (the churn work's value at stake)."""
POLICY = "model policy"
NO_OFFER = "no offer"


def unit_values(data_dir: str | Path, data: CampaignData) -> tuple[np.ndarray, float]:
    """Value of one unit of outcome for each unit as of its exposure day, and the default for unknowns.

    ``activity``: value at stake (expected spend over 90 days if retained, BG/NBD x Gamma-Gamma);
    ``purchase``: expected order value; ``revenue``: 1. Where the folder has no purchase history
    before the exposures (a campaign-only folder), every unit is worth the mean revenue of an active
    control unit in its outcome window (1 when the events carry no amounts).
    """
    from features.contract import load_table
    from training.value import value_at_stake

    units = data.units
    if data.outcome == "revenue":
        return np.ones(len(units)), 1.0
    events = load_table(data_dir, "events", required=True)
    assert events is not None
    column = VALUE_COLUMN[data.outcome]
    values = np.zeros(len(units))
    days = units["exposure_ts"].dt.normalize()
    for day, rows in units.groupby(days).groups.items():
        ts = pd.Timestamp(str(day))
        before = events.loc[events["ts"] < ts]
        idx = np.asarray(rows)
        if before.empty:
            continue
        found = value_at_stake(before, ts.date(), units.loc[idx, "user_id"], VALUE_HORIZON)
        values[idx] = found[column].to_numpy(dtype=float)
    values = np.nan_to_num(values, nan=0.0)
    if (values > 0).any():
        return values, float(np.median(values[values > 0]))
    fallback = _fallback_value(events, units, data.horizon)
    return np.full(len(units), fallback), fallback


def _fallback_value(events: pd.DataFrame, units: pd.DataFrame, horizon: int) -> float:
    from training.offers.data import outcomes

    control = units.loc[units["arm"] == 0]
    if "amount" not in events or control.empty:
        return 1.0
    revenue = outcomes(events, control, horizon, "revenue")
    active = outcomes(events, control, horizon, "activity") > 0
    return float(revenue[active].mean()) if active.any() and revenue[active].mean() > 0 else 1.0


@dataclass
class OfferFit:
    """A trained offer model and its evaluation on held-out randomized units.

    Attributes:
        model: The chosen learner (fitted on the fit units), calibrated on the validation units.
        learner_scores: Validation Qini coefficient of every learner tried.
        policies: Policy values on the holdout: ``policy, ips, ips_se, dr, dr_se, offered``.
        holdout: Holdout units with ``value``, ``reward``, their ``uplift_<offer>`` and ``choice``.
        deciles: Uplift by decile of the chosen learner on the holdout, per offer.
        facts: Counts and settings for the summary and the run.
    """

    model: OfferModel
    learner_scores: dict[str, float]
    policies: pd.DataFrame
    holdout: pd.DataFrame
    deciles: dict[str, pd.DataFrame]
    qini: dict[str, float]
    facts: dict[str, object] = field(default_factory=dict)


def split_units(n: int, seed: int, shares: tuple[float, float] = (0.6, 0.2)) -> np.ndarray:
    """0 = fit, 1 = validation, 2 = holdout, by a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(n)
    part = np.full(n, 2)
    a, b = int(shares[0] * n), int((shares[0] + shares[1]) * n)
    part[order[:a]] = 0
    part[order[a:b]] = 1
    return part


def mean_qini(uplift: np.ndarray, arm: np.ndarray, y: np.ndarray, value: np.ndarray | None = None) -> float:
    """Qini coefficient of each offer on its arm against control, weighted by the arm's units."""
    target = y if value is None else y * value
    scores, weights = [], []
    for k in range(uplift.shape[1]):
        rows = (arm == 0) | (arm == k + 1)
        if (arm == k + 1).sum() < 2:
            continue
        scores.append(qini_coefficient(uplift[rows, k], arm[rows] == k + 1, target[rows]))
        weights.append(rows.sum())
    return float(np.average(scores, weights=weights)) if scores else 0.0


def evaluate_policies(
    model: OfferModel,
    frame: pd.DataFrame,
    uplift: np.ndarray,
    q_model: TLearner,
    value: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """IPS and DR values per unit of the model's policy, "no offer" and "everyone gets X" on ``frame``.

    Returns:
        ``(table, the model's choice per unit as an arm, the reward per unit)``.
    """
    cat = model.catalogue
    arm = frame["arm"].to_numpy()
    y = frame["y"].to_numpy(dtype=float)
    prop = frame["propensity"].to_numpy(dtype=float)
    costs = np.r_[0.0, cat.costs]
    reward = y * value - costs[arm]
    mu = q_model.outcomes(model.encoder.transform(frame))
    q = mu * value[:, None] - costs[None, :]
    users = frame.assign(value_at_stake=value)
    allowed = eligibility(cat, users, as_of=frame["exposure_ts"].min().date())
    picked = choose(uplift, value, cat, allowed)
    choice = np.where(picked.offer == NONE, 0, picked.offer + 1)
    rows = []
    candidates = {POLICY: choice, NO_OFFER: np.zeros(len(arm), dtype=int)}
    for k, offer in enumerate(cat.offer_ids, start=1):
        candidates[f"everyone gets {offer}"] = np.full(len(arm), k)
    for name, c in candidates.items():
        ips, dr = ips_value(c, arm, prop, reward), dr_value(c, arm, prop, reward, q)
        rows.append(
            {
                "policy": name,
                "ips": ips.value,
                "ips_se": ips.se,
                "dr": dr.value,
                "dr_se": dr.se,
                "offered": float((c > 0).mean()),
            }
        )
    return pd.DataFrame(rows).set_index("policy"), choice, reward


def calibrate(uplift: np.ndarray, arm: np.ndarray, y: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """Per offer, the line ``a + b x predicted`` that best predicts the true effect on validation units.

    The transformed outcome ``y (1[offer] / e_offer - 1[control] / e_control)`` has the unit's effect as
    its mean, so an ordinary least-squares fit of it on the predicted uplift gives how much of the spread
    of the predictions is real. ``b`` is kept in ``[0, 1]``: predictions are only ever shrunk toward the
    offer's average effect, never stretched, so a learner that found noise falls back to that average.

    Returns:
        ``(K, 2)``: ``a, b`` per offer.
    """
    out = np.zeros((uplift.shape[1], 2))
    for k in range(uplift.shape[1]):
        rows = (arm == 0) | (arm == k + 1)
        t = arm[rows] == k + 1
        if t.sum() < 2 or (~t).sum() < 2:
            continue
        e_t, e_c = t.mean(), 1 - t.mean()
        z = y[rows] * (t / e_t - (~t) / e_c)
        u = uplift[rows, k]
        var = float(np.var(u))
        b = float(np.clip(np.cov(u, z, ddof=0)[0, 1] / var, 0.0, 1.0)) if var > 0 else 0.0
        out[k] = (float(z.mean() - b * u.mean()), b)
    return out


def fit_offers(
    data: CampaignData,
    values: np.ndarray,
    catalogue: Catalogue,
    *,
    default_value: float,
    seed: int = 0,
    learners: Sequence[str] = tuple(LEARNERS),
) -> OfferFit:
    """Fit every learner, keep the best by validation Qini, calibrate it and evaluate the policy.

    Raises:
        OfferDataError: Too few units for a three-way split, or an arm without units in the fit part.
    """
    units = data.units
    if len(units) < 50:
        raise OfferDataError(f"only {len(units)} campaign units with features: at least 50 are needed")
    part = split_units(len(units), seed)
    encoder = FeatureEncoder(data.features, data.categorical).fit(units.loc[part < 2])
    x = encoder.transform(units)
    arm = units["arm"].to_numpy()
    y = units["y"].to_numpy(dtype=float)
    prop = units["propensity"].to_numpy(dtype=float)
    k = len(catalogue.offer_ids)
    fit, valid, hold = part == 0, part == 1, part == 2
    scores: dict[str, float] = {}
    fitted: dict[str, UpliftLearner] = {}
    for name in learners:
        learner = LEARNERS[name](k, seed).fit(x.loc[fit], arm[fit], y[fit], prop[fit])
        scores[name] = mean_qini(learner.predict(x.loc[valid]), arm[valid], y[valid])
        fitted[name] = learner
    best = max(scores, key=lambda name: (scores[name], name == "t_learner"))
    chosen = fitted[best]
    calibration = calibrate(chosen.predict(x.loc[valid]), arm[valid], y[valid], prop[valid])
    train = part < 2
    q_model = TLearner(k, seed).fit(x.loc[train], arm[train], y[train], prop[train])
    model = OfferModel(
        learner=chosen,
        encoder=encoder,
        catalogue=catalogue,
        outcome=data.outcome,
        horizon=data.horizon,
        default_value=default_value,
        calibration=calibration,
    )
    frame = units.loc[hold].reset_index(drop=True)
    uplift = model.predict_uplift(frame)
    policies, choice, reward = evaluate_policies(model, frame, uplift, q_model, values[hold])
    holdout = frame[["user_id", "experiment", "variant", "arm", "propensity", "y"]].assign(
        value=values[hold], reward=reward, choice=choice
    )
    for j, offer in enumerate(catalogue.offer_ids):
        holdout[f"uplift_{offer}"] = uplift[:, j]
    deciles, qini = {}, {}
    ah, yh = holdout["arm"].to_numpy(), holdout["y"].to_numpy(dtype=float)
    for j, offer in enumerate(catalogue.offer_ids):
        rows = (ah == 0) | (ah == j + 1)
        if (ah == j + 1).sum() >= 2 and (ah == 0).sum() >= 2:
            deciles[offer] = uplift_by_decile(uplift[rows, j], ah[rows] == j + 1, yh[rows])
            qini[offer] = qini_coefficient(uplift[rows, j], ah[rows] == j + 1, yh[rows])
    facts: dict[str, object] = {
        "campaigns": data.experiments,
        "units": len(units),
        "fit units": int(fit.sum()),
        "validation units": int(valid.sum()),
        "holdout units": int(hold.sum()),
        "learner": best,
        "outcome": f"{data.outcome} over {data.horizon} days",
        **{f"left out: {reason}": count for reason, count in data.excluded.items()},
    }
    return OfferFit(
        model=model,
        learner_scores=scores,
        policies=policies,
        holdout=holdout,
        deciles=deciles,
        qini=qini,
        facts=facts,
    )
