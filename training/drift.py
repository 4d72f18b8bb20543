"""Population stability index: has a feature's distribution moved since training?

The reference is the training rows of the latest as-of date (the snapshot closest to scoring; pooling
every back-test date would flag features that merely grow with the history, such as tenure). Its
distribution is kept as a small reference (decile edges and shares for numbers,
level shares for categories, plus the share of nulls) inside the fitted model, so every scoring run can
compare without the training data. PSI above 0.2 is the usual "significant shift" line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

PSI_WARN = 0.2
_FLOOR = 1e-4  # share given to an empty bin so the log stays finite


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(np.asarray(expected, dtype=float), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def population_stability_index(expected: np.ndarray, actual: np.ndarray, n_bins: int = 10) -> float:
    """PSI of two numeric samples over the expected sample's quantile bins (nulls are one more bin)."""
    ref = numeric_reference(pd.Series(expected, dtype=float), n_bins)
    return psi_against(ref, pd.Series(actual, dtype=float))


def numeric_reference(values: pd.Series, n_bins: int = 10) -> dict[str, Any]:
    """Quantile edges of a numeric sample and the share in each bin (the last share is nulls)."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    finite = x[np.isfinite(x)]
    qs = np.linspace(0, 1, n_bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, qs)) if len(finite) else np.array([])
    return {"kind": "numeric", "edges": edges.tolist(), "shares": _numeric_shares(edges, x).tolist()}


def _numeric_shares(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    nulls = ~np.isfinite(x)
    bins = np.searchsorted(np.asarray(edges, dtype=float), x[~nulls], side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, nulls.sum())
    return counts / max(len(x), 1)


def categorical_reference(values: pd.Series) -> dict[str, Any]:
    """Share of each level of a categorical sample (nulls as the level ``"<null>"``)."""
    shares = values.astype("object").where(values.notna(), "<null>").astype(str).value_counts(normalize=True)
    return {"kind": "categorical", "shares": {str(k): float(v) for k, v in shares.items()}}


def psi_against(reference: dict[str, Any], values: pd.Series) -> float:
    """PSI of ``values`` against a reference (:func:`numeric_reference`, :func:`categorical_reference`)."""
    if reference["kind"] == "numeric":
        x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        return _psi(np.asarray(reference["shares"]), _numeric_shares(np.asarray(reference["edges"]), x))
    actual = categorical_reference(values)["shares"]
    levels = sorted(set(reference["shares"]) | set(actual))
    return _psi(
        np.array([reference["shares"].get(k, 0.0) for k in levels]),
        np.array([actual.get(k, 0.0) for k in levels]),
    )


def build_reference(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> dict[str, dict[str, Any]]:
    """References of every feature of a training frame."""
    refs = {c: numeric_reference(frame[c]) for c in numeric}
    refs.update({c: categorical_reference(frame[c]) for c in categorical})
    return refs


def drift_report(
    reference: dict[str, dict[str, Any]], frame: pd.DataFrame, threshold: float = PSI_WARN
) -> pd.DataFrame:
    """PSI of every referenced feature present in ``frame``, largest first.

    Returns:
        ``feature, psi, drifted`` (``drifted``: PSI above ``threshold``).
    """
    rows = [(name, psi_against(ref, frame[name])) for name, ref in reference.items() if name in frame]
    out = pd.DataFrame(rows, columns=["feature", "psi"])
    out = out.sort_values("psi", ascending=False, ignore_index=True)
    out["drifted"] = out["psi"] > threshold
    return out
