"""One contract for every uplift learner: fit -> predict -> save -> load -> same predictions; same seed,
same result; the fast matrix path equals the frame path; a clear effect is found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.offers.catalogue import catalogue_from_frame
from training.offers.model import OfferModel
from training.offers.uplift import LEARNERS, FeatureEncoder


def _units(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"age": rng.integers(18, 70, n).astype(float), "plan": rng.choice(["basic", "pro", None], n)}
    )
    arm = rng.integers(0, 3, n)
    effect = np.where(frame["plan"] == "basic", 0.3, 0.0) * (arm == 1) + 0.1 * (arm == 2)
    y = (rng.random(n) < 0.3 + effect).astype(float)
    return frame, arm, y


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_learner_contract(name: str, tmp_path: Path) -> None:
    frame, arm, y = _units()
    encoder = FeatureEncoder(["age", "plan"], ["plan"]).fit(frame)
    x = encoder.transform(frame)
    prop = np.full(len(y), 1 / 3)
    learner = LEARNERS[name](2, seed=3).fit(x, arm, y, prop)
    uplift = learner.predict(x)
    assert uplift.shape == (len(frame), 2)
    np.testing.assert_allclose(learner.predict(encoder.matrix(frame)), uplift)
    again = LEARNERS[name](2, seed=3).fit(x, arm, y, prop)
    np.testing.assert_array_equal(again.predict(x), uplift)
    catalogue = catalogue_from_frame(pd.DataFrame({"offer_id": ["a", "b"], "cost": [1.0, 1.0]}))
    model = OfferModel(learner, encoder, catalogue, "activity", 30, default_value=10.0)
    loaded = OfferModel.load(model.save(tmp_path / "m.pkl"))
    np.testing.assert_array_equal(loaded.predict_uplift(frame), uplift)
    # the effect of offer a on basic users (+30 pts) is found, and it is larger there than elsewhere
    basic = (frame["plan"] == "basic").to_numpy()
    assert uplift[basic, 0].mean() > uplift[~basic, 0].mean() + 0.15
    assert abs(uplift[:, 1].mean() - 0.1) < 0.06
