"""The synthetic world: an online store whose users arrive, browse, buy, refund, get offers and leave.

Every user has latent tastes (low-rank affinities to items), an engagement level and a churn hazard.
The world writes the contract tables and a ``truth/`` folder that knows what no model can see: when each
user really left, which items each one truly prefers, and what each offer truly does to each user.

The daily process for a user who signed up on day ``s`` (all randomness from one seeded generator):

* day ``s``: the signup visit (always a visit; no churn draw).
* every later day ``t``, while alive: first a churn draw with hazard ``h_t``; if the user survives, a visit
  with probability ``v_t``; on a visit, views of items drawn from the user's tastes, and with probability
  ``b_t`` a purchase of some of them; a purchase is a bad experience with probability ``q`` (a refund a
  few days later follows).
* ``h_t = 1 - exp(-h0 · e^-0.7 · (1 + 2·exp(-tenure/30)) · exp(0.6·bad_t - tau_t))``: engaged users and
  users past their first month churn less; each bad experience raises the hazard, fading with a 20-day
  time constant (``bad_{t+1} = rho·(bad_t + n_bad_t)``); an offer lowers it by ``tau`` for 60 days.
* ``v_t = min(0.9, 0.12·e·dow_t·(1 + kappa_t))``, ``b_t = min(0.95, b0·(1 + kappa_t))`` (an offer raises
  visits and purchases by ``kappa`` for 30 days).

Because a user with no visit has no bad experience, the chance of "no activity in ``[D, D + H)``" has a
closed form given the state when day ``D`` begins, which :func:`true_churn_probability` computes exactly:
the oracle for the churn label, with no Monte-Carlo noise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract import write_arrow, write_table
from simulator.truth import load_config, true_churn_probability, true_uplift
from simulator.world import (
    BOOST_DAYS,
    CAMPAIGN,
    CAMPAIGN_RECENT_DAYS,
    CHANNEL_ENGAGEMENT,
    CHANNEL_P,
    CHANNELS,
    COUNTRIES,
    COUNTRY_P,
    DEVICES,
    EVENT_CODES,
    OFFER_DAYS,
    OFFERS,
    RHO,
    WorldConfig,
    hazard,
    offer_effect,
    price_sensitivity,
    trend_shift,
    visit_probability,
)

__all__ = ["WorldConfig", "load_config", "simulate", "true_churn_probability", "true_uplift"]


@dataclass
class _Users:
    signup_day: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    device: np.ndarray
    engagement: np.ndarray
    h0: np.ndarray
    buy_prob: np.ndarray
    bad_prob: np.ndarray
    price_sensitivity: np.ndarray
    taste: np.ndarray


def _make_users(cfg: WorldConfig, rng: np.random.Generator) -> _Users:
    n = cfg.n_users
    early = rng.random(n) < 0.3  # a launch cohort in the first week, the rest arrive steadily
    signup = np.where(early, rng.integers(0, 7, n), rng.integers(0, max(1, int(cfg.days * 0.85)), n))
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    engagement = rng.lognormal(0.0, 0.5, n) * np.asarray(CHANNEL_ENGAGEMENT)[channel]
    return _Users(
        signup_day=np.sort(signup),
        channel=channel,
        country=rng.choice(len(COUNTRIES), n, p=COUNTRY_P),
        device=rng.integers(0, len(DEVICES), n),
        engagement=engagement,
        h0=0.003 * rng.lognormal(0.0, 0.4, n),
        buy_prob=np.clip(rng.beta(2, 5, n), 0.02, 0.9),
        bad_prob=rng.beta(1, 15, n),
        price_sensitivity=price_sensitivity(rng.beta(2, 2, n), channel),
        taste=rng.normal(0, 1, (n, cfg.dim)),
    )


def _make_items(cfg: WorldConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    k, m = cfg.n_categories, cfg.n_items
    centroids = rng.normal(0, 1, (k, cfg.dim))
    popularity = 1.0 / np.arange(1, m + 1) ** 0.9  # Zipf-like
    popularity = popularity[rng.permutation(m)]
    popularity /= popularity.sum()
    category = rng.choice(k, m, p=rng.dirichlet(np.full(k, 2.0)))
    factors = centroids[category] + 0.6 * rng.normal(0, 1, (m, cfg.dim))
    price = np.round(np.exp(rng.normal(np.log(8), 0.4, k))[category] * rng.lognormal(0, 0.35, m), 2)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j:05d}" for j in range(m)],
            "category": [f"c{c:02d}" for c in category],
            "price": price,
            "available": rng.random(m) > 0.05,
        }
    )
    return items, factors, popularity


def _shortlists(
    cfg: WorldConfig, users: _Users, factors: np.ndarray, popularity: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's top-C items and the cumulative probabilities of drawing them."""
    n, c = cfg.n_users, cfg.top_c
    top = np.empty((n, c), dtype=np.int32)
    cdf = np.empty((n, c), dtype=np.float64)
    log_pop = 0.5 * np.log(popularity)
    scale = 1.5 / np.sqrt(cfg.dim)
    for lo in range(0, n, 4096):
        scores = scale * users.taste[lo : lo + 4096] @ factors.T + log_pop
        idx = np.argpartition(-scores, c - 1, axis=1)[:, :c]
        s = np.take_along_axis(scores, idx, axis=1)
        order = np.argsort(-s, axis=1, kind="stable")
        idx, s = np.take_along_axis(idx, order, axis=1), np.take_along_axis(s, order, axis=1)
        p = np.exp(s - s[:, :1])
        p /= p.sum(axis=1, keepdims=True)
        top[lo : lo + 4096] = idx
        cdf[lo : lo + 4096] = np.cumsum(p, axis=1)
    cdf[:, -1] = 1.0
    return top, cdf


def simulate(cfg: WorldConfig, out: str | Path, progress: bool = False) -> dict[str, int]:
    """Simulate a world and write its contract tables and ``truth/`` into ``out``.

    Args:
        cfg: World parameters.
        out: Output data folder.
        progress: Show a progress bar over the simulated days.

    Returns:
        Row counts per written table.
    """
    cfg = cfg.resolved()
    rng = np.random.default_rng(cfg.seed)
    users = _make_users(cfg, rng)
    items, factors, popularity = _make_items(cfg, rng)
    top, cdf = _shortlists(cfg, users, factors, popularity)
    pop_cdf = np.cumsum(popularity)
    pop_cdf[-1] = 1.0
    price = items["price"].to_numpy()
    n = cfg.n_users
    alive = np.zeros(n, dtype=bool)
    churn_day = np.full(n, -1, dtype=np.int64)
    bad = np.zeros(n)
    last_visit = np.full(n, -(10**6), dtype=np.int64)
    tau = np.zeros(n)
    kappa = np.zeros(n)
    treated_offer = np.full(n, -1, dtype=np.int64)
    exposures: list[pd.DataFrame] = []
    chunks: list[tuple[np.ndarray, ...]] = []
    bad_orders: list[tuple[np.ndarray, np.ndarray]] = []
    session_base = 0
    day0 = pd.Timestamp(cfg.start).value // 1000  # microseconds
    day_us = 86_400_000_000

    days: Iterable[int] = range(cfg.days)
    if progress:
        from rich.progress import track

        days = track(days, description="simulating days", transient=True)
    for t in days:
        if t == cfg.campaign_day:
            eligible = np.flatnonzero((users.signup_day <= t - 14) & (last_visit >= t - CAMPAIGN_RECENT_DAYS))
            variant = rng.integers(0, len(OFFERS) + 1, len(eligible))  # 0 = control
            for j, offer in enumerate(OFFERS["offer_id"], start=1):
                who = eligible[variant == j]
                treated_offer[who] = j - 1
                tau[who], kappa[who] = offer_effect(
                    offer,
                    users.price_sensitivity[who],
                    users.engagement[who],
                    np.asarray(COUNTRIES)[users.country[who]],
                    np.asarray(DEVICES)[users.device[who]],
                )
            names = np.array(["control", *OFFERS["offer_id"]])
            exposures.append(
                pd.DataFrame(
                    {
                        "experiment": CAMPAIGN,
                        "variant": names[variant],
                        "unit": eligible,
                        "ts_us": day0
                        + t * day_us
                        + rng.integers(8 * 3600, 10 * 3600, len(eligible)) * 1_000_000,
                    }
                )
            )
        if t == cfg.campaign_day + BOOST_DAYS:
            kappa[:] = 0.0
        if t == cfg.campaign_day + OFFER_DAYS:
            tau[:] = 0.0

        # churn draw for users alive before today
        at_risk = np.flatnonzero(alive)
        h = hazard(
            users.h0[at_risk],
            users.engagement[at_risk],
            t - users.signup_day[at_risk],
            bad[at_risk],
            tau[at_risk],
            trend_shift(cfg, t),
        )
        leaving = at_risk[rng.random(len(at_risk)) < h]
        alive[leaving] = False
        churn_day[leaving] = t
        # visits: new signups always visit
        newcomers = np.flatnonzero(users.signup_day == t)
        alive[newcomers] = True
        stayers = np.flatnonzero(alive & (users.signup_day < t))
        visiting = stayers[
            rng.random(len(stayers)) < visit_probability(cfg, users.engagement[stayers], t, kappa[stayers])
        ]
        visitors = np.concatenate([newcomers, visiting])
        if len(visitors):
            chunk, bad_users = _visits(
                cfg, rng, visitors, t, users, top, cdf, pop_cdf, price, kappa, session_base, day0 + t * day_us
            )
            session_base += len(visitors)
            chunks.append(chunk)
            last_visit[visitors] = t
            if len(bad_users):
                bad_orders.append((bad_users, np.full(len(bad_users), t)))
                np.add.at(bad, bad_users, 1.0)
        bad *= RHO

    written = _write_world(
        cfg,
        Path(out),
        users,
        items,
        factors,
        popularity,
        top,
        cdf,
        chunks,
        exposures,
        churn_day,
        bad_orders,
        treated_offer,
    )
    return written


def _visits(  # noqa: PLR0913 - a private step of the loop, handed its arrays as they are
    cfg: WorldConfig,
    rng: np.random.Generator,
    visitors: np.ndarray,
    t: int,
    users: _Users,
    top: np.ndarray,
    cdf: np.ndarray,
    pop_cdf: np.ndarray,
    price: np.ndarray,
    kappa: np.ndarray,
    session_base: int,
    day_start_us: int,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The events of one day's visits, and the users whose purchase went wrong."""
    nv = len(visitors)
    n_views = 1 + rng.poisson(2.5, nv)
    owner = np.repeat(np.arange(nv), n_views)
    user = visitors[owner]
    explore = rng.random(len(owner)) < cfg.explore
    r = rng.random(len(owner))
    pick = np.minimum((cdf[user] < r[:, None]).sum(axis=1), cfg.top_c - 1)
    item = np.where(explore, np.searchsorted(pop_cdf, r), top[user, pick]).astype(np.int64)
    item = np.minimum(item, len(price) - 1)
    buys = rng.random(nv) < np.minimum(0.95, users.buy_prob[visitors] * (1 + kappa[visitors]))
    carted = rng.random(len(owner)) < np.where(buys[owner], 0.45, 0.08)
    first_view = np.r_[0, np.cumsum(n_views)[:-1]]
    carted[first_view[buys]] = True  # a buying visit buys at least one item
    bought = carted & buys[owner]
    qty = 1 + rng.poisson(0.4, len(owner))
    start = day_start_us + rng.integers(0, 22 * 3600, nv) * 1_000_000
    gaps = rng.integers(5, 180, len(owner)) * 1_000_000
    elapsed = np.cumsum(gaps)
    ts_view = start[owner] + elapsed - elapsed[first_view][owner]  # the first view opens the visit
    session = session_base + owner
    parts = [
        (
            user,
            ts_view,
            np.zeros(len(owner), np.int8),
            item,
            np.full(len(owner), np.nan),
            np.full(len(owner), np.nan),
            session,
        ),
        (
            user[carted],
            ts_view[carted] + 2_000_000,
            np.ones(carted.sum(), np.int8),
            item[carted],
            np.full(carted.sum(), np.nan),
            qty[carted].astype(float),
            session[carted],
        ),
        (
            user[bought],
            ts_view[bought] + 600_000_000,
            np.full(bought.sum(), 2, np.int8),
            item[bought],
            price[item[bought]] * qty[bought],
            qty[bought].astype(float),
            session[bought],
        ),
    ]
    # bad experiences: one per unlucky buying visit, refunded 1-5 days later (first item bought)
    buyer_idx = np.flatnonzero(buys)
    unlucky = buyer_idx[rng.random(len(buyer_idx)) < users.bad_prob[visitors[buyer_idx]]]
    if len(unlucky):
        fv = first_view[unlucky]
        delay = (
            rng.integers(1, 6, len(unlucky)) * 86_400_000_000 + rng.integers(0, 3600, len(unlucky)) * 10**6
        )
        parts.append(
            (
                visitors[unlucky],
                ts_view[fv] + delay,
                np.full(len(unlucky), 3, np.int8),
                item[fv],
                -price[item[fv]] * qty[fv],
                -qty[fv].astype(float),
                session[fv],
            )
        )
    chunk = tuple(np.concatenate([p[k] for p in parts]) for k in range(7))
    return chunk, visitors[unlucky]


def _write_world(  # noqa: PLR0913 - a private step of the loop, handed its arrays as they are
    cfg: WorldConfig,
    out: Path,
    users: _Users,
    items: pd.DataFrame,
    factors: np.ndarray,
    popularity: np.ndarray,
    top: np.ndarray,
    cdf: np.ndarray,
    chunks: list[tuple[np.ndarray, ...]],
    exposures: list[pd.DataFrame],
    churn_day: np.ndarray,
    bad_orders: list[tuple[np.ndarray, np.ndarray]],
    treated_offer: np.ndarray,
) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(exist_ok=True)
    user_ids = np.array([f"u{j:06d}" for j in range(cfg.n_users)], dtype=object)
    start_us = pd.Timestamp(cfg.start).value // 1000
    end_us = start_us + cfg.days * 86_400_000_000
    user, ts, etype, item, amount, qty, session = (np.concatenate([c[k] for c in chunks]) for k in range(7))
    keep = ts < end_us  # refunds due after the world ends have not happened yet
    order = np.lexsort((etype[keep], user[keep], ts[keep]))
    user, ts, etype, item, amount, qty, session = (
        a[keep][order] for a in (user, ts, etype, item, amount, qty, session)
    )

    def ids(codes: np.ndarray, names: np.ndarray | list[str]) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names)).cast(
            pa.string()
        )

    events = pa.table(
        {
            "user_id": ids(user, user_ids),
            "ts": pa.array(ts, pa.timestamp("us")),
            "event_type": ids(etype, list(EVENT_CODES)),
            "item_id": ids(item, items["item_id"].to_numpy()),
            "amount": pa.array(np.round(amount, 2)),
            "quantity": pa.array(qty),
            "session_id": pc.binary_join_element_wise("s", pa.array(session).cast(pa.string()), ""),
        }
    )
    write_arrow(events, out / "events.parquet", contract="events")
    # signup is the first visit; every user has one on their signup day
    signup_us = start_us + users.signup_day * 86_400_000_000
    first_visit = pd.Series(ts).groupby(user).min()
    signup_us[first_visit.index.to_numpy()] = first_visit.to_numpy()
    signup_ts = pd.to_datetime(signup_us, unit="us")
    users_df = pd.DataFrame(
        {
            "user_id": user_ids.astype(str),
            "signup_ts": pd.Series(signup_ts).astype("datetime64[us]").to_numpy(),
            "channel": np.asarray(CHANNELS)[users.channel],
            "country": np.asarray(COUNTRIES)[users.country],
            "device": np.asarray(DEVICES)[users.device],
        }
    )
    write_table(users_df, out / "users.parquet", contract="users")
    write_table(items, out / "items.parquet", contract="items")
    write_table(OFFERS, out / "offers.parquet", contract="offers")
    if exposures:
        ex = pd.concat(exposures, ignore_index=True)
        exposures_df = pd.DataFrame(
            {
                "experiment": ex["experiment"],
                "variant": ex["variant"],
                "unit_id": user_ids[ex["unit"].to_numpy()].astype(str),
                "ts": pd.to_datetime(ex["ts_us"].to_numpy(), unit="us").astype("datetime64[us]"),
            }
        ).sort_values(["ts", "unit_id"], kind="stable", ignore_index=True)
        write_table(exposures_df, out / "exposures.parquet", contract="exposures")
    # truth
    truth_users = pd.DataFrame(
        {
            "user_id": user_ids.astype(str),
            "signup_day": users.signup_day,
            "churn_day": churn_day,
            "engagement": users.engagement,
            "h0": users.h0,
            "buy_prob": users.buy_prob,
            "bad_prob": users.bad_prob,
            "price_sensitivity": users.price_sensitivity,
            "country": np.asarray(COUNTRIES)[users.country],
            "device": np.asarray(DEVICES)[users.device],
            "offer": np.where(
                treated_offer >= 0, OFFERS["offer_id"].to_numpy()[np.maximum(treated_offer, 0)], ""
            ),
        }
    )
    write_table(truth_users, out / "truth" / "users.parquet")
    bo_u = np.concatenate([b[0] for b in bad_orders]) if bad_orders else np.zeros(0, np.int64)
    bo_d = np.concatenate([b[1] for b in bad_orders]) if bad_orders else np.zeros(0, np.int64)
    write_table(
        pd.DataFrame({"user_id": user_ids[bo_u].astype(str), "day": bo_d}),
        out / "truth" / "bad_orders.parquet",
    )
    write_table(
        _true_affinity(cfg, user_ids, items, top, cdf, popularity), out / "truth" / "affinity.parquet"
    )
    item_truth = items[["item_id"]].assign(popularity=popularity)
    for k in range(cfg.dim):
        item_truth[f"f{k}"] = factors[:, k]
    write_table(item_truth, out / "truth" / "items.parquet")
    (out / "truth" / "params.json").write_text(json.dumps(asdict(cfg), indent=2, sort_keys=True) + "\n")
    counts = {
        "events": events.num_rows,
        "users": len(users_df),
        "items": len(items),
        "offers": len(OFFERS),
        "exposures": sum(len(e) for e in exposures),
    }
    if cfg.campaign_day >= 0:
        write_table(true_uplift(out), out / "truth" / "uplift.parquet")
    return counts


def _true_affinity(
    cfg: WorldConfig,
    user_ids: np.ndarray,
    items: pd.DataFrame,
    top: np.ndarray,
    cdf: np.ndarray,
    popularity: np.ndarray,
    k: int = 20,
) -> pd.DataFrame:
    """Each user's ``k`` items with the highest true probability of being the next one viewed."""
    personal = np.diff(np.concatenate([np.zeros((len(cdf), 1)), cdf], axis=1), axis=1)
    prob = (1 - cfg.explore) * personal + cfg.explore * popularity[top]
    order = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(top, order, axis=1)
    return pd.DataFrame(
        {
            "user_id": np.repeat(user_ids.astype(str), k),
            "rank": np.tile(np.arange(1, k + 1), len(user_ids)),
            "item_id": items["item_id"].to_numpy()[chosen.ravel()],
            "prob": np.take_along_axis(prob, order, axis=1).ravel(),
        }
    )
