"""The whole product running for a test: a portal on a free port and real worker processes."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from portal import create_app
from sandbox.cli import worker_command
from sandbox.context import Sandbox
from tests.factories import make_sandbox

ROOT = Path(__file__).resolve().parents[1]


def worker_env(sandbox: Sandbox) -> dict[str, str]:
    settings = sandbox.settings
    env = dict(os.environ)
    env.update(
        SANDBOX_INSTANCE=str(settings.instance),
        SANDBOX_DATABASE_URL=settings.database_url,
        SANDBOX_BROKER_URL=settings.broker_url,
        SANDBOX_RUNNER=settings.runner,
        SANDBOX_RUNTIME=settings.runtime,
        SANDBOX_JOB_TIMEOUT=str(settings.job_timeout_s),
        SANDBOX_SUBMISSION_TIMEOUT=str(settings.submission_timeout_s),
        SANDBOX_MAX_MODEL_BYTES=str(settings.max_model_bytes),
        PYTHONPATH=str(ROOT),
    )
    return env


def start_worker(
    sandbox: Sandbox,
    *,
    concurrency: int = 1,
    name: str = "w1",
    queues: tuple[str, ...] = ("sandbox-jobs",),
) -> subprocess.Popen[bytes]:
    with open(sandbox.settings.instance / f"worker-{name}.log", "ab") as log:
        return subprocess.Popen(
            # The command `sandbox worker` runs, under a name of its own.
            [*worker_command(concurrency, queues=queues), "-n", f"{name}@%h"],
            env=worker_env(sandbox),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=sandbox.settings.instance,
        )


@dataclass
class LivePortal:
    sandbox: Sandbox
    base_url: str
    credentials: dict[str, str]
    server: Any
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                status = response.status
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            raw, status, kind = error.read(), error.code, error.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()

    def token(self, username: str) -> str:
        status, body = self.request(
            "POST",
            "/api/v1/auth/token",
            {"username": username, "password": self.credentials[username]},
        )
        assert status == 200, body
        return str(body["token"])

    def wait_for(
        self, job_id: str, token: str, *, timeout: float = 120, poll: float = 0.05
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        final = {"released", "rejected", "failed", "withheld", "pending_review"}
        while time.monotonic() < deadline:
            status, body = self.request("GET", f"/api/v1/jobs/{job_id}", token=token)
            assert status == 200, body
            if body["status"] in final:
                return dict(body)
            time.sleep(poll)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {body}")

    def run_job(self, username: str, body: dict[str, Any]) -> dict[str, Any]:
        """Submit a job as ``username`` and wait for it to stop moving; its status."""
        token = self.token(username)
        status, job = self.request("POST", "/api/v1/jobs", body, token)
        assert status == 202, job
        return self.wait_for(str(job["id"]), token)

    def release_sql_jobs(
        self, username: str, *, dataset: str, jobs: list[tuple[str, str, float | None]]
    ) -> list[str]:
        """Run each ``(mode, sql, epsilon)`` as ``username``, each released; their ids."""
        ids = []
        for mode, code, epsilon in jobs:
            body: dict[str, Any] = {"dataset": dataset, "language": "sql", "mode": mode}
            body["code"] = code
            if epsilon is not None:
                body["epsilon"] = epsilon
            job = self.run_job(username, body)
            assert job["status"] == "released", job
            ids.append(str(job["id"]))
        return ids

    def wait_for_submission(
        self, submission_id: str, token: str, *, timeout: float = 300, poll: float = 0.2
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.request("GET", f"/api/v1/submissions/{submission_id}", token=token)
            assert status == 200, body
            if body["status"] in ("scored", "failed"):
                return dict(body)
            time.sleep(poll)
        raise AssertionError(f"submission {submission_id} not done in {timeout} s: {body}")

    def stop(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()  # reaped, so no zombie outlives the test
        self.server.shutdown()


def log_in(page: Any, live: LivePortal, username: str = "analyst") -> None:
    """Log a demo user in on the live portal's login page, in a Playwright page."""
    page.goto(live.base_url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", live.credentials[username])
    page.click("form button[type=submit]")
    page.wait_for_url(live.base_url + "/")


def start_live_portal(
    instance: Path, *, runner: str = "local", worker: bool = True, **settings: Any
) -> LivePortal:
    """``worker=False``: the portal alone, for tests that queue no job."""
    sandbox = make_sandbox(instance, runner=runner, **settings)
    app = create_app({"SANDBOX": sandbox})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    live = LivePortal(
        sandbox=sandbox,
        base_url=f"http://127.0.0.1:{server.server_port}",
        credentials=sandbox.credentials,  # type: ignore[attr-defined]
        server=server,
    )
    if worker:
        live.workers.append(start_worker(sandbox))
    return live
