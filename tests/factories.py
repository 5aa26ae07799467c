"""Plain factory functions with defaults: a ready sandbox instance for a test."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from flask import Flask
from sqlalchemy import select

from datasets.health import generate_health
from policies.permissions import Actor
from portal import create_app
from sandbox.config import Settings
from sandbox.context import Sandbox
from sandbox.db import upgrade_database
from sandbox.demo import ensure_demo_grants, ensure_demo_users
from sandbox.models import Contest, Job, Track
from tests.services import fresh_postgres_database

TEST_PATIENTS = 1500


@cache
def health_tables(patients: int = TEST_PATIENTS, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Generated once per test session; callers must not modify the frames."""
    return generate_health(patients, seed=seed)


def make_settings(
    instance: Path,
    *,
    database_url: str | None = None,
    broker_url: str | None = None,
    runner: str = "local",
    timeout_s: int = 60,
    **overrides: Any,
) -> Settings:
    """Test settings; ``overrides`` sets any other field of Settings (``max_import_bytes``)."""
    if database_url is None and os.environ.get("SANDBOX_TEST_METADATA") == "postgres":
        database_url = fresh_postgres_database()
    fields: dict[str, Any] = {
        "instance": instance,
        "database_url": database_url or f"sqlite:///{instance / 'sandbox.db'}",
        "broker_url": broker_url or f"sqla+sqlite:///{instance / 'broker.db'}",
        "runner": runner,
        "environment": "development",
        "job_timeout_s": timeout_s,
        "job_memory_mb": 1024,
        "runtime": "auto",
        # Generous fair-share limits: most tests submit in bursts; test_fair_share sets its own.
        "max_active_jobs": 100,
        "max_submissions_per_minute": 1000,
        # Jobs run in this process start no warm containers: nothing would close them
        # before the test process ends. Worker processes take SANDBOX_RUNNER_POOL.
        "runner_pool": 0,
    }
    return Settings(**{**fields, **overrides})


def make_sandbox(instance: Path, *, patients: int = TEST_PATIENTS, **settings: object) -> Sandbox:
    """A migrated instance with demo users, grants and the health data stored."""
    sandbox = Sandbox(make_settings(instance, **settings))  # type: ignore[arg-type]
    upgrade_database(sandbox.settings)
    credentials = ensure_demo_users(sandbox)
    from sandbox.access.users import user_by_name
    from sandbox.actions import actor_of
    from sandbox.demo import health_definition
    from sandbox.owners.publishing import Mode, publish_tables

    manifest, policy_text = health_definition()
    with sandbox.tx() as session:
        owner = user_by_name(session, "owner")
        assert owner is not None
        publish_tables(
            sandbox,
            session,
            by=actor_of(owner),
            manifest=manifest,
            policy_text=policy_text,
            tables=health_tables(patients),
            mode=Mode.NEW,
        )
    ensure_demo_grants(sandbox)
    sandbox.credentials = credentials  # type: ignore[attr-defined]
    return sandbox


def make_app(sandbox: Sandbox, **config: Any) -> Flask:
    """The portal over `sandbox` in testing mode. What it would send to the broker is kept
    in `app.config["QUEUED"]` (jobs), `["QUEUED_SUBMISSIONS"]` and `["QUEUED_FINALS"]`
    instead, so a test sees what was queued."""
    queued: list[str] = []
    submissions: list[str] = []
    finals: list[str] = []
    app = create_app(
        {
            "SANDBOX": sandbox,
            "ENQUEUE": queued.append,
            "ENQUEUE_SUBMISSION": submissions.append,
            "ENQUEUE_FINAL": finals.append,
            "TESTING": True,
        }
        | config
    )
    app.config["QUEUED"] = queued
    app.config["QUEUED_SUBMISSIONS"] = submissions
    app.config["QUEUED_FINALS"] = finals
    return app


def submit_job(
    sandbox: Sandbox,
    code: str,
    *,
    language: str = "sql",
    mode: str = "masked",
    epsilon: float | None = None,
    who: str = "analyst",
    enqueue: Callable[[str], None] = lambda _: None,
) -> Job:
    """Submit a job on the health data as a demo user, through the real checks."""
    from sandbox.jobs import submit
    from sandbox.jobs.planning import JobRequest

    request = JobRequest(dataset="health", language=language, mode=mode, code=code, epsilon=epsilon)
    return submit.submit_job(sandbox, by=actor(sandbox, who), request=request, enqueue=enqueue)


def actor(sandbox: Sandbox, username: str) -> Actor:
    """Who acts, as the portal passes them to an action."""
    from sandbox.access.users import actor_named

    return actor_named(sandbox, username=username)


def actor_with_id(sandbox: Sandbox, user_id: int) -> Actor:
    """Who acts, by their user id."""
    from sandbox.actions import actor_of
    from sandbox.models import User

    with sandbox.tx() as session:
        return actor_of(session.get_one(User, user_id))


def insert_track(
    sandbox: Sandbox, contest: str, *, daily_quota: int = 5, total_quota: int = 100
) -> str:
    """A track row of ``contest``, inserted directly, for tests of what comes after a
    track is set up (no grant, no split key, no baseline)."""
    with sandbox.tx() as session:
        contest_id = session.scalars(select(Contest.id).where(Contest.slug == contest)).one()
        track = Track(
            contest_id=contest_id,
            slug="readmission",
            title="30天再入院预测",
            dataset="health",
            dataset_version="1",
            task="binary",
            target="visits.readmitted_30d",
            metric="roc_auc",
            split_key={},
            daily_quota=daily_quota,
            total_quota=total_quota,
        )
        session.add(track)
        session.flush()
        return track.id
