"""Which way the training modules depend on each other: training never reaches up into its logging,
the shared recommender interface never reaches up into the registry of families."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parents[2] / "training"


def imported(module: str) -> set[str]:
    """Every module a training module imports, lazy imports inside functions included."""
    path = TRAINING.joinpath(*module.split(".")[1:]).with_suffix(".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["training.churn", "training.datasets", "training.risk_model"])
def test_training_knows_nothing_of_mlflow_or_of_the_run_that_logs_it(module: str) -> None:
    names = imported(module)
    assert not {n for n in names if n.split(".")[0] == "mlflow"}
    assert not names & {"training.churn_mlflow", "training.churn_run"}


def test_logging_depends_on_training_and_the_run_joins_both() -> None:
    assert "training.churn" in imported("training.churn_mlflow")
    assert "training.churn_run" not in imported("training.churn_mlflow")
    assert {"training.churn", "training.churn_mlflow"} <= imported("training.churn_run")


@pytest.mark.parametrize(
    "module",
    [
        "training.recommenders.base",
        "training.recommenders.als",
        "training.recommenders.bpr",
        "training.recommenders.ease",
        "training.recommenders.itemknn",
        "training.recommenders.popularity",
    ],
)
def test_the_interface_and_the_families_never_import_the_registry(module: str) -> None:
    names = imported(module)
    assert "training.recommenders" not in names  # the package's __init__ imports every family
    assert not {n for n in names if n.startswith("training.recommenders.families")}
