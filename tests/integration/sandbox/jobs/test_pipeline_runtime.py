"""Each job through the Docker runner records the runtime and image it ran under, and its
certificate names them: under gVisor (runsc) and runc in turn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runners.image import IMAGE_TAG
from sandbox.actions import actor_of
from sandbox.jobs.pipeline import run_job
from sandbox.jobs.results import job_status
from sandbox.models import Job
from tests.factories import make_sandbox, submit_job

pytestmark = pytest.mark.docker

FAILING = "import sandbox_job\nvisits = sandbox_job.table('visits')\nvisits['no_such_column']\n"


def test_docker_job_records_runtime_and_image_on_job_and_certificate(
    tmp_path: Path, docker_client: Any, runtime: str
) -> None:
    sandbox = make_sandbox(tmp_path / "instance", runner="docker", runtime=runtime)
    image = docker_client.images.get(IMAGE_TAG).id
    queued: list[str] = []
    released_id = submit_job(
        sandbox,
        "SELECT department, COUNT(*) AS n FROM visits GROUP BY department",
        enqueue=queued.append,
    ).id
    failed_id = submit_job(sandbox, FAILING, language="python", enqueue=queued.append).id

    for job_id in queued:
        run_job(sandbox, job_id)

    with sandbox.tx() as session:
        released = session.get_one(Job, released_id)
        failed = session.get_one(Job, failed_id)
        assert released.status == "released", (released.error_code, released.error_message)
        assert (released.runtime, released.image_digest) == (runtime, image)
        assert released.certificate is not None
        document = released.certificate["document"]
        assert (document["runtime"], document["image_digest"]) == (runtime, image)
        assert failed.status == "failed", (failed.status, failed.error_code)
        assert (failed.runtime, failed.image_digest) == (runtime, image)

    # The job's own answer (API and page) names them too.
    with sandbox.tx() as session:
        released = session.get_one(Job, released_id)
        shown = job_status(released, by=actor_of(released.analyst))
    assert (shown["runtime"], shown["image_digest"]) == (runtime, image)
