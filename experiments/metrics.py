"""Per-unit metrics from the data folder's ``exposures`` and ``events`` tables.

A unit's window starts at its first exposure to the experiment (inclusive) and lasts ``window_days``
(or until the end of the data when no window is given). Built-in metrics:

=====================  =============================================================================
``conversion``         1 if the unit made any purchase in its window, else 0
``revenue``            sum of purchase amounts in the window (refunds are not subtracted)
``net_revenue``        sum of purchase and refund amounts (refunds are negative)
``orders``             number of purchases in the window
``any:<type>``         1 if any event of that type in the window
``count:<type>``       number of events of that type in the window
``retention:<N>``      1 if any event in ``[N, N+1)`` days after first exposure; only units whose day N
                       has ended before the last event in the data are counted
``revenue_per_order``  ratio metric Σ revenue / Σ orders (delta method)
``ratio:<a>/<b>``      ratio of two of the metrics above
=====================  =============================================================================

The CUPED covariate of a metric is the same metric over the ``pre_days`` before first exposure
(for retention: any event in that period).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.errors import DataError

DAY = pd.Timedelta(days=1)
ID_COLUMNS = {
    "events": ["user_id", "session_id", "item_id"],
    "exposures": ["experiment", "variant", "unit_id"],
}
REQUIRED = {
    "events": ["user_id", "ts", "event_type"],
    "exposures": ["experiment", "variant", "unit_id", "ts"],
}


@dataclass(frozen=True)
class Metric:
    """A parsed metric name."""

    name: str
    kind: str  # any | count | sum | retention | ratio
    event_types: tuple[str, ...] = ()
    day: int = 0
    numerator: Metric | None = None
    denominator: Metric | None = None

    @property
    def is_ratio(self) -> bool:
        """Whether this is a ratio metric (analysed by the delta method)."""
        return self.kind == "ratio"


def parse_metric(name: str) -> Metric:
    """Read a metric name such as ``conversion``, ``any:add_to_cart``, ``retention:7``.

    Args:
        name: The metric name.

    Returns:
        The metric.

    Raises:
        DataError: If the name is not a known metric.
    """
    simple = {
        "conversion": Metric(name, "any", ("purchase",)),
        "revenue": Metric(name, "sum", ("purchase",)),
        "net_revenue": Metric(name, "sum", ("purchase", "refund")),
        "orders": Metric(name, "count", ("purchase",)),
    }
    if name in simple:
        return simple[name]
    if name == "revenue_per_order":
        return Metric(name, "ratio", numerator=parse_metric("revenue"), denominator=parse_metric("orders"))
    head, _, tail = name.partition(":")
    if head in ("any", "count") and tail:
        return Metric(name, head, (tail,))
    if head == "retention" and tail.isdigit():
        return Metric(name, "retention", day=int(tail))
    if head == "ratio" and tail.count("/") == 1:
        top, bottom = (parse_metric(part) for part in tail.split("/"))
        if top.is_ratio or bottom.is_ratio:
            raise DataError(f"{name!r}: a ratio is made of two non-ratio metrics")
        return Metric(name, "ratio", numerator=top, denominator=bottom)
    raise DataError(
        f"unknown metric {name!r}; use conversion, revenue, net_revenue, orders, revenue_per_order, "
        "any:<event_type>, count:<event_type>, retention:<days> or ratio:<metric>/<metric>"
    )


def read_table(data_dir: str | Path, name: str) -> pd.DataFrame:
    """Read ``DIR/<name>.parquet`` or ``DIR/<name>.csv`` with ids as strings and ``ts`` as naive UTC.

    Rows with a missing id or an unparsable timestamp are dropped and counted in ``frame.attrs["dropped"]``.

    Args:
        data_dir: The data folder.
        name: ``events`` or ``exposures``.

    Returns:
        The table.

    Raises:
        DataError: If the table is missing, cannot be read as a table, or lacks a required column.
    """
    folder = Path(data_dir)
    parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if not (parquet.exists() or csv.exists()):
        raise DataError(f"no {name} table in {folder} (expected {name}.parquet or {name}.csv)")
    path = parquet if parquet.exists() else csv
    frame = read_file(path, ids=ID_COLUMNS.get(name, []))
    missing = [column for column in REQUIRED.get(name, []) if column not in frame.columns]
    if missing:
        raise DataError(f"{name} table lacks column(s) {', '.join(missing)}")
    for column in ID_COLUMNS.get(name, []):
        if column in frame.columns:
            frame[column] = frame[column].astype("string").astype(object)
    frame["ts"] = _naive_utc(frame["ts"])
    if "amount" in frame.columns:
        frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce")
    bad = frame["ts"].isna()
    for column in REQUIRED.get(name, []):
        bad |= frame[column].isna()
    dropped = int(bad.sum())
    frame = frame.loc[~bad].reset_index(drop=True)
    frame.attrs["dropped"] = dropped
    return frame


def read_file(path: Path, *, ids: Sequence[str] = ()) -> pd.DataFrame:
    """Read one table file: CSV by its extension (``ids`` columns kept as text), Parquet otherwise.

    Args:
        path: The file.
        ids: Columns of a CSV file to read as strings (ids with leading zeros stay intact).

    Returns:
        The table.

    Raises:
        DataError: If the file is missing or cannot be read as a table.
    """
    if not path.is_file():
        raise DataError(f"no file {path}")
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, dtype=dict.fromkeys(ids, str))
        return pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow's and pandas' parse errors are ValueErrors
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot read {path} as a table: {first}") from error


def _naive_utc(column: pd.Series) -> pd.Series:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        converted: pd.Series = column.dt.tz_convert("UTC").dt.tz_localize(None)
        return converted
    parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    naive: pd.Series = parsed.dt.tz_localize(None)
    return naive


def first_exposures(exposures: pd.DataFrame, *, experiment: str) -> pd.DataFrame:
    """Each unit's first exposure to one experiment: its variant and timestamp.

    A unit seen in several variants keeps the variant of its first exposure (intention to treat);
    ``frame.attrs["mixed_units"]`` counts such units.

    Args:
        exposures: The contract's exposures table.
        experiment: Experiment key.

    Returns:
        Columns ``unit_id, variant, first_ts``, one row per unit, sorted by unit.
    """
    rows = exposures.loc[exposures["experiment"] == experiment, ["unit_id", "variant", "ts"]]
    mixed = int((rows.groupby("unit_id")["variant"].nunique() > 1).sum()) if len(rows) else 0
    ordered = rows.sort_values(["unit_id", "ts", "variant"], kind="stable")
    units = ordered.drop_duplicates("unit_id", keep="first").rename(columns={"ts": "first_ts"})
    units = units.reset_index(drop=True)
    units.attrs["mixed_units"] = mixed
    return units


def join_events(units: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Events of exposed units with their offset from first exposure, in days.

    Args:
        units: Output of :func:`first_exposures`.
        events: The contract's events table.

    Returns:
        Columns ``pos`` (row of ``units``), ``ts``, ``offset`` (days, negative before exposure),
        ``event_type``, ``amount`` (0 where missing).
    """
    index = pd.DataFrame(
        {"user_id": units["unit_id"], "pos": np.arange(len(units)), "first_ts": units["first_ts"]}
    )
    amount = events["amount"] if "amount" in events.columns else pd.Series(0.0, index=events.index)
    slim = pd.DataFrame(
        {
            "user_id": events["user_id"],
            "ts": events["ts"],
            "event_type": events["event_type"].astype(str),
            "amount": amount.fillna(0.0).astype(float),
        }
    )
    joined = slim.merge(index, on="user_id", how="inner")
    joined["offset"] = (joined["ts"] - joined["first_ts"]).dt.total_seconds() / 86_400.0
    return joined[["pos", "ts", "offset", "event_type", "amount"]]


def unit_values(
    metric: Metric,
    *,
    joined: pd.DataFrame,
    units: pd.DataFrame,
    window_days: float | None,
    data_end: pd.Timestamp | None,
    pre_days: float | None = None,
) -> np.ndarray:
    """Per-unit values of a non-ratio metric, aligned with ``units`` (NaN = not measurable yet).

    Args:
        metric: A non-ratio metric.
        joined: Output of :func:`join_events`.
        units: Output of :func:`first_exposures`.
        window_days: Window length after first exposure; None = to the end of the data.
        data_end: Timestamp of the last event (for retention maturity).
        pre_days: When given, compute the CUPED covariate over the ``pre_days`` before exposure instead.

    Returns:
        Float array, one value per unit.
    """
    n = len(units)
    offset = joined["offset"].to_numpy()
    if pre_days is not None:
        in_window = (offset >= -pre_days) & (offset < 0)
    elif metric.kind == "retention":
        in_window = (offset >= metric.day) & (offset < metric.day + 1)
    else:
        in_window = offset >= 0
        if window_days is not None:
            in_window &= offset < window_days
    if metric.kind == "retention" or not metric.event_types:
        selected = in_window
    else:
        selected = in_window & joined["event_type"].isin(metric.event_types).to_numpy()
    pos = joined["pos"].to_numpy()[selected]
    if metric.kind == "sum":
        values = np.bincount(pos, weights=joined["amount"].to_numpy()[selected], minlength=n)
    else:
        values = np.bincount(pos, minlength=n).astype(float)
        if metric.kind in ("any", "retention"):
            values = (values > 0).astype(float)
    if metric.kind == "retention" and pre_days is None:
        if data_end is None:
            return np.full(n, np.nan)
        matured = (units["first_ts"] + (metric.day + 1) * DAY <= data_end).to_numpy()
        values = np.where(matured, values, np.nan)
    return values
