"""Assignment: golden vectors, weights, coverage ramps, layers, holdout, targeting."""

from __future__ import annotations

import hashlib
import itertools
import json
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from experiments.assignment import (
    BUCKETS,
    HOLDOUT,
    Design,
    Holdout,
    Rule,
    allocate_slice,
    assign,
    assign_many,
    bucket_v1,
    buckets_v1,
)

GOLDEN = json.loads(resources.files("experiments").joinpath("golden_cases.json").read_text(encoding="utf-8"))
IDS_1M = [f"u{i}" for i in range(1_000_000)]


def reference_bucket(salt: str, unit_id: str) -> int:
    """Independent route: hex digest → first 16 hex digits → int → mod 10,000."""
    return int(hashlib.sha256((salt + ":" + unit_id).encode("utf-8")).hexdigest()[:16], 16) % 10_000


def reference_assign(spec: dict[str, Any], unit: str, attributes: dict[str, Any]) -> tuple[str | None, str]:
    """Plain-Python reading of the documented assignment order (no numpy, no pandas)."""
    holdout = spec.get("holdout")
    if holdout and reference_bucket("holdout/" + holdout["salt"], unit) < holdout["buckets"]:
        return None, "holdout"
    for attribute, op, values in spec.get("targeting", []):
        value = attributes.get(attribute)
        ok = value is not None and (
            str(value) in values
            if op == "in"
            else str(value) not in values
            if op == "not_in"
            else {">=": float(value) >= float(values[0]), "<": float(value) < float(values[0])}[op]
        )
        if not ok:
            return None, "not_targeted"
    if "layer" in spec:
        start, end = spec["layer_slice"]
        if not start <= reference_bucket("layer/" + spec["layer"], unit) < end:
            return None, "outside_layer_slice"
    if reference_bucket(spec["salt"] + "/coverage", unit) >= spec.get("coverage_buckets", 10_000):
        return None, "not_covered"
    bucket = reference_bucket(spec["salt"], unit)
    total, cumulative = sum(spec["weights"]), 0
    for name, weight in zip(spec["variants"], spec["weights"], strict=True):
        cumulative += weight
        if bucket < 10_000 * cumulative // total:
            return name, "assigned"
    raise AssertionError("unreachable")


def test_golden_buckets_match_the_documented_function_bit_for_bit() -> None:
    assert GOLDEN["hash_version"] == 1
    assert len(GOLDEN["buckets"]) >= 80
    for case in GOLDEN["buckets"]:
        text = case["salt"] + ":" + case["unit_id"]
        assert text.encode("utf-8").hex() == case["input_utf8_hex"]
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == case["sha256_hex"]
        assert int(case["sha256_hex"][:16], 16) == case["uint64_be"]
        assert reference_bucket(case["salt"], case["unit_id"]) == case["bucket"]
        assert bucket_v1(case["salt"], case["unit_id"]) == case["bucket"]
    salts = {c["salt"] for c in GOLDEN["buckets"]}
    for salt in salts:
        cases = [c for c in GOLDEN["buckets"] if c["salt"] == salt]
        vectorised = buckets_v1(salt, [c["unit_id"] for c in cases])
        assert vectorised.tolist() == [c["bucket"] for c in cases]


def test_a_known_vector_computed_with_coreutils_sha256sum() -> None:
    # printf '%s' 'exp1:user-1' | sha256sum  →  11fca5c283dc94a3...; 0x11fca5c283dc94a3 % 10000 = 9955
    assert 0x11FCA5C283DC94A3 % 10_000 == 9955
    assert bucket_v1("exp1", "user-1") == 9955


def test_golden_assignments_match_product_and_reference() -> None:
    specs = {spec["name"]: spec for spec in GOLDEN["designs"]}
    reasons = set()
    for case in GOLDEN["assignments"]:
        spec = specs[case["design"]]
        expected = (case["variant"], case["reason"])
        assert reference_assign(spec, case["unit_id"], case["attributes"]) == expected, case
        design = Design(
            salt=spec["salt"],
            variants=tuple(spec["variants"]),
            weights=tuple(spec["weights"]),
            coverage_buckets=spec.get("coverage_buckets", BUCKETS),
            layer=spec.get("layer"),
            layer_slice=tuple(spec.get("layer_slice", (0, BUCKETS))),
            targeting=tuple(Rule(a, op, tuple(v)) for a, op, v in spec.get("targeting", [])),
        )
        holdout = Holdout(**spec["holdout"]) if "holdout" in spec else None
        result = assign(
            design=design, unit_id=case["unit_id"], attributes=case["attributes"], holdout=holdout
        )
        assert (result.variant, result.reason, result.bucket) == (*expected, case["variant_bucket"])
        reasons.add(case["reason"])
    assert reasons == {"assigned", "holdout", "not_targeted", "outside_layer_slice", "not_covered"}


def test_weights_are_honoured_on_a_million_ids() -> None:
    design = Design(salt="weights", variants=("control", "b", "c"), weights=(50, 30, 20))
    variants, _, _ = assign_many(design=design, unit_ids=IDS_1M)
    counts = pd.Series(variants).value_counts().reindex(["control", "b", "c"]).to_numpy()
    expected = np.array([0.5, 0.3, 0.2])
    assert counts.sum() == 1_000_000
    sd = np.sqrt(1_000_000 * expected * (1 - expected))
    assert np.all(np.abs(counts - 1_000_000 * expected) < 4 * sd), counts
    assert stats.chisquare(counts, 1_000_000 * expected).pvalue > 0.001


def test_bucket_distribution_is_uniform() -> None:
    buckets = buckets_v1("uniformity", IDS_1M[:200_000])
    counts = np.bincount(buckets // 100, minlength=100)  # 100 groups of 100 buckets
    assert stats.chisquare(counts).pvalue > 0.001
    assert buckets.min() >= 0 and buckets.max() < BUCKETS


def test_changing_coverage_moves_nobody() -> None:
    ids = IDS_1M[:200_000]
    seen: dict[int, list[str | None]] = {}
    for coverage in (1000, 5000, 2000, 10_000, 300):
        design = Design(
            salt="ramp-up", variants=("control", "treatment"), weights=(1, 1), coverage_buckets=coverage
        )
        seen[coverage], _, _ = assign_many(design=design, unit_ids=ids)
    full = seen[10_000]
    for coverage, variants in seen.items():
        enrolled = np.array([v is not None for v in variants])
        share = enrolled.mean()
        assert abs(share - coverage / BUCKETS) < 4 * np.sqrt(0.25 / len(ids)) + 1e-9
        assert all(v == full[i] for i, v in enumerate(variants) if v is not None)
    ordered = sorted(seen)
    for low, high in itertools.pairwise(ordered):
        in_low = {i for i, v in enumerate(seen[low]) if v is not None}
        in_high = {i for i, v in enumerate(seen[high]) if v is not None}
        assert in_low <= in_high


def test_two_experiments_in_one_layer_share_no_unit() -> None:
    first_slice = allocate_slice(taken=[], size=4000)
    second_slice = allocate_slice(taken=[first_slice], size=5000)
    assert first_slice == (0, 4000) and second_slice == (4000, 9000)
    with pytest.raises(ValueError):
        allocate_slice(taken=[first_slice, second_slice], size=1500)
    ids = IDS_1M[:200_000]
    a = Design(
        salt="layer-a", variants=("control", "t"), weights=(1, 1), layer="home", layer_slice=first_slice
    )
    b = Design(
        salt="layer-b", variants=("control", "t"), weights=(1, 1), layer="home", layer_slice=second_slice
    )
    in_a = np.array([v is not None for v in assign_many(design=a, unit_ids=ids)[0]])
    in_b = np.array([v is not None for v in assign_many(design=b, unit_ids=ids)[0]])
    assert not np.any(in_a & in_b)
    assert abs(in_a.mean() - 0.4) < 0.005 and abs(in_b.mean() - 0.5) < 0.005
    # A different layer is independent: its units overlap both.
    c = Design(
        salt="layer-c", variants=("control", "t"), weights=(1, 1), layer="checkout", layer_slice=(0, 5000)
    )
    in_c = np.array([v is not None for v in assign_many(design=c, unit_ids=ids)[0]])
    assert abs((in_a & in_c).mean() - 0.4 * 0.5) < 0.005


def test_allocate_slice_finds_gaps() -> None:
    assert allocate_slice(taken=[(0, 1000), (3000, 10_000)], size=2000) == (1000, 3000)
    assert allocate_slice(taken=[(5000, 6000)], size=5000) == (0, 5000)
    assert allocate_slice(taken=[(1000, 6000)], size=4000) == (6000, 10_000)


def test_global_holdout_excludes_units_from_every_experiment() -> None:
    ids = IDS_1M[:100_000]
    holdout = Holdout(salt="global", buckets=500)
    held = buckets_v1("holdout/global", ids) < 500
    for salt in ("e1", "e2"):
        design = Design(salt=salt, variants=("control", "t"), weights=(1, 1))
        variants, _, reasons = assign_many(design=design, unit_ids=ids, holdout=holdout)
        enrolled = np.array([v is not None for v in variants])
        assert np.array_equal(~enrolled, held)
        assert set(reasons[held]) == {HOLDOUT}
    assert abs(held.mean() - 0.05) < 0.003


def test_targeting_rules_match_brute_force() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "country": rng.choice(["FR", "DE", "US", None], 5000),
            "tenure_days": rng.choice([np.nan, 5, 30, 31, 400], 5000),
            "plan": rng.choice(["free", "pro"], 5000),
        }
    )
    rules = tuple(Rule.parse(t) for t in ("country=FR,DE", "tenure_days>=30", "plan!=free"))
    design = Design(salt="targeted", variants=("control", "t"), weights=(1, 1), targeting=rules)
    ids = [f"t{i}" for i in range(5000)]
    variants, _, reasons = assign_many(design=design, unit_ids=ids, attributes=frame)
    for i, row in enumerate(frame.to_dict("records")):
        eligible = (
            row["country"] in ("FR", "DE") and not np.isnan(row["tenure_days"]) and row["tenure_days"] >= 30
        ) and row["plan"] != "free"
        assert (variants[i] is not None) == eligible, row
        assert (reasons[i] == "not_targeted") == (not eligible)
    with pytest.raises(ValueError):
        Rule.parse("country ~ FR")
    with pytest.raises(ValueError):
        Rule.parse("age>=old")


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=1000), min_size=2, max_size=6),
    unit=st.text(max_size=40),
    salt=st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True),
)
def test_single_and_batch_assignment_agree(weights: list[int], unit: str, salt: str) -> None:
    design = Design(salt=salt, variants=tuple(f"v{i}" for i in range(len(weights))), weights=tuple(weights))
    single = assign(design=design, unit_id=unit)
    batch, buckets, _ = assign_many(design=design, unit_ids=[unit, unit])
    assert single.variant == batch[0] == batch[1]
    assert single.bucket == buckets[0] == reference_bucket(salt, unit)
    spec = {"salt": salt, "variants": list(design.variants), "weights": weights}
    assert reference_assign(spec, unit, {}) == (single.variant, "assigned")
    shares = design.bucket_shares()
    assert np.isclose(shares.sum(), 1.0)
    assert np.all(np.abs(shares - np.array(weights) / sum(weights)) <= 1 / BUCKETS)


def test_bad_designs_are_refused() -> None:
    with pytest.raises(ValueError):
        Design(salt="has:colon", variants=("a", "b"), weights=(1, 1))
    with pytest.raises(ValueError):
        Design(salt="s", variants=("a", "a"), weights=(1, 1))
    with pytest.raises(ValueError):
        Design(salt="s", variants=("a", "b"), weights=(1, 0))
    with pytest.raises(ValueError):
        Design(salt="s", variants=("a", "b"), weights=(1, 1), layer="l", layer_slice=(5000, 5000))


@settings(max_examples=200, deadline=None)
@given(
    value=st.one_of(
        st.none(),
        st.integers(-50, 50),
        st.floats(-50, 50),
        st.just(float("nan")),
        st.sampled_from(["FR", "DE", "30", "x", ""]),
    ),
    rule=st.sampled_from(["k=FR,DE", "k!=FR", "k=30", "k>=30", "k<0", "k>-1.5", "k<=30"]),
)
def test_single_unit_rule_matches_the_vectorised_mask(value: object, rule: str) -> None:
    parsed = Rule.parse(rule)
    frame = pd.DataFrame({"k": pd.Series([value], dtype=object)})
    assert parsed.matches({"k": value}) == bool(parsed.mask(frame)[0])
