"""The dry run and the submission decide through one function: their verdicts agree.

For generated jobs (languages, modes, good and forbidden code, ε and δ under and
over the grant's per-job caps, rows-per-person bounds, a budget that runs out),
``POST /api/v1/policy/check``'s ``allowed`` equals whether the submission right
after it is accepted; a malformed job is refused by both with the same error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.permissions import Actor
from sandbox.context import Sandbox
from sandbox.errors import PolicyRejected, SandboxError
from sandbox.jobs import submit as submission
from sandbox.jobs.planning import JobRequest
from tests.factories import actor, make_sandbox

SQL = [
    "SELECT department, COUNT(*) AS n FROM visits GROUP BY department",
    "SELECT district, COUNT(*) AS n FROM patients GROUP BY district",
    "SELECT department, SUM(cost) AS total FROM visits GROUP BY department",
    "SELECT name, COUNT(*) FROM patients GROUP BY name",  # a negative-list column
    "SELECT * FROM visits",  # row-level output
    "SELECT department, COUNT(*) FROM visits WHERE",  # does not parse
    "SELECT department, MEDIAN(length_of_stay) AS los FROM visits GROUP BY department",
]
PYTHON = [
    "import sandbox_job\nv = sandbox_job.table('visits')\n"
    "sandbox_job.frequency_table('n', v, by=['department'])\n",
    "import os\nos.system('id')\n",
    "import sandbox_job\nprint(open('/etc/passwd').read())\n",
]
jobs = st.builds(
    JobRequest,
    dataset=st.sampled_from(["health", "health", "health", "nope"]),
    language=st.sampled_from(["sql", "sql", "python", "r"]),
    mode=st.sampled_from(["dp", "masked"]),
    code=st.one_of(st.sampled_from(SQL), st.sampled_from(PYTHON), st.just("")),
    epsilon=st.sampled_from([None, 0.25, 1.0, 2.0, 2.5, 7.0, -1.0]),
    delta=st.sampled_from([None, 0.0, 5e-6, 1e-5, 3e-5]),
    rows_per_person=st.sampled_from([None, 1, 5, 100_000]),
)


def _verdicts(sandbox: Sandbox, by: Actor, request: JobRequest) -> tuple[object, object]:
    try:
        allowed: object = submission.check_job(sandbox, by=by, request=request)["allowed"]
    except SandboxError as error:
        allowed = type(error)
    try:
        submission.submit_job(sandbox, by=by, request=request, enqueue=lambda _: None)
    except PolicyRejected:  # a rejection is recorded: the dry run said not allowed
        accepted: object = False
    except SandboxError as error:
        # No grant is a finding to the dry run and a refusal (403) to the submission.
        accepted = False if error.code == "no_active_grant" else type(error)
    else:
        accepted = True
    return allowed, accepted


@pytest.mark.slow
def test_dry_run_verdict_equals_submission(tmp_path: Path) -> None:
    sandbox = make_sandbox(
        tmp_path / "instance", max_active_jobs=10_000, max_submissions_per_minute=10_000
    )
    analyst = actor(sandbox, "analyst")
    seen: list[tuple[object, object]] = []

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(request=jobs)
    def agree(request: JobRequest) -> None:
        allowed, accepted = _verdicts(sandbox, analyst, request)
        seen.append((allowed, accepted))
        assert allowed == accepted, request

    agree()
    # The cases cover both verdicts and refusals of malformed jobs.
    assert {True, False} <= {a for a, _ in seen}
