"""RunningDesigns: what a server assigns from, read from the store at most once a second per experiment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments.assignment import assign
from experiments.definitions import Experiment
from experiments.errors import StoreError
from experiments.service import RunningDesigns, assign_unit
from experiments.store import ExperimentStore


def test_a_design_is_read_once_a_second_and_a_stop_arrives_within_it(tmp_path: Path) -> None:
    store = ExperimentStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create(Experiment(key="banner", variants=("control", "treatment"), weights=(30, 70)))
    designs = RunningDesigns(store, seconds=0.5)
    with pytest.raises(StoreError, match="draft, not running"):
        designs.get("banner")
    store.start("banner")
    store.set_holdout(fraction=0.1)
    reads = 0
    plain_get = store.get

    def counted(key: str) -> Experiment:
        nonlocal reads
        reads += 1
        return plain_get(key)

    store.get = counted  # type: ignore[method-assign]
    for i in range(200):  # the same answer as the pure function on the stored design
        unit = f"u{i}"
        expected = assign(design=plain_get("banner").design(), unit_id=unit, holdout=store.holdout())
        variant, reason = assign_unit(designs=designs, experiment="banner", unit_id=unit)
        assert (variant, reason) == (expected.variant, str(expected.reason))
    assert reads == 1

    store.stop("banner")
    assert designs.get("banner")  # still the design read less than half a second ago
    time.sleep(0.6)
    with pytest.raises(StoreError, match="stopped, not running"):
        designs.get("banner")
