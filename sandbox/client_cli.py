"""``sandbox jobs``: the analyst's commands, over the JSON API with :mod:`sandbox.client`.

They need no instance and no database, only a portal's address and a token, so an
analyst runs them from their own machine::

    export SANDBOX_URL=http://127.0.0.1:8000 SANDBOX_TOKEN=...
    sandbox jobs submit by_department.sql --dataset health --mode dp --epsilon 0.5 --wait
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sandbox.client import DEFAULT_URL, Client, ClientError, Job

if TYPE_CHECKING:
    import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])
# Exit statuses: 1 an error or a job that ended without a release, 3 held for review.
HELD_FOR_REVIEW = 3
NOT_RELEASED = {"rejected": "rejected", "failed": "failed", "withheld": "withheld"}


def _connection(command: F) -> F:
    """``--url`` and ``--token`` on every command (or SANDBOX_URL and SANDBOX_TOKEN)."""
    command = click.option(
        "--token",
        envvar="SANDBOX_TOKEN",
        help="Your API token [env SANDBOX_TOKEN] (sandbox jobs login prints one).",
    )(command)
    return click.option(
        "--url",
        envvar="SANDBOX_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The portal [env SANDBOX_URL].",
    )(command)


def _client(url: str, token: str | None) -> Client:
    if not token:
        raise click.UsageError(
            "give --token or set SANDBOX_TOKEN (sandbox jobs login --username NAME prints one)"
        )
    return Client(url, token)


@contextmanager
def _api_errors() -> Iterator[None]:
    """An API refusal in one line (and each finding), exit status 1; never a traceback."""
    try:
        yield
    except ClientError as error:
        for finding in error.findings:
            where = f" ({finding['location']})" if finding.get("location") else ""
            click.echo(f"  - {finding.get('rule', '?')}{where}: {finding.get('message')}", err=True)
        wait = f"; try again in {error.retry_after:g} s" if error.retry_after else ""
        raise click.ClickException(f"{error}{wait}") from None


@click.group("jobs")
def jobs() -> None:
    """Your jobs on a portal, over its API: submit, wait, read results, mock data, budget."""


@jobs.command("login")
@click.option("--url", envvar="SANDBOX_URL", default=DEFAULT_URL, show_default=True)
@click.option("--username", required=True)
@click.option("--password", envvar="SANDBOX_PASSWORD", help="[env SANDBOX_PASSWORD] Default: ask.")
def jobs_login(url: str, username: str, password: str | None) -> None:
    """Log in and print a token to export: eval $(sandbox jobs login --username NAME)."""
    if password is None:  # asked on stderr, so that $(...) captures only the export line
        password = click.prompt("password", hide_input=True, err=True)
    with _api_errors():
        client = Client.login(url, username, password, label="sandbox jobs login")
    click.echo(f"export SANDBOX_TOKEN={client.token}")


@jobs.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="The dataset, e.g. health.")
@click.option("--mode", type=click.Choice(["masked", "dp"]), default="masked", show_default=True)
@click.option(
    "--language",
    type=click.Choice(["sql", "python"]),
    help="Default: from the file's suffix (.sql, .py).",
)
@click.option("--epsilon", type=float, help="The ε to spend (dp).")
@click.option("--delta", type=float, help="The δ to spend (dp, Gaussian noise).")
@click.option("--rows-per-person", type=int, help="Rows one person may add (dp).")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits.")
@_connection
def jobs_submit(  # noqa: PLR0913 - click hands every option over as an argument
    file: Path,
    dataset: str,
    mode: str,
    language: str | None,
    epsilon: float | None,
    delta: float | None,
    rows_per_person: int | None,
    wait: bool,
    timeout: float,
    url: str,
    token: str | None,
) -> None:
    """Submit FILE (.sql or .py); with --wait print the released table(s).

    Exit status 1 when the job is refused or ends without a release, 3 when it is
    held for an auditor's review.
    """
    client = _client(url, token)
    with _api_errors():
        job = client.submit(
            file,
            dataset=dataset,
            mode=mode,
            language=language,
            epsilon=epsilon,
            delta=delta,
            rows_per_person=rows_per_person,
        )
        click.echo(f"job {job.id}: {job.status}", err=True)
        if not wait:
            click.echo(job.id)
            return
        done = client.wait(job.id, timeout=timeout, progress=_echo_status)
        _settle(done)
        _echo_tables(client.result(job.id))


@jobs.command("status")
@click.argument("job_id")
@_connection
def jobs_status(job_id: str, url: str, token: str | None) -> None:
    """A job's status, findings and error."""
    with _api_errors():
        job = _client(url, token).status(job_id)
    click.echo(f"job {job.id}: {job.status}")
    for name in ("dataset", "mode", "language", "epsilon", "submitted_at", "finished_at"):
        value = getattr(job, name)
        if value is not None:
            click.echo(f"  {name:<13} {value}")
    for finding in job.findings:
        click.echo(f"  - {finding.get('rule', '?')}: {finding.get('message')}")
    if job.error:
        click.echo(f"  error: {job.error.get('message')} ({job.error.get('code')})")


@jobs.command("result")
@click.argument("job_id")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (one table: --table) instead of text.")
@click.option("--table", help="Only this table.")
@_connection
def jobs_result(job_id: str, as_csv: bool, table: str | None, url: str, token: str | None) -> None:
    """A released job's table(s), with each noisy value's 95 % error."""
    with _api_errors():
        tables = _client(url, token).result(job_id)
    if table is not None:
        if table not in tables:
            raise click.BadParameter(f"the tables are {', '.join(tables)}", param_hint="--table")
        tables = {table: tables[table]}
    if not as_csv:
        _echo_tables(tables)
        return
    if len(tables) != 1:
        raise click.UsageError(f"--csv writes one table: add --table ({', '.join(tables)})")
    (frame,) = tables.values()
    click.echo(frame.to_csv(index=False), nl=False)


@jobs.command("mock")
@click.argument("dataset")
@click.argument("table")
@click.option("--rows", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of text.")
@_connection
def jobs_mock(
    dataset: str, table: str, rows: int, as_csv: bool, url: str, token: str | None
) -> None:
    """Synthetic rows with TABLE's schema (no real data) to write code against."""
    with _api_errors():
        frame = _client(url, token).mock(dataset, table, rows=rows)
    click.echo(frame.to_csv(index=False) if as_csv else _aligned(frame), nl=not as_csv)


@jobs.command("budget")
@_connection
def jobs_budget(url: str, token: str | None) -> None:
    """ε and δ spent and left on each of your grants."""
    import pandas as pd

    with _api_errors():
        budgets = _client(url, token).budget()
    if not budgets:
        click.echo("you hold no grants")
        return
    columns = ["dataset", "modes", "active", "epsilon_spent", "epsilon_remaining", "expires_at"]
    frame = pd.DataFrame(budgets)
    frame["modes"] = frame["modes"].map(lambda modes: ",".join(modes))
    click.echo(_aligned(frame[[c for c in columns if c in frame]]))


def _echo_status(job: Job) -> None:
    click.echo(f"job {job.id}: {job.status}", err=True)


def _settle(job: Job) -> None:
    """Exit unless the job was released, saying why in the job's own words."""
    if job.status == "released":
        return
    if job.status == "pending_review":
        click.echo(
            f"job {job.id} is held for an auditor's review; once released: "
            f"sandbox jobs result {job.id}",
            err=True,
        )
        raise SystemExit(HELD_FOR_REVIEW)
    for finding in job.findings:
        click.echo(f"  - {finding.get('rule', '?')}: {finding.get('message')}", err=True)
    why = f": {job.error.get('message')}" if job.error else ""
    raise click.ClickException(f"job {job.id} was {NOT_RELEASED.get(job.status, job.status)}{why}")


def _echo_tables(tables: dict[str, pd.DataFrame]) -> None:
    for name, frame in tables.items():
        privacy = frame.attrs.get("privacy") or {}
        spent = f"  ε spent {privacy['epsilon']:g}" if privacy.get("epsilon") else ""
        click.echo(f"== {name} ({len(frame)} rows){spent}")
        # The interval is the value ± its error: the error column alone reads better.
        ends = [
            c for c in frame if c.removesuffix("_low").removesuffix("_high") + "_error95" in frame
        ]
        shown = frame.drop(columns=[c for c in ends if c.endswith(("_low", "_high"))])
        click.echo(_aligned(shown))


def _aligned(frame: pd.DataFrame) -> str:
    import pandas as pd

    if frame.empty:
        return "(no rows)"
    # Chinese characters take two columns in a terminal: pandas pads them as such.
    with pd.option_context(
        "display.unicode.east_asian_width", True, "display.width", 0, "display.max_rows", None
    ):
        return str(frame.to_string(index=False, na_rep="—", float_format="{:.2f}".format))
