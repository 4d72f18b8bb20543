"""RunningDesigns: what a server assigns from, read from the store at most once a second per experiment."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from experiments.assignment import assign
from experiments.definitions import Experiment
from experiments.errors import StoreError, UnknownExperimentError
from experiments.exposures import ExposureLog, GroupCommit
from experiments.service import RunningDesigns, assign_unit, assign_unit_async
from experiments.store import ExperimentStore


def _count_reads(store: ExperimentStore) -> list[int]:
    """Count the store's reads of a definition from now on: ``[reads]``, updated in place."""
    reads = [0]
    plain_get = store.get

    def counted(key: str) -> Experiment:
        reads[0] += 1
        return plain_get(key)

    store.get = counted  # type: ignore[method-assign]
    return reads


def test_a_design_is_read_once_a_second_and_a_stop_arrives_within_it(tmp_path: Path) -> None:
    store = ExperimentStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.create(Experiment(key="banner", variants=("control", "treatment"), weights=(30, 70)))
    with pytest.raises(StoreError, match="draft, not running"):
        RunningDesigns(store).get("banner")
    store.start("banner")
    designs = RunningDesigns(store, seconds=60)  # long enough that a slow machine still reads once
    store.set_holdout(fraction=0.1)
    design, holdout = store.get("banner").design(), store.holdout()
    reads = _count_reads(store)
    for i in range(200):  # the same answer as the pure function on the stored design
        unit = f"u{i}"
        expected = assign(design=design, unit_id=unit, holdout=holdout)
        variant, reason = assign_unit(designs=designs, experiment="banner", unit_id=unit)
        assert (variant, reason) == (expected.variant, str(expected.reason))
    assert reads[0] == 1

    quick = RunningDesigns(store, seconds=2)
    assert quick.get("banner")
    store.stop("banner")
    assert quick.get("banner")  # still the design read less than 2 s ago
    time.sleep(2.1)
    with pytest.raises(StoreError, match="stopped, not running"):
        quick.get("banner")


@pytest.mark.parametrize("grouped", [True, False])
def test_async_assignment_returns_after_its_exposure_is_committed(tmp_path: Path, grouped: bool) -> None:
    """Many concurrent coroutines, through a group commit (awaited future) or a plain log (thread): each
    answer equals the pure function's, and once they are all answered every enrolled unit is in the log."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store = ExperimentStore(url)
    store.create(Experiment(key="banner", variants=("control", "treatment"), weights=(30, 70)))
    store.start("banner")
    store.set_holdout(fraction=0.2)
    design, holdout = store.get("banner").design(), store.holdout()
    plain = ExposureLog(url)
    log = GroupCommit(plain) if grouped else plain
    designs = RunningDesigns(store, seconds=60)
    units = [f"u{i}" for i in range(300)]

    async def everyone() -> list[tuple[str | None, str]]:
        return await asyncio.gather(
            *(assign_unit_async(designs=designs, experiment="banner", unit_id=u, log=log) for u in units)
        )

    answers = asyncio.run(everyone())
    expected = [assign(design=design, unit_id=u, holdout=holdout) for u in units]
    assert answers == [(e.variant, str(e.reason)) for e in expected]
    logged = plain.read(experiment="banner")  # read before closing: nothing waits on a later flush
    enrolled = {u: e.variant for u, e in zip(units, expected, strict=True) if e.variant is not None}
    assert 0 < len(enrolled) < len(units)  # the holdout kept some out
    assert dict(zip(logged["unit_id"], logged["variant"], strict=True)) == enrolled
    if isinstance(log, GroupCommit):
        log.close()


def test_a_refusal_is_remembered_too_and_a_start_arrives_within_the_window(tmp_path: Path) -> None:
    """A server asks every request whether an optional experiment runs: unknown or draft, the store is
    read once per window, each ask gets a fresh error, and a start is seen once the window has passed."""
    store = ExperimentStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    reads = _count_reads(store)
    designs = RunningDesigns(store, seconds=2)
    errors = []
    for _ in range(50):
        with pytest.raises(UnknownExperimentError, match="explore") as caught:
            designs.get("explore")
        errors.append(caught.value)
    assert reads[0] == 1 and len({id(e) for e in errors}) == 50
    assert not designs.running("explore")
    store.create(Experiment(key="explore", variants=("control", "treatment"), weights=(50, 50)))
    store.start("explore")
    assert not designs.running("explore")  # still the refusal read less than 2 s ago
    time.sleep(2.1)
    assert designs.running("explore") and reads[0] == 2
