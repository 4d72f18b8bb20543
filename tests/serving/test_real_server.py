"""The API as operators run it: a real ``userops serve`` process on a free port, killed without warning.

An exposure acknowledged by the server must be in the log after the process dies with SIGKILL and a
new one starts on the same folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pandas as pd
import pytest

from experiments.definitions import Experiment, parse_variants
from experiments.exposures import ExposureLog
from experiments.store import ExperimentStore
from serving.auth import KeyStore
from serving.settings import Settings
from simulator.simulate import WorldConfig, simulate

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def served(folder: Path, workers: int = 1) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A ``userops serve`` process over ``folder``, up and answering; killed on the way out."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("USEROPS_", "MLFLOW_"))}
    command = [sys.executable, "-m", "userops.cli", "serve", "--data", str(folder), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"the server did not start:\n{output}")
            time.sleep(0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("real")
    simulate(WorldConfig(n_users=100, days=60, seed=2), folder)
    store = ExperimentStore(Settings(tracking_uri=None).experiments_url_for(folder))
    names, weights = parse_variants("control=50,treatment=50")
    store.create(Experiment(key="banner", variants=names, weights=weights))
    store.start("banner")
    return folder


def test_an_acknowledged_exposure_survives_a_sigkill(folder: Path) -> None:
    url_of_store = Settings(tracking_uri=None).experiments_url_for(folder)
    key = KeyStore(url_of_store).create("app")[1]
    headers = {"Authorization": f"Bearer {key}"}
    units = [f"unit{i:03d}" for i in range(40)]
    with served(folder) as (process, url):
        answers = [
            httpx.get(f"{url}/v1/experiments/banner/assignment", params={"unit_id": u}, headers=headers)
            for u in units
        ]
        assert all(a.status_code == 200 for a in answers), answers[0].text
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    logged = ExposureLog(url_of_store).read(experiment="banner")
    enrolled = {a.json()["unit_id"]: a.json()["variant"] for a in answers if a.json()["variant"]}
    assert enrolled and set(enrolled) == set(logged["unit_id"])
    assert dict(zip(logged["unit_id"], logged["variant"], strict=True)) == enrolled
    with served(folder) as (_, url):  # a new process on the same folder answers the same way
        again = httpx.get(
            f"{url}/v1/experiments/banner/assignment", params={"unit_id": units[0]}, headers=headers
        )
        assert again.json() == answers[0].json()


def test_two_workers_serve_and_a_bad_key_is_refused(folder: Path) -> None:
    key = KeyStore(Settings(tracking_uri=None).experiments_url_for(folder)).create("analyst")[1]
    with served(folder, workers=2) as (_, url):
        assert (
            httpx.get(f"{url}/v1/experiments/banner/assignment", params={"unit_id": "u1"}).status_code == 401
        )
        wrong = httpx.get(
            f"{url}/v1/experiments/banner/assignment",
            params={"unit_id": "u1"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert wrong.status_code == 403 and key not in wrong.text
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 503 and "recommender" in " ".join(ready.json()["problems"])


def test_a_reload_during_concurrent_requests_fails_none_and_reaches_every_worker(
    trained_folder: Path, tmp_path: Path
) -> None:
    import mlflow

    copy = tmp_path / "data"
    shutil.copytree(trained_folder, copy)
    settings = Settings(tracking_uri=None)
    admin = {"Authorization": f"Bearer {KeyStore(settings.experiments_url_for(copy)).create('admin')[1]}"}
    users = sorted(pd.read_parquet(copy / "users.parquet")["user_id"].astype(str))[:50]
    registry = settings.tracking_uri_for(copy)
    client = mlflow.MlflowClient(registry, registry_uri=registry)
    old = client.get_model_version_by_alias("recommender", "champion")

    with served(copy, workers=2) as (_, url):
        stop = threading.Event()
        answers: list[tuple[int, str | None]] = []

        def ask(offset: int) -> None:
            with httpx.Client(base_url=url, headers=admin, timeout=60) as http:
                i = offset
                while not stop.is_set():
                    user = users[i % len(users)]
                    path = f"/v1/users/{user}/recommendations" if i % 2 else f"/v1/users/{user}/churn-risk"
                    try:
                        answer = http.get(path)
                    except httpx.HTTPError as error:  # a failed request is a failure too, named
                        answers.append((0, repr(error)))
                        continue
                    version = answer.json()["model"]["version"] if answer.status_code == 200 else answer.text
                    answers.append((answer.status_code, version if "recommendations" in path else None))
                    i += 1

        threads = [threading.Thread(target=ask, args=(n * 7,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        new = client.create_model_version("recommender", old.source, run_id=old.run_id)
        client.set_registered_model_alias("recommender", "champion", new.version)
        reloaded = httpx.post(f"{url}/v1/admin/reload", headers=admin, timeout=120)
        time.sleep(3)  # the other worker sees the reload marker within a second, then loads
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        assert reloaded.status_code == 200, reloaded.text

        statuses = Counter(status for status, _ in answers)
        failed = [answer for answer in answers if answer[0] != 200][:5]
        assert statuses == {200: len(answers)} and len(answers) > 20, (statuses, failed)
        versions = {version for _, version in answers if version is not None}
        assert versions <= {str(old.version), str(new.version)}
        # every worker answers from the new champion once it has loaded it (on a thread of its own)
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=url, headers=admin) as http:
            while True:
                after = {http.get(f"/v1/users/{u}/recommendations").json()["model"]["version"] for u in users}
                if after == {str(new.version)} or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert after == {str(new.version)}
