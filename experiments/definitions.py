"""Experiment definitions: what an experiment is, independent of where it is stored.

This is where a definition typed by a person (variants text, coverage, targeting rules) is read; anything
that cannot make a valid definition is refused with a one-line :class:`~experiments.errors.StoreError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from experiments.assignment import BUCKETS, HASH_VERSION, Design, Rule, check_salt, to_buckets
from experiments.errors import StoreError

DRAFT, RUNNING, STOPPED = "draft", "running", "stopped"
STATUSES = (DRAFT, RUNNING, STOPPED)
CONTROL = "control"


@dataclass(frozen=True)
class Experiment:
    """One experiment's definition and lifecycle state.

    Args:
        key: Unique key; also the default salt.
        variants: Variant names in bucket order; the one named ``control`` is the baseline.
        weights: Positive integer weights, one per variant.
        salt: Hash salt (defaults to the key).
        coverage_buckets: Enrolled share of traffic, in buckets of 10,000.
        layer: Layer (namespace) or None.
        layer_slice: The ``[start, end)`` layer buckets this experiment owns.
        targeting: Targeting rules (all must hold).
        metrics: Primary metrics, e.g. ``conversion``, ``revenue``.
        guardrails: Guardrail metrics (watched for harm, kept out of the multiple-testing family).
        description: Free text for people.
        status: ``draft``, ``running`` or ``stopped``.
        hash_version: Version of the bucket hash (see :mod:`experiments.assignment`).
        revision: Incremented by every stored change.
        created_at: When it was created (naive UTC).
        started_at: When it was started.
        stopped_at: When it was stopped.

    Raises:
        StoreError: The definition is not valid (key, variants, weights, coverage, layer, status).
    """

    key: str
    variants: tuple[str, ...]
    weights: tuple[int, ...]
    salt: str = ""
    coverage_buckets: int = BUCKETS
    layer: str | None = None
    layer_slice: tuple[int, int] = (0, BUCKETS)
    targeting: tuple[Rule, ...] = ()
    metrics: tuple[str, ...] = ()
    guardrails: tuple[str, ...] = ()
    description: str = ""
    status: str = DRAFT
    hash_version: int = HASH_VERSION
    revision: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    def __post_init__(self) -> None:
        try:
            check_salt(self.key)
            if not self.salt:
                object.__setattr__(self, "salt", self.key)
            if self.status not in STATUSES:
                raise ValueError(f"unknown status {self.status!r}; use {', '.join(STATUSES)}")
            if self.hash_version != HASH_VERSION:
                raise ValueError(
                    f"hash version {self.hash_version} is not supported (this build knows {HASH_VERSION})"
                )
            object.__setattr__(self, "weights", tuple(int(w) for w in self.weights))
            self.design()  # validates variants, weights, coverage, layer
        except ValueError as error:
            raise StoreError(str(error)) from error

    def design(self) -> Design:
        """The part of the definition that assignment needs.

        Returns:
            The design.
        """
        return Design(
            salt=self.salt,
            variants=self.variants,
            weights=self.weights,
            coverage_buckets=self.coverage_buckets,
            layer=self.layer,
            layer_slice=self.layer_slice,
            targeting=self.targeting,
        )

    @property
    def coverage(self) -> float:
        """Enrolled share of traffic in [0, 1]."""
        return self.coverage_buckets / BUCKETS

    def replace(self, **changes: Any) -> Experiment:
        """A copy with some fields changed (validated again).

        Args:
            **changes: Field values.

        Returns:
            The new definition.
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO strings, rules as ``attr=a,b`` strings).

        Returns:
            The dict.
        """
        return {
            "key": self.key,
            "status": self.status,
            "salt": self.salt,
            "hash_version": self.hash_version,
            "variants": [{"name": n, "weight": w} for n, w in zip(self.variants, self.weights, strict=True)],
            "coverage": self.coverage,
            "layer": self.layer,
            "layer_slice": list(self.layer_slice),
            "targeting": [str(rule) for rule in self.targeting],
            "metrics": list(self.metrics),
            "guardrails": list(self.guardrails),
            "description": self.description,
            "revision": self.revision,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "stopped_at": _iso(self.stopped_at),
        }


def parse_variants(text: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Read ``control=50,treatment=50`` (or ``control,treatment`` for equal weights).

    Args:
        text: Comma-separated variants with optional ``=weight``.

    Returns:
        ``(names, weights)``.

    Raises:
        StoreError: A name is not a valid name or a weight is not an integer.
    """
    names: list[str] = []
    weights: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        try:
            check_salt(name.strip())
        except ValueError as error:
            raise StoreError(f"variant name {error}") from error
        try:
            value = int(weight) if weight.strip() else 1
        except ValueError:
            raise StoreError(f"weight of {name!r} must be a positive integer, got {weight!r}") from None
        names.append(name.strip())
        weights.append(value)
    return tuple(names), tuple(weights)


def parse_targeting(texts: Iterable[str]) -> tuple[Rule, ...]:
    """Read targeting rules as typed: ``country=FR,DE``, ``plan!=free``, ``tenure_days>=30``.

    Args:
        texts: One rule per text; all of them must hold for a unit to be targeted.

    Returns:
        The rules.

    Raises:
        StoreError: A rule cannot be read.
    """
    rules = []
    for text in texts:
        try:
            rules.append(Rule.parse(text))
        except ValueError as error:
            raise StoreError(str(error)) from error
    return tuple(rules)


def coverage_buckets(fraction: float) -> int:
    """The enrolled share of traffic as buckets of 10,000 (see :func:`experiments.assignment.to_buckets`).

    Args:
        fraction: Share of eligible traffic, in [0, 1].

    Returns:
        Number of buckets.

    Raises:
        StoreError: The fraction is outside [0, 1].
    """
    try:
        return to_buckets(fraction)
    except ValueError as error:
        raise StoreError(f"coverage: {error}") from error


def edits(
    *,
    variants: str | None = None,
    coverage: float | None = None,
    targeting: Iterable[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The changes to pass to :meth:`experiments.store.ExperimentStore.update`, from text as typed.

    Args:
        variants: New variants and weights (``control=50,treatment=50``), when given.
        coverage: New coverage in [0, 1], when given.
        targeting: Rules that replace the current ones, when given (empty = no targeting).
        description: New description, when given.

    Returns:
        Field name → new value, only for what was given.

    Raises:
        StoreError: A value cannot be read.
    """
    changes: dict[str, Any] = {}
    if variants is not None:
        changes["variants"], changes["weights"] = parse_variants(variants)
    if coverage is not None:
        changes["coverage_buckets"] = coverage_buckets(coverage)
    if targeting is not None:
        changes["targeting"] = parse_targeting(targeting)
    if description is not None:
        changes["description"] = description
    return changes


def weights_by_name(experiment: Experiment) -> Mapping[str, int]:
    """Weights keyed by variant name.

    Args:
        experiment: The experiment.

    Returns:
        ``{variant: weight}``.
    """
    return dict(zip(experiment.variants, experiment.weights, strict=True))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
