"""Property: whatever CSV a user hands ``ingest`` (mixed time formats, odd bytes, huge and non-finite
numbers, empty and strange ids), it never crashes: it either refuses the file with a named error, or every
row read is either written or quarantined, and the files say so too."""

from __future__ import annotations

import csv
import io
import tempfile
from datetime import datetime
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from features.errors import FeaturesError
from features.ingest import ingest

NOW = pd.Timestamp("2026-01-01")

ids = st.one_of(
    st.sampled_from(["u1", "u2", "42", "42.0", "", " ", "NA", "null", "x" * 129, "a\x01b", "tab\tid", "é"]),
    st.text(min_size=0, max_size=12),
)
times = st.one_of(
    st.sampled_from(
        [
            "2025-03-01",
            "2025-03-01 10:00:00",
            "2025-03-01T10:00:00Z",
            "2025-03-01T10:00:00+05:30",
            "01/02/2025",
            "13/02/2025 10:00",
            "2030-01-01",
            "1677-01-01",
            "9999-12-31",
            "",
            "yesterday",
            "2025-02-30",
        ]
    ),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=8),
)
iso_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 12, 31)).map(
    lambda d: d.isoformat(sep=" ")
)
types = st.sampled_from(["view", "add_to_cart", "purchase", "refund", "click", "PURCHASE", "", "view "])
amounts = st.one_of(
    st.sampled_from(
        ["", "inf", "-inf", "NaN", "nan", "1e308", "1e400", "-5", "0", "12.5", "1e12", "ten", "1,5"]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers().map(str),
)
COLUMNS = ["user_id", "ts", "event_type", "item_id", "amount", "session_id"]


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV file: some of the contract's columns (or none), rows of careless values, sometimes odd bytes."""
    columns = draw(st.lists(st.sampled_from([*COLUMNS, "extra"]), min_size=0, max_size=7, unique=True))
    if draw(st.integers(0, 4)):  # mostly a file that has the required columns, in any order
        columns = [c for c in ("user_id", "ts", "event_type") if c not in columns] + columns
    # mostly well-formed times, so the rows (not only the file) are put to the test
    ts = st.one_of(iso_times, iso_times, iso_times, times)
    strategies = {"user_id": ids, "ts": ts, "event_type": types, "item_id": ids, "amount": amounts}
    rows = draw(
        st.lists(
            st.fixed_dictionaries({c: strategies.get(c, st.text(max_size=5)) for c in columns}),
            min_size=0,
            max_size=30,
        )
    )
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    if columns:
        writer.writeheader()
    writer.writerows(rows)
    data = text.getvalue().encode("utf-8", errors="surrogatepass")
    if draw(st.booleans()) and draw(st.integers(0, 9)) == 0:  # now and then a file of stray bytes
        data = draw(st.binary(max_size=200))
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=csv_files(), ts_format=st.sampled_from([None, None, "%d/%m/%Y", "%Y-%m-%d %H:%M:%S"]))
def test_random_csvs_never_crash_ingest_and_every_row_is_accounted_for(
    data: bytes, ts_format: str | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "events.csv", Path(tmp) / "out"
        src.write_bytes(data)
        try:
            report = ingest(src, out, ts_format=ts_format, now=NOW)
        except FeaturesError as exc:
            event(f"refused: {type(exc).__name__}")
            text = str(exc)
            assert text and "\n" not in text.strip()  # one line, said on purpose
            assert not (out / "events.parquet").exists()  # refused: nothing written
            return
        quarantined = sum(report.quarantined["events"].values())
        event("ingested" + (" with quarantine" if quarantined else ""))
        assert report.rows_read["events"] == report.rows_written["events"] + quarantined
        written = pd.read_parquet(out / "events.parquet")
        assert len(written) == report.rows_written["events"] > 0
        if quarantined:
            assert len(pd.read_parquet(out / "quarantine" / "events.parquet")) == quarantined
        assert written["user_id"].str.len().le(128).all() and written["ts"].notna().all()
        assert written["event_type"].isin(["view", "add_to_cart", "purchase", "refund"]).all()
        if "amount" in written:
            amount = written["amount"].dropna()
            assert (amount.abs() < 1e12).all()
