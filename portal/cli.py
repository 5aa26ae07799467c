"""The ``sandbox`` command-line tool: the core's commands and those that start the web app.

The commands of :mod:`sandbox.cli` run without the portal; ``serve`` and
``demo`` start it, so they are added here, on the portal's side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import click

from sandbox.cli import main, worker_command
from sandbox.context import current, docker_ready

__all__ = ["main"]


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def serve(host: str, port: int) -> None:
    """Serve the portal (web pages and JSON API)."""
    from werkzeug.serving import run_simple

    from portal import create_app

    run_simple(host, port, create_app(), threaded=True, use_reloader=False)


@main.command()
@click.option("--patients", default=20_000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Set up and exit (for scripts and tests).")
def demo(patients: int, host: str, port: int, no_serve: bool) -> None:
    """Set everything up on embedded defaults and run the whole product."""
    from sandbox.db import upgrade_database
    from sandbox.demo import (
        ensure_demo_contest,
        ensure_demo_grants,
        ensure_demo_users,
        store_dataset,
    )

    sandbox = current()
    upgrade_database(sandbox.settings)
    credentials = ensure_demo_users(sandbox)
    if not sandbox.store.exists("health"):
        click.echo(f"generating the synthetic health dataset ({patients} patients) ...")
        store_dataset(sandbox, patients=patients, seed=20221, owner="owner")
    ensure_demo_grants(sandbox)
    if ensure_demo_contest(sandbox):
        # The worker's sweeper sends the baselines' submissions as it starts.
        click.echo("demo contest health-2026: 3 tracks, 2 teams, baselines queued")
    ready, why = docker_ready()
    if ready and sandbox.settings.runner != "local":
        click.echo("runner: Docker (network none, read-only, non-root, no capabilities)")
    else:
        bar = "!" * 78
        click.secho(
            f"{bar}\n! WARNING: {why}.\n! Jobs run in the DEVELOPMENT PROCESS RUNNER, WITHOUT "
            f"container isolation.\n! Never load real data into this instance.\n{bar}",
            fg="red",
            bold=True,
            err=True,
        )
    click.echo("\ndemo users (username / password):")
    for name, password in credentials.items():
        click.echo(f"  {name:<9} {password}")
    base = f"http://{host}:{port}"
    click.echo(_curl_example(base, credentials["analyst"]))
    if no_serve:
        return
    env = dict(os.environ)
    env.setdefault("SANDBOX_INSTANCE", str(sandbox.settings.instance))
    # Researchers' jobs and contest submissions each have a worker of their own, so a
    # burst of submissions never holds a job back.
    workers = [
        subprocess.Popen([*worker_command(2), "-n", "jobs@%h"], env=env),
        subprocess.Popen(
            [*worker_command(1, queues=("sandbox-contest",)), "-n", "contest@%h"], env=env
        ),
    ]
    # Stopped by a signal or by Ctrl-C, the demo takes its workers with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    pids = ", ".join(str(w.pid) for w in workers)
    click.echo(f"workers started (pids {pids}); portal on {base}/  (Ctrl-C stops all)")
    try:
        from werkzeug.serving import run_simple

        from portal import create_app

        run_simple(host, port, create_app(), threaded=True, use_reloader=False)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()


def _curl_example(base: str, password: str) -> str:
    sql = "SELECT district, sex, COUNT(*) AS n, AVG(cost) AS avg_cost FROM visits v JOIN patients p ON v.person_id = p.person_id GROUP BY district, sex"  # noqa: E501
    body = json.dumps(
        {"dataset": "health", "language": "sql", "mode": "masked", "code": sql}, ensure_ascii=False
    )
    return f"""
try it (copy and paste):

  TOKEN=$(curl -s {base}/api/v1/auth/token -H 'Content-Type: application/json' \\
      -d '{{"username": "analyst", "password": "{password}"}}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["token"])')
  JOB=$(curl -s {base}/api/v1/jobs -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
      -d '{body}' | python3 -c 'import sys, json; print(json.load(sys.stdin)["id"])')
  sleep 3; curl -s {base}/api/v1/jobs/$JOB -H "Authorization: Bearer $TOKEN"
  curl -s {base}/api/v1/jobs/$JOB/result -H "Authorization: Bearer $TOKEN"
"""  # noqa: E501


if __name__ == "__main__":
    main()
