"""The kept per-user-per-day aggregate: built once, then extended by each new day's events only.

Layout of ``DIR`` (normally ``<features out>/daily/``)::

    state.json                      {"until": "YYYY-MM-DD", "items_from": ..., "events": ..., parts}
    activity-<from>-<until>.parquet one row per user and day (see definitions.daily_activity)
    items-<from>-<until>.parquet    distinct (user, day, item, category) rows, kept for the last
                                    DISTINCT_WINDOW days before the first build and every day after

Every part is written to a temporary name and renamed, and ``state.json`` is replaced last, so a failed
run leaves the previous state intact. Days are whole UTC days, so the table built up to ``until`` serves
any as-of date ``<= until`` (features filter ``day < as_of``). Events that arrive late for a day already
aggregated are not seen: rebuild with ``full=True`` after back-filling history.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from features.definitions import DISTINCT_WINDOW, daily_activity, events_between, item_rows
from features.sources import Sources, as_of_timestamp, read_table

STATE = "state.json"


@dataclass
class DailyState:
    """What the kept aggregate covers."""

    until: str
    items_from: str
    events: str
    activity: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)


def _stamp(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y%m%d")


def _lit(ts: pd.Timestamp) -> ir.Scalar:
    return ibis.literal(ts.to_pydatetime(), "timestamp")


class DailyStore:
    """The per-user-per-day aggregate of one data folder, kept on disk under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def state(self) -> DailyState | None:
        """The current state, or None when nothing is kept yet."""
        path = self.root / STATE
        if not path.exists():
            return None
        return DailyState(**json.loads(path.read_text()))

    def _write(self, con: ibis.BaseBackend, expr: ir.Table, name: str) -> str:
        tmp = self.root / f".{name}.tmp"
        con.to_parquet(expr, str(tmp))
        tmp.replace(self.root / name)
        return name

    def update(self, src: Sources, until: pd.Timestamp, *, full: bool = False) -> DailyState:
        """Make the aggregate cover every day before ``until``, aggregating only days not kept yet.

        Args:
            src: The data folder's tables (the aggregate is computed on ``src.con``).
            until: First day not covered (the latest as-of date needed).
            full: Throw the kept aggregate away and rebuild it from all events.

        Returns:
            The new state.
        """
        state = self.state()
        source = str(src.events_path.resolve()) if src.events_path else ""
        if full or state is None or state.events != source:
            if self.root.exists():
                shutil.rmtree(self.root)
            state = None
        self.root.mkdir(parents=True, exist_ok=True)
        if state is not None and as_of_timestamp(state.until) >= until:
            return state
        start = as_of_timestamp(state.until) if state is not None else None
        events = events_between(src.events, _lit(start) if start is not None else None, _lit(until))
        tag = f"{_stamp(start) if start is not None else 'start'}-{_stamp(until)}"
        activity = self._write(src.con, daily_activity(events, src.has), f"activity-{tag}.parquet")
        if state is None:
            items_from = until - pd.Timedelta(days=DISTINCT_WINDOW)
            events = events_between(src.events, _lit(items_from), _lit(until))
            state = DailyState(until="", items_from=items_from.strftime("%Y-%m-%d"), events=source)
        items = self._write(src.con, item_rows(events, src.items), f"items-{tag}.parquet")
        state.activity.append(activity)
        state.items.append(items)
        state.until = until.strftime("%Y-%m-%d")
        tmp = self.root / f".{STATE}.tmp"
        tmp.write_text(json.dumps(state.__dict__, indent=2) + "\n")
        tmp.replace(self.root / STATE)
        return state

    def activity(self, con: ibis.BaseBackend, state: DailyState) -> ir.Table:
        """The kept daily activity table."""
        return read_table(con, [self.root / p for p in state.activity])

    def items(self, con: ibis.BaseBackend, state: DailyState) -> ir.Table:
        """The kept (user, day, item, category) rows."""
        return read_table(con, [self.root / p for p in state.items])
