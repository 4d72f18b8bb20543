"""Regenerate ``experiments/golden_cases.json`` (run only when a new hash version is introduced).

Usage: ``.venv/bin/python tests/experiments/golden_cases_gen.py``. The file is the contract that any
other client (serving, mobile SDK, a SQL job) checks itself against, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from experiments.assignment import BUCKETS, HASH_VERSION, Design, Holdout, Rule, assign, bucket_v1

OUT = Path(__file__).resolve().parents[2] / "experiments" / "golden_cases.json"

UNITS = [
    "",
    "0",
    "00123",
    "123",
    "user-1",
    "user-2",
    "u_999999",
    "ユーザー42",
    "émile",
    "a b c",
    "x" * 100,
    "12345678901234567890",
    "u:colon",
    "E7F3A0C2-1B4D-4C8E-9F00-3D2B1A0C9E11",
]
SALTS = ["exp1", "checkout-button.v2", "A", "holdout/global", "layer/home", "exp1/coverage"]

DESIGNS: list[dict[str, Any]] = [
    {"name": "ab", "salt": "exp1", "variants": ["control", "treatment"], "weights": [50, 50]},
    {"name": "three_way", "salt": "three-way", "variants": ["control", "b", "c"], "weights": [1, 1, 1]},
    {"name": "skewed", "salt": "skewed", "variants": ["control", "treatment"], "weights": [90, 10]},
    {"name": "four", "salt": "four", "variants": ["control", "v2", "v3", "v4"], "weights": [1, 2, 3, 4]},
    {
        "name": "coverage",
        "salt": "ramp",
        "variants": ["control", "treatment"],
        "weights": [1, 1],
        "coverage_buckets": 3000,
    },
    {
        "name": "layer",
        "salt": "in-layer",
        "variants": ["control", "treatment"],
        "weights": [1, 1],
        "layer": "home",
        "layer_slice": [2500, 7500],
    },
    {
        "name": "targeting",
        "salt": "fr-only",
        "variants": ["control", "treatment"],
        "weights": [1, 1],
        "targeting": [["country", "in", ["FR", "DE"]], ["tenure_days", ">=", ["30"]]],
    },
    {
        "name": "holdout",
        "salt": "exp1",
        "variants": ["control", "treatment"],
        "weights": [50, 50],
        "holdout": {"salt": "global", "buckets": 1000},
    },
]
ATTRIBUTES = [
    {"country": "FR", "tenure_days": 45},
    {"country": "DE", "tenure_days": 10},
    {"country": "US", "tenure_days": 400},
    {"country": "FR"},
    {},
    {"country": "DE", "tenure_days": 30},
]


def design_of(spec: dict[str, Any]) -> Design:
    """Build a design from a golden-file spec.

    Args:
        spec: One entry of ``designs``.

    Returns:
        The design.
    """
    return Design(
        salt=spec["salt"],
        variants=tuple(spec["variants"]),
        weights=tuple(spec["weights"]),
        coverage_buckets=spec.get("coverage_buckets", BUCKETS),
        layer=spec.get("layer"),
        layer_slice=tuple(spec.get("layer_slice", (0, BUCKETS))),  # type: ignore[arg-type]
        targeting=tuple(Rule(a, op, tuple(v)) for a, op, v in spec.get("targeting", [])),
    )


def main() -> None:
    """Write the golden file."""
    buckets = []
    for salt in SALTS:
        for unit in UNITS:
            digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
            buckets.append(
                {
                    "salt": salt,
                    "unit_id": unit,
                    "input_utf8_hex": f"{salt}:{unit}".encode().hex(),
                    "sha256_hex": digest.hex(),
                    "uint64_be": int.from_bytes(digest[:8], "big"),
                    "bucket": bucket_v1(salt, unit),
                }
            )
    assignments = []
    for spec in DESIGNS:
        design = design_of(spec)
        holdout = Holdout(**spec["holdout"]) if "holdout" in spec else None
        for i, unit in enumerate(UNITS + [f"user-{k}" for k in range(3, 40)]):
            attributes = ATTRIBUTES[i % len(ATTRIBUTES)] if design.targeting else {}
            result = assign(design=design, unit_id=unit, attributes=attributes, holdout=holdout)
            assignments.append(
                {
                    "design": spec["name"],
                    "unit_id": unit,
                    "attributes": attributes,
                    "variant_bucket": result.bucket,
                    "variant": result.variant,
                    "reason": result.reason,
                }
            )
    document = {
        "hash_version": HASH_VERSION,
        "function": (
            "bucket = int.from_bytes(sha256(utf8(salt + ':' + unit_id)).digest()[0:8], 'big') % 10000; "
            "derived salts: 'holdout/' + holdout_salt, 'layer/' + layer, salt + '/coverage'"
        ),
        "assignment_order": [
            "holdout: bucket('holdout/'+holdout.salt) < holdout.buckets -> reason holdout",
            "targeting: every rule holds -> else not_targeted",
            "layer: layer_slice[0] <= bucket('layer/'+layer) < layer_slice[1] -> else outside_layer_slice",
            "coverage: bucket(salt+'/coverage') < coverage_buckets -> else not_covered",
            "variant i owns variant buckets [E(i-1), E(i)), E(i) = 10000 * (w1+..+wi) // (w1+..+wn)",
        ],
        "buckets": buckets,
        "designs": DESIGNS,
        "assignments": assignments,
    }
    OUT.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(buckets)} bucket cases and {len(assignments)} assignment cases to {OUT}")


if __name__ == "__main__":
    main()
