"""Deterministic assignment of units to experiment variants.

The hash (version 1), the only thing another client must reproduce bit for bit::

    bucket_v1(salt, unit_id) = int.from_bytes(sha256(f"{salt}:{unit_id}".encode("utf-8"))[:8], "big") % 10_000

i.e. the first 8 bytes of the SHA-256 digest of ``salt + ":" + unit_id`` (UTF-8), read as an unsigned
big-endian 64-bit integer, modulo 10,000 (the bias of 2**64 mod 10,000 is below 1e-15). Salts may not
contain ``:`` or ``/``, so the input is unambiguous and the derived salts below never collide with a
user's salt.

One unit is assigned to one experiment in this order (first failing step wins):

1. global holdout: ``bucket_v1("holdout/" + holdout.salt, unit) < holdout.buckets`` → ``holdout``;
2. targeting: every rule must match the unit's attributes → else ``not_targeted``;
3. layer: ``bucket_v1("layer/" + layer, unit)`` must lie in the experiment's ``[start, end)`` slice of
   the layer; slices of one layer never overlap, so a unit is in at most one experiment per layer
   → else ``outside_layer_slice``;
4. coverage: ``bucket_v1(salt + "/coverage", unit) < coverage_buckets`` → else ``not_covered``. This hash
   is independent of the variant hash, so changing coverage only adds or removes units;
5. variant: ``b = bucket_v1(salt, unit)``; variant ``i`` owns buckets ``[E(i-1), E(i))`` where
   ``E(i) = 10_000 * (w_1 + ... + w_i) // (w_1 + ... + w_n)`` (integer weights).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BUCKETS = 10_000
HASH_VERSION = 1
SALT_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
OPS = ("in", "not_in", ">=", "<=", ">", "<")

ASSIGNED = "assigned"
HOLDOUT = "holdout"
NOT_TARGETED = "not_targeted"
OUTSIDE_LAYER = "outside_layer_slice"
NOT_COVERED = "not_covered"


def bucket_v1(salt: str, unit_id: str) -> int:
    """Hash one unit into one of 10,000 buckets (hash version 1, see the module docstring).

    Args:
        salt: Experiment salt (or a derived salt such as ``"layer/NAME"``).
        unit_id: The unit's id, as a string.

    Returns:
        The bucket, an integer in ``[0, 10000)``.
    """
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def buckets_v1(salt: str, unit_ids: Sequence[str]) -> np.ndarray:
    """Vectorised :func:`bucket_v1` over many units.

    Args:
        salt: Experiment salt (or a derived salt).
        unit_ids: The units' ids, as strings.

    Returns:
        An ``int64`` array of buckets, one per unit.
    """
    sha = hashlib.sha256
    prefix = f"{salt}:"
    packed = b"".join([sha((prefix + u).encode()).digest()[:8] for u in unit_ids])
    return (np.frombuffer(packed, dtype=">u8") % np.uint64(BUCKETS)).astype(np.int64)


def check_salt(salt: str) -> str:
    """Validate a salt, experiment key, or layer name.

    Args:
        salt: The candidate string.

    Returns:
        The same string.

    Raises:
        ValueError: If it holds anything but letters, digits, ``_``, ``.``, ``-`` (1–64 characters).
    """
    if not SALT_PATTERN.match(salt):
        raise ValueError(f"{salt!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    return salt


def to_buckets(fraction: float) -> int:
    """Convert a fraction in [0, 1] to a whole number of buckets (``round(fraction * 10000)``).

    Args:
        fraction: Share of traffic.

    Returns:
        Number of buckets.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    return round(fraction * BUCKETS)


@dataclass(frozen=True)
class Rule:
    """A targeting rule on one unit attribute, e.g. ``country in (FR, DE)`` or ``tenure_days >= 30``.

    ``in`` / ``not_in`` compare as strings; the comparisons compare numbers. A unit that lacks the
    attribute (or whose value is not a number for a comparison) does not match.
    """

    attribute: str
    op: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown targeting operator {self.op!r}; use one of {', '.join(OPS)}")
        if not self.values:
            raise ValueError(f"targeting rule on {self.attribute!r} has no value")
        if self.op not in ("in", "not_in"):
            if len(self.values) != 1:
                raise ValueError(f"{self.op} takes one value, got {self.values}")
            try:
                float(self.values[0])
            except ValueError:
                raise ValueError(
                    f"targeting rule {self.attribute}{self.op}{self.values[0]}: {self.op} takes a number"
                ) from None

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse ``attr=a,b`` (in), ``attr!=a,b`` (not in), ``attr>=x``, ``attr<=x``, ``attr>x``, ``attr<x``.

        Args:
            text: The rule as typed on the command line.

        Returns:
            The rule.
        """
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(!=|>=|<=|=|>|<)\s*(.+?)\s*$", text)
        if not match:
            raise ValueError(
                f"cannot read targeting rule {text!r}; write e.g. country=FR,DE or tenure_days>=30"
            )
        attribute, sym, raw = match.groups()
        op = {"=": "in", "!=": "not_in"}.get(sym, sym)
        values = tuple(v.strip() for v in raw.split(",")) if op in ("in", "not_in") else (raw,)
        return cls(attribute=attribute, op=op, values=values)

    def matches(self, attributes: Mapping[str, object]) -> bool:
        """Whether one unit's attributes satisfy the rule (pure Python; same answer as :meth:`mask`).

        Args:
            attributes: The unit's attributes.

        Returns:
            True when the rule holds.
        """
        value = attributes.get(self.attribute)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.op in ("in", "not_in"):
            return (str(value) in self.values) == (self.op == "in")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        bound = float(self.values[0])
        return {">=": number >= bound, "<=": number <= bound, ">": number > bound, "<": number < bound}[
            self.op
        ]

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Vectorised :meth:`matches` over a table with one row per unit.

        Args:
            frame: Unit attributes, one column per attribute.

        Returns:
            Boolean array, one entry per row.
        """
        if self.attribute not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        column = frame[self.attribute]
        present = column.notna().to_numpy()
        if self.op in ("in", "not_in"):
            inside = column.astype(str).isin(self.values).to_numpy()
            return present & (inside if self.op == "in" else ~inside)
        number = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        bound = float(self.values[0])
        with np.errstate(invalid="ignore"):
            result = {">=": number >= bound, "<=": number <= bound, ">": number > bound, "<": number < bound}
        return present & result[self.op]

    def __str__(self) -> str:
        sym = {"in": "=", "not_in": "!="}.get(self.op, self.op)
        return f"{self.attribute}{sym}{','.join(self.values)}"


@dataclass(frozen=True)
class Holdout:
    """A global holdout: units in its buckets are in no experiment."""

    salt: str = "global"
    buckets: int = 0


@dataclass(frozen=True)
class Design:
    """Everything assignment needs to know about one experiment.

    Args:
        salt: Experiment salt (usually the key).
        variants: Variant names, in bucket order.
        weights: Positive integer weights, one per variant.
        coverage_buckets: Buckets (of 10,000) of the coverage hash that are enrolled.
        layer: Layer (namespace) name, or None.
        layer_slice: ``(start, end)`` of the layer's buckets this experiment owns.
        targeting: Rules that must all hold.
    """

    salt: str
    variants: tuple[str, ...]
    weights: tuple[int, ...]
    coverage_buckets: int = BUCKETS
    layer: str | None = None
    layer_slice: tuple[int, int] = (0, BUCKETS)
    targeting: tuple[Rule, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_salt(self.salt)
        if len(self.variants) < 2 or len(set(self.variants)) != len(self.variants):
            raise ValueError("an experiment needs at least two variants with distinct names")
        if len(self.weights) != len(self.variants) or any(w <= 0 for w in self.weights):
            raise ValueError("give one positive integer weight per variant")
        if not 0 <= self.coverage_buckets <= BUCKETS:
            raise ValueError("coverage must be within [0, 10000] buckets")
        start, end = self.layer_slice
        if not 0 <= start < end <= BUCKETS:
            raise ValueError(f"layer slice {self.layer_slice} must satisfy 0 <= start < end <= 10000")
        if self.layer is not None:
            check_salt(self.layer)

    @property
    def upper_bounds(self) -> tuple[int, ...]:
        """:meth:`boundaries` as a tuple of ints (cached), for the single-unit path."""
        cached = self.__dict__.get("_upper_bounds")
        if cached is None:
            cached = tuple(int(b) for b in self.boundaries())
            object.__setattr__(self, "_upper_bounds", cached)
        return cached

    def boundaries(self) -> np.ndarray:
        """Upper bucket bound of each variant: ``10000 * cumsum(weights) // sum(weights)``.

        Returns:
            Integer array, one entry per variant, the last being 10,000.
        """
        cumulative = np.cumsum(np.asarray(self.weights, dtype=np.int64))
        bounds: np.ndarray = (BUCKETS * cumulative) // cumulative[-1]
        return bounds

    def bucket_shares(self) -> np.ndarray:
        """Exact share of enrolled traffic each variant receives (its buckets / 10,000).

        Returns:
            Float array summing to 1.
        """
        return np.diff(np.concatenate([[0], self.boundaries()])) / BUCKETS


@dataclass(frozen=True)
class Assignment:
    """The outcome for one unit: its variant (None when not enrolled) and why."""

    unit_id: str
    variant: str | None
    bucket: int
    reason: str


def assign(
    *,
    design: Design,
    unit_id: str,
    attributes: Mapping[str, object] | None = None,
    holdout: Holdout | None = None,
) -> Assignment:
    """Assign one unit (pure function: same inputs, same answer, on every machine).

    Args:
        design: The experiment's design.
        unit_id: The unit's id.
        attributes: The unit's attributes for targeting.
        holdout: The global holdout, if any.

    Returns:
        The assignment.
    """
    # A plain-Python path: this is what a request handler calls for one unit at a time.
    if (
        holdout is not None
        and holdout.buckets > 0
        and bucket_v1(f"holdout/{holdout.salt}", unit_id) < holdout.buckets
    ):
        reason = HOLDOUT
    elif design.targeting and not all(rule.matches(attributes or {}) for rule in design.targeting):
        reason = NOT_TARGETED
    elif design.layer is not None and not (
        design.layer_slice[0] <= bucket_v1(f"layer/{design.layer}", unit_id) < design.layer_slice[1]
    ):
        reason = OUTSIDE_LAYER
    elif (
        design.coverage_buckets < BUCKETS
        and bucket_v1(f"{design.salt}/coverage", unit_id) >= design.coverage_buckets
    ):
        reason = NOT_COVERED
    else:
        reason = ASSIGNED
    bucket = bucket_v1(design.salt, unit_id)
    variant = (
        design.variants[bisect.bisect_right(design.upper_bounds, bucket)] if reason == ASSIGNED else None
    )
    return Assignment(unit_id=unit_id, variant=variant, bucket=bucket, reason=reason)


def assign_many(
    *,
    design: Design,
    unit_ids: Sequence[str],
    attributes: pd.DataFrame | None = None,
    holdout: Holdout | None = None,
) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    """Assign many units at once (vectorised; identical to calling :func:`assign` per unit).

    Args:
        design: The experiment's design.
        unit_ids: The units' ids.
        attributes: Attributes aligned with ``unit_ids`` (one row per unit), needed for targeting.
        holdout: The global holdout, if any.

    Returns:
        ``(variants, variant_buckets, reasons)``: the variant per unit (None when not enrolled), the
        variant-hash bucket per unit, and the reason per unit.
    """
    ids = [str(u) for u in unit_ids]
    n = len(ids)
    reasons = np.full(n, ASSIGNED, dtype=object)
    open_ = np.ones(n, dtype=bool)

    def close(mask: np.ndarray, reason: str) -> None:
        reasons[open_ & mask] = reason
        open_[mask] = False

    if holdout is not None and holdout.buckets > 0:
        close(buckets_v1(f"holdout/{holdout.salt}", ids) < holdout.buckets, HOLDOUT)
    if design.targeting:
        frame = attributes if attributes is not None else pd.DataFrame(index=range(n))
        if len(frame) != n:
            raise ValueError("attributes must have one row per unit")
        frame = frame.reset_index(drop=True)
        targeted = np.ones(n, dtype=bool)
        for rule in design.targeting:
            targeted &= rule.mask(frame)
        close(~targeted, NOT_TARGETED)
    if design.layer is not None:
        layer_bucket = buckets_v1(f"layer/{design.layer}", ids)
        start, end = design.layer_slice
        close((layer_bucket < start) | (layer_bucket >= end), OUTSIDE_LAYER)
    if design.coverage_buckets < BUCKETS:
        close(buckets_v1(f"{design.salt}/coverage", ids) >= design.coverage_buckets, NOT_COVERED)
    variant_bucket = buckets_v1(design.salt, ids)
    index = np.searchsorted(design.boundaries(), variant_bucket, side="right")
    names = np.asarray(design.variants, dtype=object)[index]
    variants: list[str | None] = [str(v) if ok else None for v, ok in zip(names, open_, strict=True)]
    return variants, variant_bucket, reasons


def allocate_slice(*, taken: Sequence[tuple[int, int]], size: int) -> tuple[int, int]:
    """First free contiguous range of ``size`` layer buckets, given the slices already taken.

    Args:
        taken: ``(start, end)`` slices held by the layer's live experiments.
        size: Number of buckets wanted (1..10000).

    Returns:
        The ``(start, end)`` slice.

    Raises:
        ValueError: If no free range of that size is left in the layer.
    """
    if not 1 <= size <= BUCKETS:
        raise ValueError(f"a layer slice needs between 1 and {BUCKETS} buckets, got {size}")
    for low, high in _gaps(taken):
        if high - low >= size:
            return low, low + size
    raise ValueError(f"no free range of {size} buckets is left in this layer")


def _gaps(taken: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    cursor, gaps = 0, []
    for start, end in sorted(taken):
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    gaps.append((cursor, BUCKETS))
    return gaps
