"""Bad input never passes silently and never costs data: every command, given a careless input, stops with
one line that says what was wrong and where, shows no traceback, and leaves the data folder and the output
exactly as they were (a hash of every file, before and after)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from userops.cli import app

Prepare = Callable[[Path], object]
"""Spoils the case's copy of the world (``D``) or writes the input files the case reads (``in/``)."""


@dataclass(frozen=True)
class Case:
    """One careless input: the arguments (``{D}`` is the data folder, ``{T}`` the case's folder), how the
    folder is spoiled first, the exit code and a pattern the one-line message must match."""

    name: str
    args: list[str]
    message: str
    code: int = 1
    prepare: Prepare | None = None
    env: dict[str, str] = field(default_factory=dict)


def _truncate(name: str) -> Prepare:
    def prepare(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return prepare


def _parquet_named_csv(name: str) -> Prepare:
    def prepare(d: Path) -> None:
        (d / f"{name}.parquet").rename(d / f"{name}.csv")

    return prepare


def _as_csv(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Prepare:
    def prepare(d: Path) -> None:
        frame = change(pd.read_parquet(d / f"{name}.parquet"))
        (d / f"{name}.parquet").unlink()
        frame.to_csv(d / f"{name}.csv", index=False)

    return prepare


def _remove(*names: str) -> Prepare:
    def prepare(d: Path) -> None:
        for name in names:
            (d / name).unlink()

    return prepare


def _write(name: str, content: str | bytes) -> Prepare:
    def prepare(d: Path) -> None:
        path = d.parent / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return prepare


def _copy_events_as(name: str, change: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Prepare:
    """The world's events (a few hundred) as an input file, optionally spoiled."""

    def prepare(d: Path) -> None:
        frame = pd.read_parquet(d / "events.parquet").head(300)
        frame = change(frame) if change is not None else frame
        path = d.parent / "in" / name
        path.parent.mkdir(exist_ok=True)
        if name.endswith(".parquet"):
            frame.to_parquet(path)
        else:
            frame.to_csv(path, index=False)

    return prepare


HEAD = "user_id,ts,event_type\n"
ING = ["ingest", "--out", "{D}", "--events"]
FEAT = ["features", "--data", "{D}", "--no-online", "--as-of"]
DAY = "2025-02-15"
SPAN = r"the events run from 2025-01-01 to 2025-03-0\d"

CASES = [
    # ingest: the output folder is a data folder in use, and must be left as it was
    Case(
        "ingest header only",
        [*ING, "{T}/in/e.csv"],
        r"no valid rows in .*e\.csv \(0 read\); the previous output is kept",
        prepare=_write("e.csv", HEAD),
    ),
    Case(
        "ingest every row bad",
        [*ING, "{T}/in/e.csv"],
        r"no valid rows in .*e\.csv \(2 read: 1 unknown event type, 1 unparsable ts\)",
        prepare=_write("e.csv", HEAD + "u1,2025-01-02,click\nu2,yesterday,view\n"),
    ),
    Case(
        "ingest day/month guess",
        [*ING, "{T}/in/e.csv"],
        r"column ts: 2 of 2 values are not ISO 8601.*either way round.*--ts-format",
        prepare=_write("e.csv", HEAD + "u1,01/02/2025,view\nu2,13/02/2025,view\n"),
    ),
    Case(
        "ingest ts-format no directive",
        [*ING, "{T}/in/e.csv", "--ts-format", "dd/mm/yyyy"],
        r"--ts-format: 'dd/mm/yyyy' has no %-directive",
        prepare=_write("e.csv", HEAD + "u1,2025-01-02,view\n"),
    ),
    Case(
        "ingest ts-format matches nothing",
        [*ING, "{T}/in/e.csv", "--ts-format", "%d.%m.%Y"],
        r"column ts: 1 of 1 values are not the --ts-format '%d\.%m\.%Y'",
        prepare=_write("e.csv", HEAD + "u1,2025-01-02,view\n"),
    ),
    Case(
        "ingest event-types target",
        [*ING, "{T}/in/e.csv", "--event-types", "PURCHASE=buy"],
        r"--event-types: 'buy' is not an event type; use one of view, add_to_cart, purchase, refund",
        prepare=_write("e.csv", HEAD + "u1,2025-01-02,view\n"),
    ),
    Case(
        "ingest event-types form",
        [*ING, "{T}/in/e.csv", "--event-types", "click"],
        r"--event-types: 'click' is not of the form source_type=contract_type",
        prepare=_write("e.csv", HEAD),
    ),
    Case(
        "ingest event-type",
        [*ING, "{T}/in/e.csv", "--event-type", "click"],
        r"--event-type: 'click' is not an event type",
        prepare=_write("e.csv", "user_id,ts\nu1,2025-01-02\n"),
    ),
    Case(
        "ingest tz",
        [*ING, "{T}/in/e.csv", "--tz", "Mars/Olympus"],
        r"--tz: unknown time zone 'Mars/Olympus'",
        prepare=_write("e.csv", HEAD),
    ),
    Case(
        "ingest preset",
        [*ING, "{T}/in/e.csv", "--preset", "shopify"],
        r"--preset: unknown preset 'shopify'; known: online-retail",
        prepare=_write("e.csv", HEAD),
    ),
    Case(
        "ingest preset and map",
        [*ING, "{T}/in/e.csv", "--preset", "online-retail", "--map", "user_id=a"],
        r"--preset and --map: give one of them",
        prepare=_write("e.csv", HEAD),
    ),
    Case(
        "ingest columns not named",
        [*ING, "{T}/in/e.csv"],
        r"e\.csv: no column user_id, ts \(it has who, when, event_type\).*--map user_id=COLUMN,ts=COLUMN",
        prepare=_write("e.csv", "who,when,event_type\nu1,2025-01-02,view\n"),
    ),
    Case(
        "ingest map to nothing",
        [*ING, "{T}/in/e.csv", "--map", "user_id=customer"],
        r"--map names column\(s\) customer that the file does not have",
        prepare=_write("e.csv", HEAD + "u1,2025-01-02,view\n"),
    ),
    Case(
        "ingest map form",
        [*ING, "{T}/in/e.csv", "--map", "user_id"],
        r"--map: 'user_id' is not of the form contract_column=source_column",
        prepare=_write("e.csv", HEAD),
    ),
    Case("ingest no file", [*ING, "{T}/in/nope.csv"], r"nope\.csv: no such file"),
    Case(
        "ingest parquet named csv",
        [*ING, "{T}/in/e.csv"],
        r"e\.csv: cannot be read as CSV: it is a Parquet file; name it e\.parquet",
        prepare=lambda d: shutil.copy(d / "events.parquet", _in(d) / "e.csv"),
    ),
    Case(
        "ingest truncated parquet",
        [*ING, "{T}/in/e.parquet"],
        r"e\.parquet: cannot be read as Parquet \(cut short, damaged or not Parquet\)",
        prepare=lambda d: (_in(d) / "e.parquet").write_bytes((d / "events.parquet").read_bytes()[:500]),
    ),
    Case(
        "ingest not text",
        [*ING, "{T}/in/e.csv"],
        r"e\.csv: cannot be read as CSV",
        prepare=_write("e.csv", b"user_id,ts\n\xff\xfe\x00\x81,\x9c\n"),
    ),
    Case(
        "ingest unknown kind",
        [*ING, "{T}/in/e.xlsx"],
        r"e\.xlsx: unknown file kind '\.xlsx'; use \.parquet or \.csv",
        prepare=_write("e.xlsx", "x"),
    ),
    Case(
        "ingest out is a file",
        ["ingest", "--out", "{D}/events.parquet", "--events", "{T}/in/e.csv"],
        r"events\.parquet: is a file; --out names the data folder",
        prepare=_write("e.csv", HEAD + "u1,2025-01-02,view\n"),
    ),
    Case(
        "ingest users no valid rows",
        [*ING, "{T}/in/e.parquet", "--users", "{T}/in/u.csv"],
        r"no valid rows in .*u\.csv \(1 read: 1 missing user_id\)",
        prepare=lambda d: (
            _copy_events_as("e.parquet")(d),
            _write("u.csv", "user_id,signup_ts\n,2025-01-01\n")(d),
        ),
    ),
    # features: the one door (contract check, --as-of rule) before anything is made
    Case(
        "features month-first as-of", [*FEAT, "03/02/2025"], r"--as-of: '03/02/2025' is not a date YYYY-MM-DD"
    ),
    Case(
        "features impossible as-of", [*FEAT, "2025-02-30"], r"--as-of: '2025-02-30' is not a date YYYY-MM-DD"
    ),
    Case(
        "features before the data",
        [*FEAT, "2024-06-01"],
        rf"--as-of 2024-06-01 is not after the first event: {SPAN}",
    ),
    Case(
        "features years after the data",
        [*FEAT, "2028-01-01"],
        rf"--as-of 2028-01-01 is \d+ days after the last event \({SPAN}\); give --allow-gap",
    ),
    Case(
        "features one date of two out",
        [*FEAT, DAY, "--as-of", "2026-01-01"],
        r"--as-of 2026-01-01 is \d+ days after the last event",
    ),
    Case(
        "features out is a file",
        [*FEAT, DAY, "--out", "{D}/users.parquet"],
        r"users\.parquet: is a file; --out names the folder of snapshots",
    ),
    Case(
        "features no folder",
        ["features", "--data", "{T}/nope", "--as-of", DAY],
        r"data folder .*nope does not exist",
    ),
    Case(
        "features folder is a file",
        ["features", "--data", "{D}/events.parquet", "--as-of", DAY],
        r"events\.parquet is not a folder",
    ),
    Case(
        "features truncated parquet",
        [*FEAT, DAY],
        r"events\.parquet: cannot be read as Parquet \(cut short, damaged or not Parquet\)",
        prepare=_truncate("events.parquet"),
    ),
    Case(
        "features parquet named csv",
        [*FEAT, DAY],
        r"events\.csv: cannot be read as CSV: it is a Parquet file",
        prepare=_parquet_named_csv("events"),
    ),
    Case(
        "features events lack columns",
        [*FEAT, DAY],
        r"events\.csv: missing required column\(s\) ts, event_type",
        prepare=_as_csv("events", lambda f: f.drop(columns=["ts", "event_type"])),
    ),
    Case(
        "features users lack signup_ts",
        [*FEAT, DAY],
        r"users\.csv: missing required column\(s\) signup_ts",
        prepare=_as_csv("users", lambda f: f.drop(columns="signup_ts")),
    ),
    Case(
        "features signup_ts not times",
        [*FEAT, DAY],
        r"users\.csv: column signup_ts holds 200 value\(s\) that are not times \(one is 'soon'\)",
        prepare=_as_csv("users", lambda f: f.assign(signup_ts="soon")),
    ),
    Case(
        "features items price not numbers",
        [*FEAT, DAY],
        r"items\.csv: column price holds \d+ value\(s\) that are not numbers",
        prepare=_as_csv("items", lambda f: f.assign(price="cheap")),
    ),
    Case(
        "features no events table",
        [*FEAT, DAY],
        r"no events\.parquet or events\.csv",
        prepare=_remove("events.parquet"),
    ),
    Case(
        "features empty events",
        [*FEAT, DAY],
        r"events\.parquet: no events; nothing to compute from",
        prepare=lambda d: pd.read_parquet(d / "events.parquet").head(0).to_parquet(d / "events.parquet"),
    ),
    # train, score, win-back, recommend, pipeline: the same door, and no model store made to fail in
    Case(
        "train bad as-of",
        ["train", "churn", "--data", "{D}", "--as-of", "1/2/25"],
        r"--as-of: '1/2/25' is not a date",
    ),
    Case(
        "train horizon 0",
        ["train", "churn", "--data", "{D}", "--as-of", DAY, "--horizon", "0"],
        r"Invalid value for '--horizon'",
        code=2,
    ),
    Case(
        "train unknown kind",
        ["train", "survival", "--data", "{D}", "--as-of", DAY],
        r"Invalid value for 'kind'.*'survival' is not one of 'churn'",
        code=2,
    ),
    Case(
        "train truncated parquet",
        ["train", "churn", "--data", "{D}", "--as-of", DAY],
        r"users\.parquet: cannot be read as Parquet",
        prepare=_truncate("users.parquet"),
    ),
    Case(
        "score without a model",
        ["score", "churn", "--data", "{D}", "--as-of", DAY, "--out", "{T}/s.csv"],
        r"no churn model is registered \(.*mlflow\.db does not exist\); train one first",
    ),
    Case(
        "score far future",
        ["score", "churn", "--data", "{D}", "--as-of", "2027-01-01", "--out", "{T}/s.csv"],
        r"--as-of 2027-01-01 is \d+ days after the last event",
    ),
    Case(
        "winback top 0",
        ["winback", "--data", "{D}", "--as-of", DAY, "--out", "{T}/w.csv", "--top", "0"],
        r"Invalid value for '--top'",
        code=2,
    ),
    Case(
        "winback missing folder",
        ["winback", "--data", "{T}/gone", "--as-of", DAY, "--out", "{T}/w.csv"],
        r"data folder .*gone does not exist",
    ),
    Case(
        "winback events no columns",
        ["winback", "--data", "{D}", "--as-of", DAY, "--out", "{T}/w.csv"],
        r"events\.csv: missing required column\(s\) user_id, ts, event_type; found a",
        prepare=lambda d: (
            _remove("events.parquet")(d),
            pd.DataFrame({"a": [1]}).to_csv(d / "events.csv", index=False),
        ),
    ),
    Case(
        "recommend no model, no fit",
        ["recommend", "--data", "{D}", "--as-of", DAY, "--out", "{T}/r.csv", "--no-fit"],
        r"no recommender model is registered",
    ),
    Case(
        "recommend k 0",
        ["recommend", "--data", "{D}", "--as-of", DAY, "--out", "{T}/r.csv", "-k", "0"],
        r"Invalid value for '-k'",
        code=2,
    ),
    Case(
        "recommend before data",
        ["recommend", "--data", "{D}", "--as-of", "2020-01-01", "--out", "{T}/r.csv"],
        r"--as-of 2020-01-01 is not after the first event",
    ),
    Case(
        "pipeline users lack signup_ts",
        ["pipeline", "--data", "{D}", "--as-of", DAY],
        r"users\.csv: missing required column\(s\) signup_ts",
        prepare=_as_csv("users", lambda f: f.drop(columns="signup_ts")),
    ),
    Case(
        "pipeline unparsable event ts",
        ["pipeline", "--data", "{D}", "--as-of", DAY],
        r"events\.csv: column ts is read as .*not as times",
        prepare=_as_csv("events", lambda f: f.assign(ts="when")),
    ),
    # experiments: options named, no store created to fail in
    Case(
        "experiments assign no store",
        ["experiments", "assign", "--data", "{D}", "--experiment", "promo", "--unit", "u1"],
        r"no experiment 'promo': no experiment store at .*experiments\.sqlite yet",
    ),
    Case(
        "experiments assign long unit id",
        ["experiments", "assign", "--data", "{D}", "--experiment", "promo", "--unit", "u" * 200],
        r"--unit: unit id 1 is over 128 characters",
    ),
    Case(
        "experiments assign empty unit id",
        ["experiments", "assign", "--data", "{D}", "--experiment", "promo", "--unit", " "],
        r"--unit: unit id 1 is empty",
    ),
    Case(
        "experiments start no store",
        ["experiments", "start", "promo", "--data", "{D}"],
        r"no experiment 'promo'",
    ),
    Case(
        "experiments analyze alpha",
        ["experiments", "analyze", "--data", "{D}", "--experiment", "exp", "--alpha", "0.9"],
        r"--alpha: 0\.9 is not in \(0, 0\.5\]",
    ),
    Case(
        "experiments analyze window",
        ["experiments", "analyze", "--data", "{D}", "--experiment", "exp", "--window", "0.5"],
        r"--window: 0\.5 is less than 1 day",
    ),
    Case(
        "experiments analyze truncated",
        ["experiments", "analyze", "--data", "{D}", "--experiment", "exp"],
        r"exposures\.parquet: cannot be read as Parquet",
        prepare=_truncate("exposures.parquet"),
    ),
    Case(
        "experiments create coverage",
        [
            "experiments",
            "create",
            "promo",
            "--data",
            "{D}",
            "--variants",
            "control=50,b=50",
            "--coverage",
            "2",
        ],
        r"--coverage: 2 is not a share within \[0, 1\]",
    ),
    Case(
        "experiments create layer share",
        [
            "experiments",
            "create",
            "promo",
            "--data",
            "{D}",
            "--variants",
            "control,b",
            "--layer",
            "l1",
            "--layer-share",
            "0",
        ],
        r"--layer-share: 0 is not a share within \(0, 1\]",
    ),
    Case(
        "offers choose truncated parquet",
        ["offers", "choose", "--data", "{D}", "--as-of", DAY, "--users", "all", "--out", "{T}/o.csv"],
        r"events\.parquet: cannot be read as Parquet",
        prepare=_truncate("events.parquet"),
    ),
    Case(
        "offers choose far future",
        ["offers", "choose", "--data", "{D}", "--as-of", "2027-02-15", "--out", "{T}/o.csv"],
        r"--as-of 2027-02-15 is \d+ days after the last event",
    ),
    # the other doors
    Case(
        "simulate too few users",
        ["simulate", "--users", "5", "--out", "{T}/sim"],
        r"Invalid value for '--users'",
        code=2,
    ),
    Case(
        "simulate bad start",
        ["simulate", "--users", "20", "--start", "2025-13-01", "--out", "{T}/sim"],
        r"--start: '2025-13-01' is not a date YYYY-MM-DD",
    ),
    Case(
        "keys unknown role",
        ["keys", "create", "--data", "{D}", "--role", "king"],
        r"--role: unknown role 'king'; roles: app, operator, analyst, admin",
    ),
    Case("serve port 0", ["serve", "--data", "{D}", "--port", "0"], r"Invalid value for '--port'", code=2),
]


def _in(d: Path) -> Path:
    folder = d.parent / "in"
    folder.mkdir(exist_ok=True)
    return folder


def tree_hash(root: Path) -> str:
    """A digest of every file's path and bytes under ``root`` (folders that are made count too)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes() if path.is_file() else b"/")
    return digest.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from simulator.simulate import WorldConfig, simulate

    path = tmp_path_factory.mktemp("bad-input") / "world"
    simulate(WorldConfig(n_users=200, days=60, seed=7), path)
    shutil.rmtree(path / "truth")
    return path


@pytest.fixture
def case_dir(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(("USEROPS_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY")):
            monkeypatch.delenv(name)
    shutil.copytree(world, tmp_path / "D")
    return tmp_path


def _args(case: Case, root: Path) -> list[str]:
    return [a.replace("{D}", str(root / "D")).replace("{T}", str(root)) for a in case.args]


def test_there_are_at_least_forty_cases_across_every_command() -> None:
    import typer.main

    assert len(CASES) >= 40
    group = typer.main.get_command(app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    covered = {c.args[0] for c in CASES}
    assert commands <= covered, commands - covered


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, case_dir: Path) -> None:
    if case.prepare is not None:
        case.prepare(case_dir / "D")
    before = tree_hash(case_dir)
    result = CliRunner().invoke(app, _args(case, case_dir), env=case.env)
    assert result.exit_code == case.code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and re.search(case.message, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert tree_hash(case_dir) == before, "a refused input changed the data folder or wrote an output"


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.name in {"ingest header only", "features truncated parquet", "score far future"}],
    ids=lambda c: c.name,
)
def test_in_a_real_process_too(case: Case, case_dir: Path) -> None:
    if case.prepare is not None:
        case.prepare(case_dir / "D")
    before = tree_hash(case_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "MLFLOW_TRACKING"))}
    done = subprocess.run(
        [sys.executable, "-m", "userops.cli", *_args(case, case_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == case.code
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(case.message, lines[0]), done.stderr
    assert tree_hash(case_dir) == before
