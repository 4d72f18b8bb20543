"""Fit the uplift learners on randomized units, choose one by Qini, evaluate the policy off-line.

Units are split by a hash of their ids: 80% to learn from, 20% held out. The 80% are cross-fitted in two
folds: every unit gets uplift predictions from models that never saw it, and the learner with the best
Qini coefficient on those predictions wins; its uplifts are calibrated (:func:`calibrate`) and the margin
an offer's expected value must clear is chosen (:func:`choose_margin`) on them, each fold's calibration
fitted on the other fold. The winner is then fitted on all 80%. The holdout stays unseen until the
policy's value is estimated on it (IPS and DR, beside "no offer" and "everyone gets X").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        model: The chosen learner fitted on the 80% learned from, calibrated on its out-of-fold uplifts.
        learner_scores: Validation Qini coefficient of every learner tried.
        policies: Policy values on the holdout: ``policy, ips, ips_se, dr, dr_se, offered``.
        holdout: Holdout units with ``value``, ``reward``, their ``uplift_<offer>`` and ``choice``.
        deciles: Uplift by decile of the chosen learner on the holdout, per offer.
        qini: Qini coefficient of each offer on the holdout.
        margins: Each margin tried on the out-of-fold uplifts: its gain over "no offer" and standard error.
        facts: Counts and settings for the summary and the run.
    """

    model: OfferModel
    learner_scores: dict[str, float]
    policies: pd.DataFrame
    holdout: pd.DataFrame
    deciles: dict[str, pd.DataFrame]
    qini: dict[str, float]
    margins: pd.DataFrame = field(default_factory=pd.DataFrame)
    facts: dict[str, object] = field(default_factory=dict)


def unit_draws(user_ids: pd.Series, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per unit from a hash of its id and ``salt``: the same unit always lands
    in the same part, and no random generator shared with the data can line the parts up with it."""
    hashed = pd.util.hash_pandas_object(user_ids.astype(str) + "#" + salt, index=False).to_numpy()
    draws: np.ndarray = (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)
    return draws


def split_units(user_ids: pd.Series, seed: int, shares: tuple[float, float] = (0.5, 0.3)) -> np.ndarray:
    """0 and 1 = learned from (cross-fitted), 2 = holdout, by a hash of each unit's id and the seed."""
    draw = unit_draws(user_ids, f"split{seed}")
    return np.where(draw < shares[0], 0, np.where(draw < shares[0] + shares[1], 1, 2))


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
    picked = choose(uplift, value, cat, allowed, margin=model.margin)
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


def calibrate(
    uplift: np.ndarray, arm: np.ndarray, y: np.ndarray, mu: np.ndarray, weight: np.ndarray | None = None
) -> np.ndarray:
    """Per offer, the line ``a + b x predicted`` that best predicts the true effect on units the
    predictions were not fitted on.

    The doubly-robust pseudo-outcome ``mu_k - mu_0 + 1[offer] (y - mu_k) / e_k - 1[control] (y - mu_0) /
    e_0`` has the unit's effect as its mean (``mu``: outcome models fitted on other units), so a weighted
    least-squares fit of it on the predicted uplift says how much of the spread of the predictions is
    real. Weights are the units' values (a wrong uplift costs most where a unit is worth most). ``b`` is
    kept in ``[0, 1]``: predictions are only ever shrunk toward the offer's average effect, never
    stretched, so a learner that found noise falls back to that average.

    Returns:
        ``(K, 2)``: ``a, b`` per offer.
    """
    w_all = np.ones(len(y)) if weight is None else np.maximum(np.asarray(weight, dtype=float), 0.0)
    out = np.zeros((uplift.shape[1], 2))
    for k in range(uplift.shape[1]):
        rows = (arm == 0) | (arm == k + 1)
        t = arm[rows] == k + 1
        if t.sum() < 2 or (~t).sum() < 2 or w_all[rows].sum() <= 0:
            continue
        e_t, e_c = t.mean(), 1 - t.mean()
        m1, m0, yy = mu[rows, k + 1], mu[rows, 0], y[rows]
        z = m1 - m0 + t * (yy - m1) / e_t - (~t) * (yy - m0) / e_c
        u, w = uplift[rows, k], w_all[rows]
        u_bar, z_bar = np.average(u, weights=w), np.average(z, weights=w)
        var = float(np.average((u - u_bar) ** 2, weights=w))
        cov = float(np.average((u - u_bar) * (z - z_bar), weights=w))
        slope = float(np.clip(cov / var, 0.0, 1.0)) if var > 0 else 0.0
        out[k] = (float(z_bar - slope * u_bar), slope)
    return out


SAFETY_SE = 2.0
"""How many standard errors a policy's gain must clear on out-of-fold uplifts: over "no offer" for any offer
to be given, and over the policy of the smallest such margin for a larger margin to be kept (the best of
several policies looks better than it is, and offers cost money)."""
MARGINS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
"""Margins tried, in units of the mean offer cost: the policy gives an offer only above the margin."""


def choose_margin(
    catalogue: Catalogue, frame: pd.DataFrame, uplift: np.ndarray, mu: np.ndarray, value: np.ndarray
) -> tuple[float, pd.DataFrame]:
    """The margin of the policy: the smallest margin whose DR gain over "no offer" on out-of-fold units
    clears :data:`SAFETY_SE` standard errors of the paired difference (usually 0: an offer whenever its
    expected value after cost is positive); a larger margin only when its gain over that policy clears
    :data:`SAFETY_SE` standard errors too (the largest such gain); ``inf`` (no offer) when no margin's
    gain over "no offer" is credible.

    Args:
        catalogue: The offers.
        frame: Validation units (``arm, propensity, y``).
        uplift: Their calibrated uplifts, each from a calibration fitted on other units.
        mu: Their predicted outcome under each arm (models fitted on other units), ``(n, K + 1)``.
        value: Their value of one unit of outcome.

    Returns:
        ``(margin, table of margin, gain over no offer and its standard error, gain over the smallest
        credible margin's policy and its standard error)``.
    """
    cat = catalogue
    arm = frame["arm"].to_numpy()
    prop = frame["propensity"].to_numpy(dtype=float)
    costs = np.r_[0.0, cat.costs]
    reward = frame["y"].to_numpy(dtype=float) * value - costs[arm]
    q = mu * value[:, None] - costs[None, :]
    allowed = np.ones(uplift.shape, dtype=bool)
    rows = np.arange(len(arm))

    def terms(choice: np.ndarray) -> np.ndarray:
        match = choice == arm
        out: np.ndarray = q[rows, choice] + np.where(match, (reward - q[rows, arm]) / prop, 0.0)
        return out

    def mean_se(diff: np.ndarray) -> tuple[float, float]:
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("inf")
        return float(diff.mean()) if len(diff) else 0.0, se

    none = terms(np.zeros(len(arm), dtype=int))
    scale = float(np.mean(cat.costs)) if len(cat.costs) and np.mean(cat.costs) > 0 else 1.0
    margins = [m * scale for m in MARGINS]
    gains = []
    for margin in margins:
        picked = choose(uplift, value, cat, allowed, margin=margin)
        gains.append(terms(np.where(picked.offer == NONE, 0, picked.offer + 1)) - none)
    stats = [mean_se(g) for g in gains]
    columns = ["margin", "gain_over_no_offer", "se", "gain_over_base", "se_over_base"]
    found = pd.DataFrame(
        {"margin": margins, "gain_over_no_offer": [m for m, _ in stats], "se": [s for _, s in stats]}
    )
    credible = [i for i, (m, s) in enumerate(stats) if m - SAFETY_SE * s > 0]
    if not credible:
        found["gain_over_base"], found["se_over_base"] = np.nan, np.nan
        return float("inf"), found[columns]
    base = credible[0]
    over = [mean_se(g - gains[base]) for g in gains]
    found["gain_over_base"] = [m for m, _ in over]
    found["se_over_base"] = [s for _, s in over]
    better = [i for i in range(base + 1, len(gains)) if over[i][0] - SAFETY_SE * over[i][1] > 0]
    pick = max(better, key=lambda i: over[i][0]) if better else base
    return margins[pick], found[columns]


def fit_offers(
    data: CampaignData,
    values: np.ndarray,
    catalogue: Catalogue,
    *,
    default_value: float,
    seed: int = 0,
    learners: Sequence[str] = tuple(LEARNERS),
) -> OfferFit:
    """Fit every learner, keep the best by out-of-fold Qini, calibrate it, choose the margin, evaluate.

    Raises:
        OfferDataError: Too few units for a three-way split, or an arm without units in the fit part.
    """
    units = data.units
    if len(units) < 50:
        raise OfferDataError(f"only {len(units)} campaign units with features: at least 50 are needed")
    part = split_units(units["user_id"], seed)
    encoder = FeatureEncoder(data.features, data.categorical).fit(units.loc[part < 2])
    x = encoder.transform(units)
    arm = units["arm"].to_numpy()
    y = units["y"].to_numpy(dtype=float)
    prop = units["propensity"].to_numpy(dtype=float)
    k = len(catalogue.offer_ids)
    pool, hold = part < 2, part == 2
    # two-fold cross-fitting over the units learned from: every one of them gets predictions from
    # models that never saw it, so the Qini, the calibration and the margin are judged on all of them
    fold = (unit_draws(units["user_id"], f"fold{seed}") < 0.5).astype(int)

    def out_of_fold(make: Callable[[int], UpliftLearner], outcomes: bool = False) -> np.ndarray:
        width = k + 1 if outcomes else k
        out = np.zeros((len(units), width))
        for f in (0, 1):
            train, check = pool & (fold != f), pool & (fold == f)
            model = make(f).fit(x.loc[train], arm[train], y[train], prop[train])
            if outcomes:
                assert isinstance(model, TLearner)
                out[check] = model.outcomes(x.loc[check])
            else:
                out[check] = model.predict(x.loc[check])
        return out[pool]

    scores: dict[str, float] = {}
    predicted: dict[str, np.ndarray] = {}
    ap, yp, vp = arm[pool], y[pool], values[pool]
    for name in learners:
        predicted[name] = out_of_fold(lambda f, name=name: LEARNERS[name](k, seed + f))  # type: ignore[misc]
        scores[name] = mean_qini(predicted[name], ap, yp)
    best = max(scores, key=lambda name: (scores[name], name == "t_learner"))
    raw = predicted[best]
    mu = out_of_fold(lambda f: TLearner(k, seed + f), outcomes=True)
    # the margin is judged on uplifts calibrated on the other fold, so a calibration's own fit to the
    # units it is judged on does not flatter the policy
    side_of = fold[pool]
    crossed = np.zeros_like(raw)
    for f in (0, 1):
        other, mine = side_of != f, side_of == f
        line = calibrate(raw[other], ap[other], yp[other], mu[other], vp[other])
        crossed[mine] = line[None, :, 0] + line[None, :, 1] * raw[mine]
    margin, margins = choose_margin(catalogue, units.loc[pool].reset_index(drop=True), crossed, mu, vp)
    chosen = LEARNERS[best](k, seed).fit(x.loc[pool], ap, yp, prop[pool])
    q_model = (
        chosen if isinstance(chosen, TLearner) else TLearner(k, seed).fit(x.loc[pool], ap, yp, prop[pool])
    )
    model = OfferModel(
        learner=chosen,
        encoder=encoder,
        catalogue=catalogue,
        outcome=data.outcome,
        horizon=data.horizon,
        default_value=default_value,
        calibration=calibrate(raw, ap, yp, mu, vp),
        margin=margin,
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
        "units learned from (two folds)": int(pool.sum()),
        "holdout units": int(hold.sum()),
        "learner": best,
        "margin": "no offer (none beat no offer with confidence, out of fold)"
        if not np.isfinite(model.margin)
        else f"{model.margin:.2f} expected value after cost",
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
        margins=margins,
        facts=facts,
    )
