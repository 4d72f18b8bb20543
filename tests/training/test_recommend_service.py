"""Serving by id: filters always hold, unknown users get the fallback, new events change recommendations."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.simulate import WorldConfig, simulate
from training.interactions import InteractionWeights, build_interactions
from training.recommend import build_recommender, fit_model, load_world, segment_attribute, user_segments
from training.recommenders import FAMILIES
from training.recommenders.base import top_k
from training.recommenders.service import Recommender

AS_OF = date(2025, 4, 1)
SMALL = {
    "als": {"factors": 16, "iterations": 8},
    "bpr": {"factors": 16, "iterations": 30},
    "itemknn": {"neighbors": 50},
    "ease": {"l2": 50.0},
    "popularity": {},
}


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    simulate(WorldConfig(n_users=800, days=100, seed=11), out)
    return out


@pytest.fixture(scope="module")
def recommenders(world_dir: Path) -> dict[str, Recommender]:
    world = load_world(world_dir)
    w = InteractionWeights()
    inter = build_interactions(world.events, weights=w, end=AS_OF)
    seg = user_segments(world.users, inter.user_ids, segment_attribute(world.users))[0]
    return {
        f: build_recommender(fit_model(f, SMALL[f], inter, seg), inter, world, AS_OF, w, {"family": f})
        for f in FAMILIES
    }


def _bought(rec: Recommender, user: str) -> set[str]:
    u = rec._user_index[user]
    return set(rec.item_ids[rec.bought[u].indices])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    family=st.sampled_from(sorted(FAMILIES)),
    user=st.integers(0, 799),
    k=st.integers(1, 30),
    include=st.sets(st.integers(0, 19), max_size=4),
    exclude=st.sets(st.integers(0, 19), max_size=4),
    seen=st.booleans(),
)
def test_filters_always_hold(
    recommenders: dict[str, Recommender],
    family: str,
    user: int,
    k: int,
    include: set[int],
    exclude: set[int],
    seen: bool,
) -> None:
    rec = recommenders[family]
    uid = f"u{user:06d}"
    inc = [f"c{c:02d}" for c in include] or None
    exc = [f"c{c:02d}" for c in exclude]
    out = rec.recommend(uid, k, include_categories=inc, exclude_categories=exc, exclude_seen=seen)
    assert len(out.item_ids) <= k and len(set(out.item_ids)) == len(out.item_ids)
    cats = dict(zip(rec.item_ids, np.asarray([*rec.category_names, ""])[rec.item_category], strict=True))
    avail = dict(zip(rec.item_ids, rec.available, strict=True))
    for item in out.item_ids:
        assert avail[item]
        assert cats[item] not in exc
        assert inc is None or cats[item] in inc
    if rec.is_known(uid):
        assert not set(out.item_ids) & _bought(rec, uid)
        if seen:
            u = rec._user_index[uid]
            assert not set(out.item_ids) & set(rec.item_ids[rec.history[u].indices])
    assert out.scores == sorted(out.scores, reverse=True)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_unknown_user_gets_the_fallback(recommenders: dict[str, Recommender], family: str) -> None:
    rec = recommenders[family]
    anon = rec.recommend("nobody", 10)
    assert anon.source == "fallback" and len(anon.item_ids) == 10
    seg = rec.recommend("nobody", 10, segment=rec.segment_names[1])
    want = rec.fallback.segment_scores(np.array([1]))[0] + rec._unavailable
    assert seg.item_ids == rec.item_ids[np.argsort(-want, kind="stable")[:10]].tolist()
    frame = rec.recommend_frame(["nobody", "u000001"], 5)
    assert set(frame["user_id"]) == {"nobody", "u000001"} and len(frame) == 10
    in_batch = rec.recommend_frame(["nobody"], 10, segments=[rec.segment_names[1]])
    assert in_batch["item_id"].tolist() == seg.item_ids


@pytest.mark.parametrize("family", ["als", "bpr", "itemknn", "ease"])
def test_new_events_change_that_users_recommendations(
    recommenders: dict[str, Recommender], family: str, tmp_path: Path
) -> None:
    rec = Recommender.load(recommenders[family].save(tmp_path / "rec"))  # a copy: updates stay here
    sizes = np.diff(rec.history.indptr)
    light = np.flatnonzero(sizes > 0)
    user = str(rec.user_ids[light[np.argmin(sizes[light])]])  # the lightest known user
    other = str(rec.user_ids[light[-1]])
    before, other_before = rec.recommend(user, 10), rec.recommend(other, 10)
    # the user suddenly engages with items of one category they had not shown interest in
    cat = rec.category_names[int(np.bincount(rec.item_category[rec.available]).argmin())]
    items = rec.item_ids[(rec.item_category == rec.category_names.index(cat)) & rec.available][:5]
    events = [{"item_id": t, "event_type": e} for t in items for e in ("view", "add_to_cart")]
    rec.add_events(user, events * 3)
    after = rec.recommend(user, 10)
    assert after.item_ids != before.item_ids
    assert rec.recommend(other, 10).item_ids == other_before.item_ids
    # a brand-new user with events gets personal recommendations, not the fallback
    rec.add_events("newcomer", [{"item_id": items[0], "event_type": "purchase"}])
    fresh = rec.recommend("newcomer", 10)
    assert fresh.source == "model" and items[0] not in fresh.item_ids
    frame = rec.recommend_frame([user, "newcomer", other], 10)  # the batch path sees the updates too
    assert frame.loc[frame["user_id"] == user, "item_id"].tolist() == after.item_ids
    assert frame.loc[frame["user_id"] == "newcomer", "item_id"].tolist() == fresh.item_ids


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_batch_equals_single_user_calls(recommenders: dict[str, Recommender], family: str) -> None:
    rec = recommenders[family]
    users = [f"u{j:06d}" for j in range(0, 800, 37)] + ["ghost"]
    frame = rec.recommend_frame(users, 10)
    for u in users:
        assert frame.loc[frame["user_id"] == u, "item_id"].tolist() == rec.recommend(u, 10).item_ids


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_load_round_trip(recommenders: dict[str, Recommender], family: str, tmp_path: Path) -> None:
    rec = recommenders[family]
    loaded = Recommender.load(rec.save(tmp_path / "rec"))
    users = [f"u{j:06d}" for j in range(0, 800, 50)]
    assert loaded.recommend_frame(users, 10).equals(rec.recommend_frame(users, 10))
    some = rec.item_ids[0]
    assert loaded.similar_items(some, 5).item_ids == rec.similar_items(some, 5).item_ids
    assert some not in rec.similar_items(some, 5).item_ids


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scores=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, -np.inf]), min_size=1, max_size=60),
    k=st.integers(1, 70),
)
def test_one_users_listing_is_the_batch_top_k(
    recommenders: dict[str, Recommender], scores: list[float], k: int
) -> None:
    """One user's listing picks what the batch top-k picks, in its order, ties and filtered items
    included (few distinct values: ties everywhere)."""
    rec = recommenders["popularity"]
    row = np.full(len(rec.item_ids), -np.inf, np.float32)
    row[: len(scores)] = scores
    listing = rec._listing(row.copy(), k, "model")
    idx, val = top_k(row[None, :], k)
    idx, val = idx[0], val[0]
    keep = np.isfinite(val)
    assert listing.item_ids == rec.item_ids[idx[keep]].tolist()
    assert listing.scores == val[keep].astype(float).tolist()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_kept_lists_answer_as_scoring_does(
    recommenders: dict[str, Recommender], family: str, tmp_path: Path
) -> None:
    """With every user's list worked out ahead, each request gets what scoring it afresh gives: for
    every user and k (past the kept length too), every filter, and users whose history changed since."""
    fresh = recommenders[family]
    kept = Recommender.load(fresh.save(tmp_path / "rec"))
    kept.keep_lists(20)
    cat = kept.category_names[0]
    asks: list[dict[str, object]] = [
        {},
        {"exclude_bought": False},
        {"exclude_seen": True},
        {"include_categories": [cat]},
        {"exclude_items": [str(kept.item_ids[0])]},
    ]
    users = [*kept.user_ids[::7].tolist(), "ghost"]
    for user in users:
        for k in (1, 10, 20, 25):
            for ask in asks:
                assert kept.recommend(user, k, **ask) == fresh.recommend(user, k, **ask), (user, k, ask)
    # new events reach the user at once, as they do without kept lists
    user = str(kept.user_ids[np.flatnonzero(np.diff(kept.history.indptr))[0]])
    copy = Recommender.load(fresh.save(tmp_path / "copy"))
    items = kept.item_ids[kept.available][:5]
    events = [{"item_id": t, "event_type": "purchase"} for t in items]
    kept.add_events(user, events)
    copy.add_events(user, events)
    assert kept.recommend(user, 10) == copy.recommend(user, 10)
    assert not set(items) & set(kept.recommend(user, 20).item_ids)
