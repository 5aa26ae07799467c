"""The job flow in one process: submit, run (development runner), release, audit."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.access import grants
from sandbox.access.users import user_by_name
from sandbox.context import Sandbox
from sandbox.errors import BudgetExhausted, NoActiveGrant, PolicyRejected
from sandbox.integrity import audit
from sandbox.integrity.signing import sha256_json, verify_certificate
from sandbox.jobs import submit as submission
from sandbox.jobs.pipeline import run_job
from sandbox.jobs.planning import JobRequest
from sandbox.models import Grant, Job
from tests.factories import actor, submit_job


def user_id(sandbox: Sandbox, name: str) -> int:
    with sandbox.tx() as session:
        user = user_by_name(session, name)
        assert user is not None
        return user.id


def submit(
    sandbox: Sandbox,
    code: str,
    *,
    mode: str = "masked",
    language: str = "sql",
    epsilon: float | None = None,
    who: str = "analyst",
) -> Job:
    queued: list[str] = []
    job = submit_job(
        sandbox, code, language=language, mode=mode, epsilon=epsilon, who=who, enqueue=queued.append
    )
    assert queued == [job.id]
    return job


def finished(sandbox: Sandbox, job: Job) -> Job:
    run_job(sandbox, job.id)
    with sandbox.tx() as session:
        found = session.get(Job, job.id)
        assert found is not None
        return found


def test_pipeline_masked_sql_released_and_signed(sandbox_instance: Sandbox) -> None:
    job = finished(
        sandbox_instance,
        submit(
            sandbox_instance,
            "SELECT department, COUNT(*) AS n, AVG(cost) AS c FROM visits GROUP BY department",
        ),
    )
    assert job.status == "released", (job.error_code, job.error_message)
    assert job.result is not None and job.certificate is not None
    verify_certificate(job.certificate, sandbox_instance.release_key.public_pem)
    assert job.certificate["document"]["outputs_sha256"] == sha256_json(job.result["tables"])
    assert not (sandbox_instance.settings.work_dir / job.id).exists()  # the view is gone


def test_pipeline_never_releases_direct_identifiers(sandbox_instance: Sandbox) -> None:
    job = finished(
        sandbox_instance,
        submit(
            sandbox_instance,
            "import sandbox_job\n"
            "p = sandbox_job.table('patients')\n"
            "sandbox_job.frequency_table('cols', p, by=['district'])\n"
            "assert 'name' not in p.columns and 'id_card' not in p.columns\n"
            "assert 'birth_date' not in p.columns and 'birth_year' in p.columns\n",
            language="python",
        ),
    )
    assert job.status == "released", (job.error_code, job.error_message)


def test_pipeline_rejection_is_recorded_and_explained(sandbox_instance: Sandbox) -> None:
    with pytest.raises(PolicyRejected) as caught:
        submit(sandbox_instance, "SELECT name, COUNT(*) FROM patients GROUP BY name")
    error = caught.value.to_dict()
    assert error["rule"] == "column.forbidden"
    assert "name" in error["message"]
    with sandbox_instance.tx() as session:
        job = session.get(Job, error["job_id"])
        assert job is not None and job.status == "rejected"
        assert audit.verify(session).ok


def test_pipeline_dp_charges_budget_until_exhausted(sandbox_instance: Sandbox) -> None:
    released = []
    for i in range(5):  # the demo grant holds ε=10, at most 2 per job
        sql = f"SELECT sex, COUNT(*) AS n FROM patients WHERE birth_year > {1900 + i} GROUP BY sex"
        released.append(
            finished(sandbox_instance, submit(sandbox_instance, sql, mode="dp", epsilon=2.0))
        )
    assert [j.status for j in released] == ["released"] * 5
    assert released[0].result is not None
    assert released[0].result["privacy"]["epsilon"] == 2.0
    with pytest.raises(BudgetExhausted) as caught:
        submit(sandbox_instance, sql, mode="dp", epsilon=0.5)
    assert caught.value.to_dict()["rule"] == "dp.budget_exhausted"
    with sandbox_instance.tx() as session:
        grant = session.get_one(Grant, released[0].grant_id)
        assert grant.epsilon_spent == pytest.approx(10.0)


def test_pipeline_failed_job_refunds_and_hides_values(sandbox_instance: Sandbox) -> None:
    job = finished(
        sandbox_instance,
        submit(
            sandbox_instance,
            "import sandbox_job\n"
            "p = sandbox_job.table('visits')\n"
            "raise ValueError(str(p.head(3).to_dict()))\n",
            language="python",
        ),
    )
    assert job.status == "failed"
    assert job.error_message == "The job raised ValueError at line 3 of your code."
    assert job.log and "ValueError" in job.log  # the auditor's copy keeps the detail


def test_pipeline_revoked_grant_stops_queued_job(sandbox_instance: Sandbox) -> None:
    job = submit(sandbox_instance, "SELECT COUNT(*) AS n FROM visits")
    grants.revoke_grant(
        sandbox_instance, by=actor(sandbox_instance, "owner"), grant_id=job.grant_id
    )
    job = finished(sandbox_instance, job)
    assert job.status == "failed" and job.error_code == "grant_inactive"
    with pytest.raises(NoActiveGrant):
        submit(sandbox_instance, "SELECT COUNT(*) AS n FROM visits")


def test_pipeline_run_is_idempotent(sandbox_instance: Sandbox) -> None:
    job = finished(sandbox_instance, submit(sandbox_instance, "SELECT COUNT(*) AS n FROM visits"))
    assert run_job(sandbox_instance, job.id) == "released"
    with sandbox_instance.tx() as session:
        actions = [e.action for e in session.query(audit.AuditEntry).filter_by(subject=job.id)]
    assert actions == ["job.submitted", "job.queued", "job.running", "job.checking", "job.released"]


def test_pipeline_consent_filter_applies(sandbox_instance: Sandbox) -> None:
    from tests.factories import health_tables

    patients = health_tables()["patients"]
    consenting = int(patients["consent_research"].sum())
    job = finished(sandbox_instance, submit(sandbox_instance, "SELECT COUNT(*) AS n FROM patients"))
    result: dict[str, Any] = job.result or {}
    assert result["tables"][0]["rows"] == [[consenting]]
    assert consenting < len(patients)


class _UnavailableOnce:
    """A runner whose engine is down for the first call, then the real development runner."""

    name = "flaky"

    def __init__(self) -> None:
        from runners.local import LocalProcessRunner

        self.calls = 0
        self.real = LocalProcessRunner()

    def run(self, spec: Any) -> Any:
        from runners import RunnerUnavailable

        self.calls += 1
        if self.calls == 1:
            raise RunnerUnavailable("engine restarting")
        return self.real.run(spec)

    def cleanup_orphans(self) -> int:
        return 0


def test_pipeline_retry_after_runner_unavailable_runs_the_job(sandbox_instance: Sandbox) -> None:
    from runners import RunnerUnavailable

    sandbox_instance.runner = _UnavailableOnce()  # type: ignore[misc]
    job = submit(sandbox_instance, "SELECT COUNT(*) AS n FROM visits")
    with pytest.raises(RunnerUnavailable):
        run_job(sandbox_instance, job.id)
    assert run_job(sandbox_instance, job.id) == "released"  # what Celery's retry does


def test_pipeline_python_view_lacks_closed_columns(sandbox_instance: Sandbox) -> None:
    with sandbox_instance.tx() as session:
        analyst = user_by_name(session, "analyst")
        assert analyst is not None
        grant = session.query(Grant).filter_by(analyst_id=analyst.id).one()
        grant.columns = ["visits.department", "visits.person_id", "visits.cost"]
    job = finished(
        sandbox_instance,
        submit(
            sandbox_instance,
            "import sandbox_job\n"
            "v = sandbox_job.table('visits')\n"
            "assert sorted(v.columns) == ['cost', 'department', 'person_id'], list(v.columns)\n"
            "p = sandbox_job.table('patients')\n"
            "assert 'consent_research' not in p.columns and 'sex' not in p.columns\n"
            "sandbox_job.frequency_table('n', v, by=['department'])\n",
            language="python",
        ),
    )
    assert job.status == "released", (job.error_code, job.error_message, job.log)
    assert job.certificate is not None
    assert job.certificate["document"]["policy_version"] == job.policy_version != ""


def test_pipeline_sql_respects_grant_columns(sandbox_instance: Sandbox) -> None:
    with sandbox_instance.tx() as session:
        analyst = user_by_name(session, "analyst")
        assert analyst is not None
        session.query(Grant).filter_by(analyst_id=analyst.id).one().columns = [
            "visits.department",
            "visits.cost",
            "visits.person_id",
        ]
    with pytest.raises(PolicyRejected) as caught:
        submit(sandbox_instance, "SELECT hospital, COUNT(*) FROM visits GROUP BY hospital")
    assert caught.value.to_dict()["rule"] == "column.forbidden"
    sql = "SELECT department, AVG(cost) FROM visits GROUP BY department"
    job = finished(sandbox_instance, submit(sandbox_instance, sql))
    assert job.status == "released"


def test_pipeline_identical_dp_query_returns_the_cached_answer(sandbox_instance: Sandbox) -> None:
    sql = "SELECT district, COUNT(*) AS n FROM patients GROUP BY district"
    first = finished(sandbox_instance, submit(sandbox_instance, sql, mode="dp", epsilon=1.0))
    respelled = "select DISTRICT, count(*) as n  -- the same question\nfrom Patients group by 1"
    again = finished(sandbox_instance, submit(sandbox_instance, respelled, mode="dp", epsilon=1.0))
    other = finished(sandbox_instance, submit(sandbox_instance, sql, mode="dp", epsilon=0.5))
    assert first.result and again.result and other.result
    assert again.cached_from == first.id
    assert again.result["tables"] == first.result["tables"]  # the same draw, not a new one
    assert other.cached_from is None  # another ε is another question
    with sandbox_instance.tx() as session:
        grant = session.get_one(Grant, first.grant_id)
        assert grant.epsilon_spent == pytest.approx(1.5)


def test_pipeline_delta_jobs_use_gaussian_noise_and_the_delta_ledger(
    sandbox_instance: Sandbox,
) -> None:
    job = finished(
        sandbox_instance,
        submit(
            sandbox_instance,
            "SELECT sex, COUNT(*) AS n FROM patients GROUP BY sex",
            mode="dp",
            epsilon=0.5,
        ),
    )
    assert job.result is not None and job.result["privacy"]["mechanism"] == "laplace"
    with sandbox_instance.tx() as session:
        grant = session.get_one(Grant, job.grant_id)
        grant.delta_total, grant.max_delta_per_job = 2e-5, 1e-5
    sql = "SELECT district, COUNT(*) AS n FROM patients WHERE birth_year > {} GROUP BY district"
    for year in (1930, 1940):
        job = finished(
            sandbox_instance, submit(sandbox_instance, sql.format(year), mode="dp", epsilon=0.5)
        )
    with pytest.raises(PolicyRejected) as capped:
        submit_with_delta(sandbox_instance, sql.format(1950), delta=5e-5)
    assert capped.value.to_dict()["rule"] == "dp.delta_cap"
    released = [
        finished(sandbox_instance, submit_with_delta(sandbox_instance, sql.format(y), delta=1e-5))
        for y in (1960, 1970)
    ]
    assert all(j.result and j.result["privacy"]["mechanism"] == "gaussian" for j in released)
    assert released[0].result and released[0].result["privacy"]["delta"] == 1e-5
    with pytest.raises(BudgetExhausted):
        submit_with_delta(sandbox_instance, sql.format(1980), delta=1e-5)
    with sandbox_instance.tx() as session:
        grant = session.get_one(Grant, job.grant_id)
        assert grant.delta_spent == pytest.approx(2e-5)


def submit_with_delta(sandbox: Sandbox, code: str, *, delta: float) -> Job:
    request = JobRequest(
        dataset="health", language="sql", mode="dp", code=code, epsilon=0.5, delta=delta
    )
    return submission.submit_job(
        sandbox, by=actor(sandbox, "analyst"), request=request, enqueue=lambda _: None
    )


def test_pipeline_dp_quantiles_and_a_per_query_bound_on_persons_rows(
    sandbox_instance: Sandbox,
) -> None:
    sql = (
        "SELECT department, MEDIAN(length_of_stay) AS los, COUNT(*) AS n "
        "FROM visits GROUP BY department"
    )

    def submit_bounded(rows: int | None) -> Job:
        request = JobRequest(
            dataset="health",
            language="sql",
            mode="dp",
            code=sql,
            epsilon=0.5,
            rows_per_person=rows,
        )
        return submission.submit_job(
            sandbox_instance,
            by=actor(sandbox_instance, "analyst"),
            request=request,
            enqueue=lambda _: None,
        )

    job = finished(sandbox_instance, submit_bounded(3))
    assert job.status == "released", (job.error_code, job.error_message)
    assert job.result is not None and job.rows_per_person == 3
    assert job.result["privacy"]["rows_per_person"] == 3
    (table,) = job.result["tables"]
    assert table["error95_units"] == [None, "rank", "value"]
    assert all(0 <= row[1] <= 60 for row in table["rows"])  # a day count on the public grid
    # The same question with the default bound is another question: not the cached draw.
    other = finished(sandbox_instance, submit_bounded(None))
    assert other.cached_from is None and other.result is not None
    assert other.result["privacy"]["rows_per_person"] == 10
    with pytest.raises(PolicyRejected) as refused:
        submit_bounded(11)
    assert refused.value.to_dict()["rule"] == "dp.rows_per_person"


def test_pipeline_development_runner_records_no_runtime(sandbox_instance: Sandbox) -> None:
    job = finished(sandbox_instance, submit(sandbox_instance, "SELECT COUNT(*) AS n FROM visits"))

    assert job.status == "released", (job.error_code, job.error_message)
    assert (job.runtime, job.image_digest) == (None, None)
    assert job.certificate is not None
    document = job.certificate["document"]
    assert (document["runtime"], document["image_digest"]) == (None, None)
