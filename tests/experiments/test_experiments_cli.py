"""``userops experiments``: the full flow create → start → assign/log → export → analyze, and clean errors.

What a person reads goes to stderr (through ``userops.console``); stdout holds only what ``--json`` asks for.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from experiments.analysis import analyze
from experiments.errors import StoreError
from experiments.exposures import ExposureLog
from experiments.metrics import read_table
from experiments.options import AnalysisOptions
from experiments.store import ExperimentStore
from userops.cmd_experiments import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    # No store URL and no data folder from the environment unless a test gives them (None unsets).
    unset: dict[str, str | None] = {"USEROPS_EXPERIMENTS_URL": None, "USEROPS_DATA": None}
    return runner.invoke(app, list(args), env={**unset, **(env or {})})


def test_analyze_json_equals_the_library_read(sim_folder: Any) -> None:
    result = run(
        "analyze", "--data", str(sim_folder.path), "--experiment", "exp1", "--metric", "conversion",
        "--metric", "revenue", "--window", "7", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    expected = analyze(
        exposures=read_table(sim_folder.path, "exposures"),
        events=read_table(sim_folder.path, "events"),
        experiment="exp1",
        options=AnalysisOptions(metrics=("conversion", "revenue"), window_days=7),
    ).to_json()
    assert document == expected
    assert [r["metric"] for r in document["results"]] == ["conversion"] * 3 + ["revenue"] * 3
    assert "units were exposed to more than one variant" in result.stderr


def test_analyze_table_html_and_details(make_folder: Any, tmp_path: Path) -> None:
    small = make_folder(units=600, exposure_days=7, data_days=14)
    report = tmp_path / "report.html"
    result = run(
        "analyze", "--data", str(small.path), "--experiment", "exp1", "--metric", "orders",
        "--guardrail", "any:refund", "--cuped", "--html", str(report),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the table is for people: stderr, whole (no terminal here to fit)
    assert "orders" in result.stderr and "any:refund (guardrail)" in result.stderr
    assert "sample ratio ok" in result.stderr
    assert "the 14 days before exposure" in result.stderr  # the closing summary
    page = report.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 2  # one chart per metric
    assert all(base64.b64decode(image)[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert "http" not in page  # self-contained
    detailed = run("analyze", "--data", str(small.path), "--experiment", "exp1", "--json", "--details")
    rows = json.loads(detailed.stdout)["results"]
    assert {"p_value_adjusted", "cs_low", "cs_high", "guardrail"} <= set(rows[1])


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["analyze", "--data", "/nonexistent", "--experiment", "e"], "does not exist"),
        (["analyze", "--data", "{folder}", "--experiment", "nope"], "no exposures for experiment"),
        (["analyze", "--data", "{folder}", "--experiment", "exp1", "--metric", "clicks"], "unknown metric"),
        (["analyze", "--data", "{folder}", "--experiment", "exp1", "--control", "base"], "no variant named"),
        (
            ["create", "x", "--variants", "control=1,treatment=0", "--data", "{folder}"],
            "positive integer weight",
        ),
        (["create", "bad key", "--variants", "a,b", "--data", "{folder}"], "must be 1-64 characters"),
        (
            ["create", "x", "--variants", "a,b", "--target", "country~FR", "--data", "{folder}"],
            "targeting rule",
        ),
        (["start", "missing", "--data", "{folder}"], "no experiment 'missing'"),
        (["list"], "give --data DIR"),
        (["assign", "--experiment", "x", "--data", "{folder}"], "give --unit"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(args: list[str], reason: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame({"experiment": ["exp1"], "variant": ["a"], "unit_id": ["1"], "ts": ["2024-01-01"]}).to_csv(
        folder / "exposures.csv", index=False
    )
    pd.DataFrame({"user_id": ["1"], "ts": ["2024-01-02"], "event_type": ["view"]}).to_csv(
        folder / "events.csv", index=False
    )
    result = run(*[a.replace("{folder}", str(folder)) for a in args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: experiments {args[0]}: "), result.stderr
    assert reason in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_full_flow_with_store_weights_in_the_sample_ratio_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    created = run(
        "create", "checkout", "--variants", "control=70,treatment=30", "--metric", "conversion",
        "--guardrail", "any:refund", "--data", str(data),
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "control 70% / treatment 30%" in created.stderr
    early = run("assign", "--experiment", "checkout", "--unit", "u1", "--data", str(data))
    assert early.exit_code == 1 and "draft" in early.stderr
    assert run("start", "checkout", "--data", str(data)).exit_code == 0
    refused = run("edit", "checkout", "--variants", "control=50,treatment=50", "--data", str(data))
    assert refused.exit_code == 1 and "force" in refused.stderr
    assert (
        run("edit", "checkout", "--coverage", "1.0", "--description", "ramp", "--data", str(data)).exit_code
        == 0
    )

    ids = pd.DataFrame({"unit_id": [f"{i:06d}" for i in range(6000)]})
    ids.to_csv(tmp_path / "units.csv", index=False)
    assigned = run(
        "assign", "--experiment", "checkout", "--units", str(tmp_path / "units.csv"), "--log-exposures",
        "--out", str(tmp_path / "assigned.csv"), "--data", str(data),
    )  # fmt: skip
    assert assigned.exit_code == 0, assigned.output
    again = run(
        "assign", "--experiment", "checkout", "--unit", "000001", "--unit", "000002", "--log-exposures",
        "--json", "--data", str(data),
    )  # fmt: skip
    pairs = {row["unit_id"]: row["variant"] for row in json.loads(again.stdout)}
    table = pd.read_csv(tmp_path / "assigned.csv", dtype={"unit_id": str})
    assert pairs == table.set_index("unit_id").loc[["000001", "000002"], "variant"].to_dict()
    logged = ExposureLog(f"sqlite:///{data / 'experiments.sqlite'}").read(experiment="checkout")
    assert len(logged) == 6000 and logged["exposures"].sum() == 6002  # two repeats counted, not duplicated
    exported = run("export-exposures", "--experiment", "checkout", "--data", str(data))
    assert exported.exit_code == 0 and re.search(r"exposure rows\s+6,000", exported.stderr), exported.stderr

    exposures = read_table(data, "exposures")
    rng = np.random.default_rng(1)
    buyers = exposures.sample(frac=0.2, random_state=1)
    pd.DataFrame(
        {
            "user_id": buyers["unit_id"],
            "ts": buyers["ts"] + pd.Timedelta(hours=1),
            "event_type": "purchase",
            "amount": rng.gamma(2, 10, len(buyers)),
        }
    ).to_parquet(data / "events.parquet")
    result = run("analyze", "--data", str(data), "--experiment", "checkout", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    counts = exposures["variant"].value_counts()
    observed = np.array([counts["control"], counts["treatment"]])
    expected = observed.sum() * np.array([0.7, 0.3])  # bucket shares of 70/30 are exactly 0.7/0.3
    assert document["srm_p_value"] == pytest.approx(sps.chisquare(observed, expected).pvalue, abs=1e-9)
    assert document["srm_p_value"] > 0.001  # the hash honours the weights
    assert {r["metric"] for r in document["results"]} == {"conversion", "any:refund"}  # the store's metrics

    listed = run("list", "--json", "--data", str(data))
    assert json.loads(listed.stdout)[0]["status"] == "running"
    history = run("history", "checkout", "--data", str(data))
    assert [line.split()[2].rstrip(":") for line in history.stderr.splitlines()] == [
        "create",
        "start",
        "update",
    ]
    changes = json.loads(run("history", "checkout", "--json", "--data", str(data)).stdout)
    assert [c["action"] for c in changes] == ["create", "start", "update"]
    assert changes[2]["after"] == {"description": "ramp"}  # coverage was 1.0 already: no change
    assert run("stop", "checkout", "--data", str(data)).exit_code == 0


def test_store_url_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    created = run(
        "create", "envtest", "--variants", "control,treatment", env={"USEROPS_EXPERIMENTS_URL": url}
    )
    assert created.exit_code == 0, created.output
    assert (tmp_path / "elsewhere.sqlite").exists()
    listed = run("list", env={"USEROPS_EXPERIMENTS_URL": url})
    assert "envtest (draft" in listed.stderr


def test_the_userops_command_has_the_experiments_group(sim_folder: Any) -> None:
    """Through the real entry point's app: ``userops experiments`` is registered in ``userops.cli``."""
    from userops.cli import app as main_app

    args = ["analyze", "--data", str(sim_folder.path), "--experiment", "exp1", "--json"]
    through_main = runner.invoke(main_app, ["experiments", *args], env={"USEROPS_EXPERIMENTS_URL": ""})
    assert through_main.exit_code == 0, through_main.output
    assert json.loads(through_main.stdout) == json.loads(run(*args).stdout)


def test_a_missing_data_folder_is_refused_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args in (
        ["create", "x", "--variants", "a,b", "--data", str(missing)],
        ["list", "--data", str(missing)],
        ["export-exposures", "--data", str(missing)],
        ["analyze", "--experiment", "x", "--data", str(missing)],
    ):
        result = run(*args)
        assert result.exit_code == 1 and "does not exist" in result.stderr, result.output
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    result = run("list", "--data", str(not_a_folder))
    assert result.exit_code == 1 and "is not a folder" in result.stderr
    assert not missing.exists()


def test_an_unreachable_store_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere"
    result = run("list", "--store", url)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: experiments list: database "), result.stderr
    assert "someone:***@127.0.0.1:1/nowhere" in lines[0] and "s3cret" not in result.output


def test_a_named_error_is_one_line_and_a_bug_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    assert run("create", "x", "--variants", "a,b", "--data", str(data)).exit_code == 0

    def refused(self: ExperimentStore, **_: object) -> None:
        raise StoreError("the store said no\nand said more on a second line")

    monkeypatch.setattr(ExperimentStore, "list_experiments", refused)
    result = run("list", "--data", str(data))
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: experiments list: the store said no"

    def bug(self: ExperimentStore, **_: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(ExperimentStore, "list_experiments", bug)
    result = run("list", "--data", str(data))
    assert isinstance(result.exception, ZeroDivisionError)  # not a SystemExit: the bug was not swallowed
    assert "error:" not in result.stderr
    with pytest.raises(ZeroDivisionError):
        runner.invoke(app, ["list", "--data", str(data)], catch_exceptions=False)
