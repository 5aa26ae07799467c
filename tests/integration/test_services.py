"""The flow on the production services: a Redis broker with real worker processes,
and PostgreSQL as the metadata database under concurrent submissions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from sandbox.errors import BudgetExhausted
from sandbox.integrity import audit
from sandbox.jobs import submit
from sandbox.jobs.planning import JobRequest
from sandbox.models import Grant
from tests.factories import actor_with_id, make_sandbox
from tests.live import LivePortal, start_live_portal
from tests.services import REDIS_URL, fresh_postgres_database, redis_available


@pytest.fixture(scope="module")
def redis_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    redis_available()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    live = start_live_portal(tmp_path_factory.mktemp("redis") / "instance", broker_url=REDIS_URL)
    yield live
    live.stop()


@pytest.mark.redis
def test_redis_broker_worker_releases_sql_and_python_jobs(redis_portal: LivePortal) -> None:
    token = redis_portal.token("analyst")
    submissions = [
        {
            "language": "sql",
            "mode": "masked",
            "code": "SELECT hospital, COUNT(*) AS n FROM visits GROUP BY hospital",
        },
        {
            "language": "sql",
            "mode": "dp",
            "epsilon": 0.5,
            "code": "SELECT district, COUNT(*) AS n FROM patients GROUP BY district",
        },
        {
            "language": "python",
            "mode": "masked",
            "code": "import sandbox_job\nv = sandbox_job.table('labs')\n"
            "sandbox_job.frequency_table('t', v, by=['test_code'])",
        },
    ]
    ids = []
    for body in submissions:
        status, answer = redis_portal.request(
            "POST", "/api/v1/jobs", {"dataset": "health", **body}, token
        )
        assert status == 202, answer
        ids.append(answer["id"])
    for job_id in ids:
        assert redis_portal.wait_for(job_id, token)["status"] == "released"
    status, budget = redis_portal.request("GET", "/api/v1/budget", token=token)
    assert budget["budgets"][0]["epsilon_spent"] == pytest.approx(0.5)


@pytest.mark.postgres
def test_postgres_epsilon_and_delta_never_overspent_under_concurrency(tmp_path: Path) -> None:
    sandbox = make_sandbox(tmp_path / "instance", database_url=fresh_postgres_database())
    with sandbox.tx() as session:
        # ε would allow 10 jobs; δ only 5: the δ side of the ledger is what runs out.
        session.execute(
            update(Grant).values(
                epsilon_total=10.0,
                max_epsilon_per_job=1.0,
                delta_total=5e-6,
                max_delta_per_job=1e-6,
            )
        )
        analyst_id = session.query(Grant).first().analyst_id  # type: ignore[union-attr]
    outcomes: list[str] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        barrier.wait()
        try:
            submit.submit_job(
                sandbox,
                by=actor_with_id(sandbox, analyst_id),
                request=JobRequest(
                    dataset="health",
                    language="sql",
                    mode="dp",
                    code="SELECT COUNT(*) AS n FROM visits",
                    epsilon=1.0,
                    delta=1e-6,
                ),
                enqueue=lambda _: None,
            )
            outcomes.append("queued")
        except BudgetExhausted:
            outcomes.append("exhausted")

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exhausted"] * 15 + ["queued"] * 5
    with sandbox.tx() as session:
        spent = [
            (g.epsilon_spent, g.delta_spent)
            for g in session.query(Grant)
            if g.analyst_id == analyst_id
        ]
        assert spent == [(pytest.approx(5.0), pytest.approx(5e-6))]
        assert audit.verify(session).ok  # concurrent appends kept one chain
