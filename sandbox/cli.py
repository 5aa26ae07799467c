"""The ``sandbox`` command-line tool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from sandbox.context import Sandbox, current, docker_ready
from sandbox.integrity.signing import OutputFile


def _sandbox() -> Sandbox:
    return current()


@click.group()
def main() -> None:
    """Open-data sandbox (数据可用不可见): data usable, never visible."""


@main.group()
def db() -> None:
    """The metadata database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version."""
    from sandbox.db import upgrade_database

    upgrade_database(_sandbox().settings)
    click.echo("database is up to date")


@main.group()
def datasets() -> None:
    """Datasets."""


@datasets.command("generate")
@click.option("--patients", default=20_000, show_default=True, help="How many synthetic patients.")
@click.option("--seed", default=20221, show_default=True)
@click.option("--owner", default="owner", show_default=True, help="The data owner's username.")
def datasets_generate(patients: int, seed: int, owner: str) -> None:
    """Generate the synthetic health dataset and store it encrypted."""
    from sandbox.demo import store_dataset

    started = time.monotonic()
    version = store_dataset(_sandbox(), patients=patients, seed=seed, owner=owner)
    click.echo(
        f"health: {patients} patients, version {version[:12]}, {time.monotonic() - started:.1f} s"
    )


@datasets.command("reviewers")
@click.argument("name")
@click.argument("count", type=click.IntRange(1, 2))
@click.option("--as", "username", default="owner", show_default=True, help="The dataset's owner.")
def datasets_reviewers(name: str, count: int, username: str) -> None:
    """Require COUNT (1 or 2) distinct auditors to approve NAME's held outputs."""
    from sandbox.access import users
    from sandbox.errors import SandboxError
    from sandbox.jobs import reviews

    with _sandbox().tx() as session:
        try:
            reviews.set_reviewers_required(
                session, by=users.user_named(session, username), dataset=name, count=count
            )
        except SandboxError as error:
            raise click.ClickException(error.message) from error
    click.echo(f"{name}: {count} auditor(s) must approve each held output")


@main.group()
def consent() -> None:
    """Consent records (个人授权): withdraw or give one person's consent as a data owner."""


@consent.command("withdraw")
@click.option("--dataset", required=True, help="The dataset, e.g. health.")
@click.option("--person", "person_id", required=True, help="The person's raw id.")
@click.option("--purpose", required=True, help="The purpose of use, e.g. research.")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
def consent_withdraw(dataset: str, person_id: str, purpose: str, username: str) -> None:
    """End the person's consent to a purpose: every job that starts later leaves them out."""
    _change_consent(
        "withdraw", dataset=dataset, person_id=person_id, purpose=purpose, username=username
    )
    click.echo(f"{dataset}: consent to {purpose} withdrawn")


@consent.command("give")
@click.option("--dataset", required=True, help="The dataset, e.g. health.")
@click.option("--person", "person_id", required=True, help="The person's raw id.")
@click.option("--purpose", required=True, help="The purpose of use, e.g. research.")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
def consent_give(dataset: str, person_id: str, purpose: str, username: str) -> None:
    """Record the person's consent to a purpose."""
    _change_consent(
        "give", dataset=dataset, person_id=person_id, purpose=purpose, username=username
    )
    click.echo(f"{dataset}: consent to {purpose} given")


def _change_consent(
    action: str, *, dataset: str, person_id: str, purpose: str, username: str
) -> None:
    from sandbox.access import consent as consent_service
    from sandbox.access import users
    from sandbox.errors import SandboxError

    change = {"withdraw": consent_service.withdraw_consent, "give": consent_service.give_consent}[
        action
    ]
    with _sandbox().tx() as session:
        try:
            change(
                session,
                by=users.user_named(session, username),
                dataset=dataset,
                person_id=person_id,
                purpose=purpose,
            )
        except SandboxError as error:
            raise click.ClickException(error.message) from error


@main.group()
def users() -> None:
    """Users and tokens."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["owner", "analyst", "auditor", "admin"]), required=True)
@click.password_option()
def users_create(username: str, role: str, password: str) -> None:
    """Create a user."""
    from sandbox.access import users as user_service
    from sandbox.models import Role

    with _sandbox().tx() as session:
        user_service.create_user(
            session, username=username, password=password, role=Role(role), by="cli"
        )
    click.echo(f"created {role} {username}")


@users.command("token")
@click.argument("username")
def users_token(username: str) -> None:
    """Print a fresh API token for USERNAME."""
    from sandbox.access import users as user_service

    with _sandbox().tx() as session:
        user = user_service.user_by_name(session, username)
        if user is None:
            raise click.ClickException(f"There is no user {username}.")
        click.echo(user_service.issue_token(session, user=user))


@main.group()
def runner() -> None:
    """The isolated job runner."""


@runner.command("build-image")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
def runner_build_image(force: bool) -> None:
    """Build the runner image locally (no registry needed)."""
    from runners.image import build_image

    try:
        tag = build_image(force=force, echo=click.echo)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"runner image ready: {tag}")


@runner.command("status")
def runner_status() -> None:
    """Say which runner jobs would use."""
    ready, why = docker_ready()
    click.echo(f"docker: {why}")
    click.echo(f"configured: SANDBOX_RUNNER={_sandbox().settings.runner}")
    sys.exit(0 if ready else 1)


@main.group()
def policy() -> None:
    """Dataset policies and dry runs."""


@policy.command("check")
@click.argument("code_file", type=click.File("r", encoding="utf-8"))
@click.option("--analyst", required=True, help="Check as this analyst (their grant applies).")
@click.option("--dataset", default="health", show_default=True)
@click.option("--mode", type=click.Choice(["masked", "dp"]), default="masked", show_default=True)
@click.option(
    "--language",
    type=click.Choice(["sql", "python"]),
    default=None,
    help="Default: from the file name (.py is python, anything else sql).",
)
@click.option("--epsilon", type=float, default=None)
def policy_check(code_file, analyst, dataset, mode, language, epsilon):  # type: ignore[no-untyped-def]
    """Dry run: print every finding for CODE_FILE (- for standard input); queue nothing."""
    from sandbox.access import users as user_service
    from sandbox.jobs import submit

    language = language or ("python" if code_file.name.endswith(".py") else "sql")
    code = code_file.read()
    with _sandbox().tx() as session:
        user = user_service.user_by_name(session, analyst)
        if user is None:
            raise click.ClickException(f"There is no user {analyst}.")
        report = submit.dry_run(
            session,
            by=user,
            dataset=dataset,
            language=language,
            mode=mode,
            code=code,
            epsilon=epsilon,
        )
    if report["allowed"]:
        click.echo(f"allowed (policy {report['policy_version'][:12]})")
        return
    for finding in report["findings"]:
        where = f" at {finding['location']}" if finding.get("location") else ""
        click.echo(f"{finding['rule']}{where}: {finding['message']}")
        if finding.get("suggestion"):
            click.echo(f"    suggestion: {finding['suggestion']}")
    sys.exit(1)


@policy.command("show")
@click.option("--dataset", default="health", show_default=True)
def policy_show(dataset: str) -> None:
    """Print the dataset's column rules as the owner's file sets them."""
    from policies.policy_file import load_policy
    from sandbox.catalog import manifest_for

    click.echo(
        json.dumps(load_policy(manifest_for(dataset)).to_dict(), ensure_ascii=False, indent=2)
    )


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
@click.option(
    "--checkpoints",
    "checkpoints_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Signed checkpoints to compare with [default: <instance>/audit-checkpoints.jsonl].",
)
@click.option("--no-checkpoint", is_flag=True, help="Do not sign the verified head afterwards.")
def audit_verify(checkpoints_file: Path | None, no_checkpoint: bool) -> None:
    """Check the whole chain and the signed checkpoints; name the first broken entry.

    An intact chain's head is then signed into the instance's checkpoint file.
    Exits 1 when anything is wrong.
    """
    from sandbox.integrity import checkpoints

    report = checkpoints.verify_chain(
        _sandbox(), checkpoints_file=checkpoints_file, checkpoint_after=not no_checkpoint
    )
    click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    sys.exit(0 if report.ok else 1)


@audit.command("checkpoint")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the signed checkpoint to this file (keep a copy off this machine).",
)
def audit_checkpoint(out: Path | None) -> None:
    """Sign the chain's head {seq, head, at} with the release key and append it to
    <instance>/audit-checkpoints.jsonl; print it."""
    from sandbox.integrity import checkpoints

    signed = checkpoints.write_checkpoint(_sandbox(), out=out)
    click.echo(json.dumps(signed, ensure_ascii=False))


@main.group()
def access() -> None:
    """Access requests: list them, approve or deny them as a data owner."""


@access.command("list")
@click.option("--as", "username", default="owner", show_default=True, help="Who is asking.")
@click.option("--status", type=click.Choice(["pending", "approved", "denied"]))
def access_list(username: str, status: str | None) -> None:
    """Print the access requests USERNAME may see, one JSON object a line."""
    from sandbox.access import requests, users
    from sandbox.access import requests as access_service
    from sandbox.errors import SandboxError

    with _sandbox().tx() as session:
        try:
            user = users.user_named(session, username)
            found = access_service.list_requests(session, user=user, status=status)
        except SandboxError as error:
            raise click.ClickException(error.message) from error
        for request in found:
            click.echo(
                json.dumps(requests.access_request_view(session, request), ensure_ascii=False)
            )


@access.command("approve")
@click.argument("request_id")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
@click.option("--comment", default="", help="What the analyst reads.")
@click.option("--column", "columns", multiple=True, help="Open only these columns (repeat).")
@click.option("--mode", "modes", multiple=True, type=click.Choice(["dp", "masked"]))
@click.option("--epsilon", type=float, help="At most the requested epsilon.")
@click.option("--days", type=int, help="At most the requested days.")
def access_approve(
    request_id: str,
    username: str,
    comment: str,
    columns: tuple[str, ...],
    modes: tuple[str, ...],
    epsilon: float | None,
    days: int | None,
) -> None:
    """Approve REQUEST_ID, narrowed by any option given."""
    from sandbox.access import requests as access_service
    from sandbox.access import users
    from sandbox.errors import SandboxError

    with _sandbox().tx() as session:
        try:
            grant = access_service.approve_request(
                session,
                by=users.user_named(session, username),
                request_id=request_id,
                comment=comment,
                columns=list(columns) or None,
                modes=list(modes) or None,
                epsilon=epsilon,
                days=days,
            )
        except SandboxError as error:
            raise click.ClickException(error.message) from error
        click.echo(f"approved {request_id}: grant {grant.id}")


@access.command("deny")
@click.argument("request_id")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
@click.option("--comment", required=True, help="Why: the analyst reads it.")
def access_deny(request_id: str, username: str, comment: str) -> None:
    """Deny REQUEST_ID with a comment."""
    from sandbox.access import requests as access_service
    from sandbox.access import users
    from sandbox.errors import SandboxError

    with _sandbox().tx() as session:
        try:
            access_service.deny_request(
                session,
                by=users.user_named(session, username),
                request_id=request_id,
                comment=comment,
            )
        except SandboxError as error:
            raise click.ClickException(error.message) from error
    click.echo(f"denied {request_id}")


@main.command("verify-release")
@click.argument("certificate_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "outputs",
    multiple=True,
    metavar="[NAME=]FILE",
    help="A downloaded output to check (repeat): the JSON result or one table's CSV; "
    "NAME says which output a CSV file is when the file name does not.",
)
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The published keyring (sandbox keys export-public, GET /api/v1/release-keys) "
    "[default: this instance's].",
)
@click.option(
    "--code",
    "code_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check that this file is the code the job ran.",
)
def verify_release(
    certificate_file: Path, outputs: tuple[str, ...], keys_file: Path | None, code_file: Path | None
) -> None:
    """Verify a release certificate and its outputs offline; exit 1 on any failure.

    CERTIFICATE_FILE is the certificate or the whole JSON result that holds it.
    No database is needed, nor an instance when --keys is given.
    """
    from sandbox.integrity.signing import (
        KeyringInvalid,
        PublicKeyring,
        SignatureInvalid,
        certificate_from,
        verify_release,
    )

    try:
        certificate = certificate_from(json.loads(certificate_file.read_text(encoding="utf-8")))
        keyring = PublicKeyring.load(keys_file or _instance_keyring())
    except (ValueError, SignatureInvalid, KeyringInvalid) as error:
        raise click.ClickException(str(error)) from error
    files = [_output_file(spec) for spec in outputs]
    code = code_file.read_bytes() if code_file is not None else None
    report = verify_release(certificate, keyring, files, code=code)
    for check in report.checks:
        click.echo(f"{'ok' if check.ok else 'FAIL':<4}  {check.name}: {check.message}")
    if report.ok:
        click.echo("release certificate verified")
        return
    click.echo(f"NOT VERIFIED: {len(report.failures)} check(s) failed", err=True)
    sys.exit(1)


def _instance_keyring() -> Path:
    from sandbox.config import Settings
    from sandbox.integrity.keys import RELEASE_KEYRING

    path = Settings.from_env().instance / RELEASE_KEYRING
    if not path.exists():
        raise click.ClickException(f"there is no keyring at {path}; give the published one: --keys")
    return path


def _output_file(spec: str) -> OutputFile:
    name, path = None, Path(spec)
    if "=" in spec and not path.exists():
        name, _, rest = spec.partition("=")
        path = Path(rest)
    if not path.is_file():
        raise click.BadParameter(f"{path} is not a file", param_hint="--output")
    return OutputFile(label=path.name, data=path.read_bytes(), name=name)


@main.group()
def keys() -> None:
    """Master keys (data at rest) and release signing keys: status, rotation, export."""


@keys.command("status")
def keys_status() -> None:
    """Print where the master keys come from, their ids and states, and the signing keys."""
    from sandbox.integrity import keys as key_service

    sandbox = _sandbox()
    if os.environ.get(key_service.MASTER_KEY_ENV):
        ring = sandbox.store.keyring()
        click.echo(f"master keys: from {key_service.MASTER_KEY_ENV}")
        click.echo(f"  current   {ring.current_id}")
        for old in ring.accepted:
            click.echo(f"  accepted  {key_service.master_key_id(old)}")
    else:
        keyfile = key_service.master_key_file(sandbox.settings)
        keyfile.load()
        click.echo(f"master keys: {keyfile.path}")
        for found in keyfile.entries():
            retired = f"  retired {found['retired_at']}" if found["retired_at"] else ""
            click.echo(f"  {found['state']:<9} {found['id']}  {found['created_at']}{retired}")
    for name in sandbox.store.names():
        click.echo(f"  dataset {name}: wrapped under {sandbox.store.wrapping_key_id(name)}")
    keyring = sandbox.signing_keys.public_keyring()
    click.echo(f"release signing keys: {sandbox.signing_keys.keyring_path}")
    for entry in keyring.keys.values():
        state = "current" if entry.key_id == keyring.current else f"retired {entry.retired_at}"
        click.echo(f"  {entry.key_id}  created {entry.created_at}  {state}")


@keys.command("rotate")
@click.option(
    "--keep-old",
    is_flag=True,
    help="Re-wrap, but keep the old master key accepted (retire it later with keys retire).",
)
def keys_rotate(keep_old: bool) -> None:
    """New master key: re-wrap every dataset's data key under it, then retire the old one.

    Datasets stay readable throughout; data files are not re-encrypted. With
    SANDBOX_MASTER_KEY set, the new key is that variable and the old ones are in
    SANDBOX_MASTER_KEY_OLD.
    """
    from sandbox.errors import SandboxError
    from sandbox.integrity import keys as key_service

    try:
        rotation = key_service.rotate_master_key(_sandbox(), by="cli", retire=not keep_old)
    except SandboxError as error:
        raise click.ClickException(error.message) from error
    click.echo(f"current master key: {rotation.current}")
    click.echo(f"re-wrapped {len(rotation.datasets)} dataset(s): {', '.join(rotation.datasets)}")
    if rotation.retired:
        click.echo(f"retired: {', '.join(rotation.retired)}")
    elif rotation.old:
        click.echo(f"still accepted: {', '.join(rotation.old)}")
    if rotation.note:
        click.echo(rotation.note)


@keys.command("retire")
def keys_retire() -> None:
    """Retire every master key but the current one (refused while a dataset needs one)."""
    from sandbox.errors import SandboxError
    from sandbox.integrity import keys as key_service

    try:
        retired = key_service.retire_master_keys(_sandbox(), by="cli")
    except SandboxError as error:
        raise click.ClickException(error.message) from error
    click.echo(f"retired: {', '.join(retired) or 'none'}")


@keys.command("rotate-signing")
def keys_rotate_signing() -> None:
    """Make a new release signing key current; the old public key stays published."""
    from sandbox.integrity import keys as key_service

    old, new = key_service.rotate_signing_key(_sandbox(), by="cli")
    click.echo(f"release signing key: {new} (retired {old}; its public key stays published)")


@keys.command("export-public")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the keyring to this file instead of standard output.",
)
def keys_export_public(out: Path | None) -> None:
    """Print the public keyring that verifies every release certificate of this instance."""
    text = json.dumps(_sandbox().signing_keys.public_keyring().to_dict(), indent=2)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def serve(host: str, port: int) -> None:
    """Serve the portal (web pages and JSON API)."""
    from werkzeug.serving import run_simple

    from portal import create_app

    run_simple(host, port, create_app(), threaded=True, use_reloader=False)


@main.command()
@click.option("--concurrency", default=2, show_default=True)
def worker(concurrency: int) -> None:
    """Run a Celery worker for jobs."""
    os.execvp(sys.executable, _worker_command(concurrency))


def _worker_command(concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "sandbox.worker.process",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        "-Q",
        "sandbox-jobs",
        "--without-gossip",
        "--without-mingle",
    ]


@main.command()
@click.option("--patients", default=20_000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Set up and exit (for scripts and tests).")
def demo(patients: int, host: str, port: int, no_serve: bool) -> None:
    """Set everything up on embedded defaults and run the whole product."""
    from sandbox.db import upgrade_database
    from sandbox.demo import ensure_demo_grants, ensure_demo_users, store_dataset

    sandbox = _sandbox()
    upgrade_database(sandbox.settings)
    credentials = ensure_demo_users(sandbox)
    if not sandbox.store.exists("health"):
        click.echo(f"generating the synthetic health dataset ({patients} patients) ...")
        store_dataset(sandbox, patients=patients, seed=20221, owner="owner")
    ensure_demo_grants(sandbox)
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
    worker_process = subprocess.Popen(_worker_command(2), env=env)
    # Stopped by a signal or by Ctrl-C, the demo takes its worker with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo(f"worker started (pid {worker_process.pid}); portal on {base}/  (Ctrl-C stops both)")
    try:
        from werkzeug.serving import run_simple

        from portal import create_app

        run_simple(host, port, create_app(), threaded=True, use_reloader=False)
    finally:
        worker_process.send_signal(signal.SIGTERM)
        try:
            worker_process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker_process.kill()


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
