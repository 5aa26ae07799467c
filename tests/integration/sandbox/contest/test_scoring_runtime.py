"""A submission scored through the Docker runner records the runtime and image its fit
and predict containers ran under, and its signed score certificate names them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runners.image import IMAGE_TAG
from runners.runtimes import registered_runtimes
from sandbox.contest import scoring
from sandbox.integrity.signing import verify_certificate
from sandbox.models import Submission
from tests.integration.sandbox.contest.test_scoring import mean_stay, open_contest, submit

pytestmark = pytest.mark.docker


def test_docker_submission_records_runtime_and_image_in_its_certificate(
    tmp_path: Path, docker_client: Any
) -> None:
    # The production default: gVisor wherever the engine has it.
    expected = "runsc" if "runsc" in registered_runtimes(docker_client) else "runc"
    contest = open_contest(tmp_path / "instance", runner="docker", runtime="auto")
    image = docker_client.images.get(IMAGE_TAG).id
    submission_id = submit(contest, "analyst", mean_stay())

    assert scoring.run_submission(contest, submission_id) == "scored"

    with contest.tx() as session:
        scored = session.get_one(Submission, submission_id)
        assert (scored.runtime, scored.image_digest) == (expected, image)
        assert scored.certificate is not None
        verify_certificate(scored.certificate, contest.release_key.public_pem)
        document = scored.certificate["document"]
        assert (document["runtime"], document["image_digest"]) == (expected, image)
