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
2025-08-14 .. 2025-11-20. Horizon 90 days, look-back 365 days.

Diagnostics of a miss, per date (they read the scored date's labels, so they are never a method):

* ``rate_gap``: the unshifted model's mean probability minus the actual churn rate;
* ``level_oracle``: the model with the one log-odds offset that makes its mean the actual churn rate, the
  best any date shift could do; what it leaves is a change in the shape of P(churn | features) plus
  sampling noise;
* ``noise_floor``: the mean ECE of outcomes drawn from ``level_oracle``'s own probabilities (a perfectly
  calibrated model measured on as many users);
* ``nowcast``: the churn rate estimated from partly observed label windows (for the date ``k`` days
  before the scored one, the share of users with no return in those ``k`` days times the share of such
  users who stayed away for the rest of the horizon on the three latest fully labelled dates), and the
  ECE when the offset makes the model's mean that rate, for ``k`` = 20, 34, 48 and 62 days.
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
from typing import Any

import numpy as np
import pandas as pd

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


NOWCAST_DAYS = (20, 34, 48, 62)


def _active(events: pd.DataFrame, start: pd.Timestamp, stop: pd.Timestamp) -> np.ndarray:
    """Users with an event in ``[start, stop)`` (``events`` holds activity only)."""
    return np.asarray(events.loc[(events["ts"] >= start) & (events["ts"] < stop), "user_id"].unique())


def nowcast_rate(events: pd.DataFrame, target: date, observed: int, *, lookback: int = 365) -> float:
    """Churn rate at ``target`` from the partly observed window of the date ``observed`` days before it.

    Reads only activity before ``target``: no return in the first ``observed`` days at that date, times
    the share of users without a return in their first ``observed`` days who stayed away for the rest of
    the horizon at the three latest fully labelled dates (``HORIZON`` days before ``target`` and earlier,
    ``STEP`` apart).
    """
    ev = events.loc[(events["event_type"] != "refund") & (events["ts"] < pd.Timestamp(target))]
    end, day = pd.Timestamp(target), pd.Timedelta(days=1)
    start = end - observed * day
    population = _active(ev, start - lookback * day, start)
    silent = 1 - np.isin(population, _active(ev, start, end)).mean()
    stayed = []
    for j in range(3):
        ref = end - (HORIZON + STEP * j) * day
        quiet = np.setdiff1d(_active(ev, ref - lookback * day, ref), _active(ev, ref, ref + observed * day))
        stayed.append(1 - np.isin(quiet, _active(ev, ref + observed * day, ref + HORIZON * day)).mean())
    return float(silent * np.mean(stayed))


def _diagnostics(
    p: np.ndarray, y: np.ndarray, events: pd.DataFrame, target: date, seed: int
) -> dict[str, Any]:
    """Why the unshifted probabilities ``p`` miss at ``target`` (module docstring); reads ``y``."""
    from training.calibration import offset_for_rate, shift_logit
    from training.evaluate import expected_calibration_error

    level = shift_logit(p, offset_for_rate(p, float(y.mean())))
    rng = np.random.default_rng(seed)
    floor = [expected_calibration_error(rng.random(len(level)) < level, level) for _ in range(200)]
    nowcast = {}
    for k in NOWCAST_DAYS:
        rate = nowcast_rate(events, target, k)
        shifted = shift_logit(p, offset_for_rate(p, rate))
        nowcast[str(k)] = {"rate": round(rate, 4), "ece": round(expected_calibration_error(y, shifted), 4)}
    return {
        "rate_gap": round(float(p.mean() - y.mean()), 4),
        "level_oracle_ece": round(expected_calibration_error(y, level), 4),
        "noise_floor_ece": round(float(np.mean(floor)), 4),
        "nowcast": nowcast,
    }


def _summary(diags: list[dict[str, Any]]) -> dict[str, object]:
    """Median and worst of each diagnostic over the scored dates (the range of the rate gap)."""

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": round(float(np.median(values)), 4), "max": round(float(np.max(values)), 4)}

    gaps = [float(d["rate_gap"]) for d in diags]
    return {
        "rate_gap": {"min": min(gaps), "max": max(gaps)},
        "level_oracle_ece": spread([d["level_oracle_ece"] for d in diags]),
        "noise_floor_ece": spread([d["noise_floor_ece"] for d in diags]),
        **{f"nowcast_{k}d_ece": spread([d["nowcast"][str(k)]["ece"] for d in diags]) for k in NOWCAST_DAYS},
    }


def _dataset(folder: Path, first: date, t0: float) -> dict[str, object]:
    from features.contract import load_table
    from training.churn import MODEL_NAME, UNSHIFTED, ChurnOptions, train_kind

    events = load_table(folder, "events", required=True)
    assert events is not None
    rows = []
    diags: list[dict[str, Any]] = []
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
        row["diagnostics"] = diag = _diagnostics(
            result.scored_scores[UNSHIFTED], result.scored_labels, events, target, seed=k
        )
        diags.append(diag)
        rows.append(row)
        _say(f"{folder.name} {target}: {row['date_shift']} ece {row['model']}", t0)

    def stat(key: str, metric: str) -> list[float]:
        return [float(r[key][metric]) for r in rows]  # type: ignore[index]

    ece, ece_before = stat("model", "ece"), stat("unshifted", "ece")
    diagnostics = _summary(diags)
    return {
        "dates": rows,
        "median_ece": round(float(np.median(ece)), 4),
        "max_ece": round(float(np.max(ece)), 4),
        "median_ece_unshifted": round(float(np.median(ece_before)), 4),
        "max_ece_unshifted": round(float(np.max(ece_before)), 4),
        "median_roc_auc": round(float(np.median(stat("model", "roc_auc"))), 4),
        "median_roc_auc_unshifted": round(float(np.median(stat("unshifted", "roc_auc"))), 4),
        "target_met": bool(np.median(ece) <= 0.03 and np.max(ece) <= 0.05),
        "diagnostics": diagnostics,
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
