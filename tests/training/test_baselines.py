"""BG/NBD and Gamma-Gamma fits against data drawn from their own generative processes; the RFM summary
against a brute-force loop; the recency rule and RFM regression on hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.baselines import BGNBD, GammaGamma, RecencyRule, RFMLogistic, rfm_summary


def simulate_bgnbd(
    n: int, r: float, alpha: float, a: float, b: float, T: np.ndarray, future: float, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Customers of the BG/NBD story: Poisson purchases at rate lambda ~ Gamma(r, alpha); after each repeat
    purchase they leave with probability p ~ Beta(a, b). Returns x, t_x and the count in (T, T + future]."""
    lam, p = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, t_x, fut = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T[i] + future:
                break
            if t <= T[i]:
                x[i] += 1
                t_x[i] = t
            else:
                fut[i] += 1
            if rng.random() < p[i]:
                break
    return x, t_x, fut


@pytest.fixture(scope="module")
def bg_world() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    n = 6000
    T = rng.uniform(20, 52, n)
    x, t_x, fut = simulate_bgnbd(n, 0.8, 4.0, 0.8, 2.5, T, 13.0, rng)
    return {"x": x, "t_x": t_x, "T": T, "future": fut}


def test_bgnbd_recovers_its_parameters(bg_world: dict[str, np.ndarray]) -> None:
    model = BGNBD().fit(bg_world["x"], bg_world["t_x"], bg_world["T"])
    np.testing.assert_allclose(model.params_, [0.8, 4.0, 0.8, 2.5], rtol=0.25)
    truth_params = np.array([0.8, 4.0, 0.8, 2.5])
    truth = BGNBD.log_likelihood(truth_params, bg_world["x"], bg_world["t_x"], bg_world["T"])
    assert model.log_likelihood_ >= truth.sum() - 1e-6  # the optimum is at least as likely as the truth


def test_bgnbd_predicts_future_purchases_and_activity(bg_world: dict[str, np.ndarray]) -> None:
    x, t_x, T, fut = bg_world["x"], bg_world["t_x"], bg_world["T"], bg_world["future"]
    model = BGNBD().fit(x, t_x, T)
    expected = model.expected_transactions(13.0, x, t_x, T)
    assert expected.sum() == pytest.approx(fut.sum(), rel=0.08)
    for group in (x == 0, (x >= 1) & (x <= 3), x > 3):  # conditional expectations hold by history too
        assert expected[group].sum() == pytest.approx(fut[group].sum(), rel=0.15)
    active = model.probability_active(13.0, x, t_x, T)
    assert active.mean() == pytest.approx((fut > 0).mean(), abs=0.02)
    alive = model.probability_alive(x, t_x, T)
    assert np.all((alive > 0) & (alive <= 1)) and np.all(alive[x == 0] == 1.0)


def test_gamma_gamma_recovers_its_parameters_and_shrinks_means() -> None:
    rng = np.random.default_rng(7)
    n, p, q, g = 5000, 6.0, 4.0, 15.0
    nu = rng.gamma(q, 1 / g, n)
    x = rng.integers(1, 12, n).astype(float)
    m = np.array([rng.gamma(p, 1 / nu[i], int(x[i])).mean() for i in range(n)])
    model = GammaGamma().fit(x, m)
    np.testing.assert_allclose(model.params_, [p, q, g], rtol=0.3)
    assert model.population_mean() == pytest.approx(p * g / (q - 1), rel=0.1)
    # the conditional mean lies between the customer's own mean and the population's, nearer to the
    # customer's the more purchases back it up
    few = model.expected_spend(np.array([1.0]), np.array([100.0]))[0]
    many = model.expected_spend(np.array([20.0]), np.array([100.0]))[0]
    assert model.population_mean() < few < many < 100.0
    true_spend = p * nu  # E[spend per purchase | nu]
    err_model = np.mean((model.expected_spend(x, m) - true_spend) ** 2)
    assert err_model < np.mean((m - true_spend) ** 2)  # shrinkage beats each customer's raw mean


def test_rfm_summary_matches_a_brute_force_loop() -> None:
    rng = np.random.default_rng(3)
    rows = []
    start = pd.Timestamp("2025-01-01")
    for u in range(40):
        for _ in range(rng.integers(0, 8)):
            rows.append(
                (
                    f"u{u}",
                    start + pd.Timedelta(hours=int(rng.integers(0, 24 * 120))),
                    str(rng.choice(["purchase", "view", "refund"])),
                    float(rng.integers(1, 50)),
                )
            )
    events = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "amount"])
    as_of = pd.Timestamp("2025-04-01")
    users = pd.Series([f"u{u}" for u in range(40)])
    got = rfm_summary(events, as_of, user_ids=users, time_unit_days=1.0).set_index("user_id")
    for u in users:
        buys = events[(events.user_id == u) & (events.event_type == "purchase") & (events.ts < as_of)]
        days = sorted({t.floor("D") for t in buys.ts})
        row = got.loc[u]
        if not days:
            assert row["frequency"] == 0 and row["T"] == 0 and row["monetary_value"] == 0
            continue
        assert row["frequency"] == len(days) - 1
        assert row["recency"] == (days[-1] - days[0]).days
        assert row["T"] == (as_of - days[0]).days
        spend = [buys[buys.ts.dt.floor("D") == d].amount.sum() for d in days]
        assert row["monetary_value"] == pytest.approx(np.mean(spend[1:]) if len(days) > 1 else 0.0)


def test_recency_rule_and_rfm_logistic_rank_by_recency() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    frame = pd.DataFrame(
        {
            "days_since_last_event": rng.exponential(40, n),
            "orders_180d": rng.poisson(3, n),
            "spend_180d": rng.gamma(2, 30, n),
        }
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-(frame["days_since_last_event"] - 40) / 10))).astype(int)
    rule = RecencyRule().fit(frame, y)
    p = rule.predict_proba(frame)
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)  # band rates average to the base rate
    order = np.argsort(frame["days_since_last_event"].to_numpy())
    assert p[order[-200:]].mean() > 0.9 and p[order[:200]].mean() < 0.1
    logit = RFMLogistic().fit(frame, y)
    q = logit.predict_proba(frame)
    assert np.corrcoef(q, frame["days_since_last_event"])[0, 1] > 0.7
    with_null = frame.head(3).assign(days_since_last_event=np.nan)
    assert np.isfinite(logit.predict_proba(with_null)).all()
    assert np.isfinite(rule.predict_proba(with_null)).all()


def test_stacked_features_are_point_in_time_and_match_the_models() -> None:
    from training.datasets import STACKED_FEATURES, stacked_features

    rng = np.random.default_rng(5)
    n = 400
    start = pd.Timestamp("2024-01-01")
    rows = []
    for u in range(n):
        days = np.sort(rng.choice(300, size=int(rng.integers(1, 12)), replace=False))
        for d in days:
            kind = "view" if rng.random() < 0.3 else "purchase"
            rows.append(
                (f"u{u:03d}", start + pd.Timedelta(days=int(d), hours=9), kind, float(rng.gamma(2, 20)))
            )
    rows.append(("u000", start + pd.Timedelta(days=10), "refund", -5.0))
    events = pd.DataFrame(rows, columns=["user_id", "ts", "event_type", "amount"])
    as_of = pd.Timestamp("2024-07-01")
    users = pd.Series([f"u{u:03d}" for u in range(n)] + ["nobody"])
    got = stacked_features(events, as_of.date(), users)
    assert list(got.columns) == ["user_id", *STACKED_FEATURES] and got["user_id"].tolist() == users.tolist()
    # deleting every event at or after the as-of date changes nothing
    before = stacked_features(events.loc[events["ts"] < as_of], as_of.date(), users)
    pd.testing.assert_frame_equal(got, before)
    # ... while later events do change a later as-of date's features
    later = stacked_features(events, (as_of + pd.Timedelta(days=60)).date(), users)
    assert not np.allclose(later["bg_p_alive"].fillna(0), got["bg_p_alive"].fillna(0))
    # the values are the BG/NBD of activity days (refunds excluded) fitted on these users' history
    s = rfm_summary(events, as_of, event_types=("view", "purchase"), user_ids=users)
    seen = s["n_transactions"].to_numpy() > 0
    x, t_x, big_t = (s[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    bg = BGNBD(penalizer=0.001).fit(x[seen], t_x[seen], big_t[seen])
    np.testing.assert_allclose(got["bg_p_alive"].to_numpy()[seen], bg.probability_alive(x, t_x, big_t)[seen])
    np.testing.assert_allclose(
        got["bg_expected_13w"].to_numpy()[seen], bg.expected_transactions(13.0, x, t_x, big_t)[seen]
    )
    np.testing.assert_allclose(got["bg_frequency"].to_numpy()[seen], x[seen])
    assert got.loc[got["user_id"] == "nobody", list(STACKED_FEATURES)].isna().all(axis=None)
    assert got["gg_order_value"].dropna().gt(0).all() and got["bg_silent_share"].dropna().between(0, 1).all()
