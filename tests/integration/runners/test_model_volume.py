"""A contest submission's model volume on a real engine: fit writes it, predict only reads
it, it is destroyed after, its size is capped, and a lost one is cleaned up.

The specs go to the runner directly: it runs whatever code it is given (the checker
that keeps teams from opening files sits before it), so a predict that tries to write
to /model is written here with numpy and pandas.
"""

from __future__ import annotations

import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from docker.errors import NotFound

from runners.containers import LABEL_DEADLINE, LABEL_JOB, LABEL_MODEL, model_volume_labels
from runners.contract import JobFailed, JobSpec, ModelVolume, RunnerUnavailable, RunResult
from runners.docker_runner import TAR_SLACK_BYTES, DockerRunner

pytestmark = pytest.mark.docker

FIT_MEAN = """
def fit(train):
    return {"mean_age": float(train["visits"]["age"].mean()), "rows": len(train["visits"])}


def predict(model, features):
    return [model["mean_age"]] * len(features["visits"])
"""

# predict tries every way it has to change the model it was given; each attempt's
# outcome is one "prediction", so the result says what predict could do.
PREDICT_WRITES = """
import errno

import numpy as np
import pandas as pd

PLACES = {
    "numpy_new": lambda: np.save("/model/planted.npy", np.zeros(3)),
    "pandas_over_model": lambda: pd.DataFrame({"a": [1]}).to_pickle("/model/model.pkl"),
    "open_model": lambda: open("/model/model.pkl", "r+b").write(b"x"),
    "tmp": lambda: np.save("/tmp/scratch.npy", np.zeros(3)),
}


def fit(train):
    return {"mean_age": float(train["visits"]["age"].mean())}


def predict(model, features):
    outcomes = []
    for name, attempt in PLACES.items():
        try:
            attempt()
            outcomes.append(name + ":ok")
        except OSError as error:
            outcomes.append(name + ":" + errno.errorcode.get(error.errno or 0, "?"))
    return outcomes
"""


@pytest.fixture
def runner(docker_client: Any) -> DockerRunner:
    # Contest runs always start cold: a warm container has no model volume.
    return DockerRunner(docker_client)


@pytest.fixture
def isolated(docker_client: Any, runtime: str) -> DockerRunner:
    """For the tests of what a run cannot do: under gVisor (runsc) and runc in turn."""
    return DockerRunner(docker_client, runtime=runtime)


@pytest.fixture
def view(tmp_path: Path) -> Path:
    folder = tmp_path / "view"
    folder.mkdir(mode=0o700)
    pd.DataFrame({"person_id": [1, 2, 3, 4], "age": [30, 40, 50, 60]}).to_parquet(
        folder / "visits.parquet"
    )
    return folder


@pytest.fixture
def volume(runner: DockerRunner) -> Iterator[str]:
    """A model volume name of this test's own; removed whatever the test left."""
    name = f"sandbox-model-test-{uuid.uuid4().hex[:12]}"
    yield name
    runner.remove_model(name)


def spec(view: Path, code: str, language: str, model: ModelVolume) -> JobSpec:
    return JobSpec(
        job_id=f"test-{uuid.uuid4().hex[:12]}",
        language=language,  # type: ignore[arg-type]
        code=textwrap.dedent(code),
        input_dir=view,
        timeout_s=60,
        model=model,
    )


def fit(runner: DockerRunner, view: Path, code: str, volume: str, **cap: int) -> RunResult:
    return run(runner, spec(view, code, "fit", ModelVolume(volume, writable=True, **cap)))


def predict(runner: DockerRunner, view: Path, code: str, volume: str) -> RunResult:
    return run(runner, spec(view, code, "predict", ModelVolume(volume, writable=False)))


def run(runner: DockerRunner, job: JobSpec) -> RunResult:
    """Run a job and check that, however it ended, its container is gone."""
    try:
        return runner.run(job)
    finally:
        mine = {"label": f"{LABEL_JOB}={job.job_id}"}
        assert runner.client.containers.list(all=True, filters=mine) == []


def test_fit_writes_model_that_predict_reads(runner: DockerRunner, view: Path, volume: str) -> None:
    fitted = fit(runner, view, FIT_MEAN, volume)

    assert fitted.tables == [] and fitted.predictions is None
    labels = runner.client.volumes.get(volume).attrs["Labels"]
    assert labels[LABEL_MODEL] == "1"
    assert float(labels[LABEL_DEADLINE]) > time.time()
    predicted = predict(runner, view, FIT_MEAN, volume)
    assert predicted.predictions == [45.0, 45.0, 45.0, 45.0]
    # Read-only means reading again gives the same model.
    assert predict(runner, view, FIT_MEAN, volume).predictions == predicted.predictions


def test_predict_cannot_write_model_volume(isolated: DockerRunner, view: Path, volume: str) -> None:
    fit(isolated, view, PREDICT_WRITES, volume)

    outcomes = predict(isolated, view, PREDICT_WRITES, volume).predictions

    assert outcomes == [
        "numpy_new:EROFS",
        "pandas_over_model:EROFS",
        "open_model:EROFS",
        "tmp:ok",
    ]
    # The model is the one fit left.
    assert predict(isolated, view, FIT_MEAN, volume).predictions == [45.0] * 4


def test_remove_model_destroys_volume(runner: DockerRunner, view: Path, volume: str) -> None:
    fit(runner, view, FIT_MEAN, volume)

    runner.remove_model(volume)

    with pytest.raises(NotFound):
        runner.client.volumes.get(volume)
    with pytest.raises(RunnerUnavailable, match="model volume is gone"):
        predict(runner, view, FIT_MEAN, volume)
    runner.remove_model(volume)  # gone already is fine


LISTS_MODEL_FOLDER = """
import os

import numpy as np


def fit(train):
    if "first" in train:
        np.save("/model/left-behind.npy", np.zeros(3))
    return {}


def predict(model, features):
    return sorted(os.listdir("/model"))
"""


def test_fit_again_starts_from_empty_volume(
    runner: DockerRunner, view: Path, tmp_path: Path, volume: str
) -> None:
    first = tmp_path / "first-view"
    first.mkdir()
    for table in ("visits", "first"):
        pd.DataFrame({"person_id": [1]}).to_parquet(first / f"{table}.parquet")
    fit(runner, first, LISTS_MODEL_FOLDER, volume)
    assert predict(runner, view, LISTS_MODEL_FOLDER, volume).predictions == [
        "left-behind.npy",
        "model.pkl",
    ]

    fit(runner, view, LISTS_MODEL_FOLDER, volume)

    assert predict(runner, view, LISTS_MODEL_FOLDER, volume).predictions == ["model.pkl"]


PREDICT_NOTHING = """

def predict(model, features):
    return [0.0]
"""


@pytest.mark.parametrize(
    "fit_code",
    [
        # The harness's own pickle of the model: its file size limit stops the write.
        pytest.param(
            """
import numpy as np


def fit(train):
    return np.zeros(100_000)
""",
            id="pickle",
        ),
        # Files fit wrote itself, before the harness limits anything: the runner's
        # read-back of /model counts them (and must not leave that read half done, or
        # the engine holds the container, and its volume, until the client times out).
        pytest.param(
            f"""
import numpy as np


def fit(train):
    np.save("/model/extra.npy", np.zeros({2 * TAR_SLACK_BYTES // 8}))
    return 1
""",
            id="own_files",
        ),
    ],
)
def test_fit_over_cap_is_model_too_large(
    isolated: DockerRunner, view: Path, volume: str, fit_code: str
) -> None:
    with pytest.raises(JobFailed) as failed:
        fit(isolated, view, fit_code + PREDICT_NOTHING, volume, max_bytes=10_000)

    assert failed.value.reason == "model_too_large"
    assert failed.value.message == "The fitted model is larger than the cap of 10000 bytes."
    isolated.remove_model(volume)  # as the worker does after every run
    with pytest.raises(NotFound):
        isolated.client.volumes.get(volume)


def test_cleanup_orphans_removes_expired_model_volume_only(
    runner: DockerRunner, docker_client: Any
) -> None:
    expired, fresh = (f"sandbox-model-test-{uuid.uuid4().hex[:12]}" for _ in range(2))
    past = {**model_volume_labels(60), LABEL_DEADLINE: f"{time.time() - 10:.0f}"}
    docker_client.volumes.create(name=expired, driver="local", labels=past)
    docker_client.volumes.create(name=fresh, driver="local", labels=model_volume_labels(60))
    try:
        removed = runner.cleanup_orphans()

        assert removed >= 1
        with pytest.raises(NotFound):
            docker_client.volumes.get(expired)
        assert docker_client.volumes.get(fresh).name == fresh
    finally:
        runner.remove_model(expired)
        runner.remove_model(fresh)
