"""Benchmark: churn probabilities calibrated at the scored date, over 8 consecutive scored dates.

Targets (issue 17): median ECE <= 0.03 with no date above 0.05, on Online Retail and on a simulated world
whose churn rate trends; ROC-AUC not lower than without the date shift.

For every scored date D (14 days apart) the churn model is trained as of D exactly as ``userops train
churn`` does (back-test dates before D only; the date shift reads D's features, never its labels) and then
measured on D's own label window, which the folder already holds. Each row gives the model with its date
shift, the model as calibrated on the latest back-test date (``unshifted``: the behaviour before the
shift), and the three baselines.

Data: Online Retail (``RETAIL_SRC``, default ``../shared/data/online_retail/online_retail.parquet``,
ingested with ``userops ingest --preset online-retail``), scored 2011-05-26 .. 2011-09-01; and a simulated
world of 5,000 users over 420 days with ``churn_trend=1.0`` (the hazard rises by e over a year), scored
2025-08-14 .. 2025-10-30. Horizon 90 days, look-back 365 days.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import record

ROOT = Path(__file__).resolve().parents[1]
RETAIL_SRC = Path(
    os.environ.get("RETAIL_SRC", ROOT.parent / "shared/data/online_retail/online_retail.parquet")
)
HORIZON = 90
N_DATES = 8
STEP = 14


def _say(what: str, since: float) -> None:
    print(f"[{time.perf_counter() - since:7.1f} s] {what}", file=sys.stderr, flush=True)


def _dataset(folder: Path, first: date, t0: float) -> dict[str, object]:
    from training.churn import MODEL_NAME, UNSHIFTED, ChurnOptions, train_kind

    rows = []
    for k in range(N_DATES):
        target = first + timedelta(days=STEP * k)
        result = train_kind(folder, target, horizon=HORIZON, kind="churn", options=ChurnOptions())
        assert result.scored is not None and result.scored_labels is not None
        table = result.scored
        row: dict[str, object] = {
            "scored_date": str(target),
            "churn_rate": round(float(result.scored_labels.mean()), 4),
            "users": len(result.scored_labels),
            "date_shift": result.model.date_shift_,
            "offset": round(result.model.date_offset_, 4),
            "backtest_ece": {m: round(v, 4) for m, v in result.model.date_shift_backtest_.items()},
        }
        for name in table.index:
            key = {MODEL_NAME: "model", UNSHIFTED: "unshifted"}.get(str(name), str(name))
            row[key] = {m: round(float(table.loc[name, m]), 4) for m in ("ece", "brier", "roc_auc")}
        rows.append(row)
        _say(f"{folder.name} {target}: {row['date_shift']} ece {row['model']}", t0)

    def stat(key: str, metric: str) -> list[float]:
        return [float(r[key][metric]) for r in rows]  # type: ignore[index]

    ece, ece_before = stat("model", "ece"), stat("unshifted", "ece")
    return {
        "dates": rows,
        "median_ece": round(float(np.median(ece)), 4),
        "max_ece": round(float(np.max(ece)), 4),
        "median_ece_unshifted": round(float(np.median(ece_before)), 4),
        "max_ece_unshifted": round(float(np.max(ece_before)), 4),
        "median_roc_auc": round(float(np.median(stat("model", "roc_auc"))), 4),
        "median_roc_auc_unshifted": round(float(np.median(stat("unshifted", "roc_auc"))), 4),
        "target_met": bool(np.median(ece) <= 0.03 and np.max(ece) <= 0.05),
    }


def main() -> None:
    warnings.filterwarnings("ignore")
    from simulator.simulate import WorldConfig, simulate

    t0 = time.perf_counter()
    figures: dict[str, object] = {"horizon_days": HORIZON, "step_days": STEP}
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "trending_world"
        simulate(WorldConfig(n_users=5000, days=420, seed=11, churn_trend=1.0), world)
        _say("simulated", t0)
        figures["simulated_trending"] = _dataset(world, date(2025, 8, 14), t0)
        if RETAIL_SRC.exists():
            retail = Path(tmp) / "online_retail"
            userops = Path(sys.executable).with_name("userops")
            subprocess.run(
                [
                    str(userops),
                    "ingest",
                    "--events",
                    str(RETAIL_SRC),
                    "--preset",
                    "online-retail",
                    "--out",
                    str(retail),
                ],
                check=True,
                capture_output=True,
            )
            _say("ingested Online Retail", t0)
            figures["online_retail"] = _dataset(retail, date(2011, 5, 26), t0)
        else:
            figures["online_retail"] = f"not run: {RETAIL_SRC} not found"
    record("calibration", figures)


if __name__ == "__main__":
    main()
