"""The ``sandbox`` command-line tool."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from policies.permissions import Actor
from sandbox.context import Sandbox, current, docker_ready
from sandbox.integrity.signing import OutputFile


def _sandbox() -> Sandbox:
    return current()


def _actor(username: str) -> Actor:
    """``--as USER``: who acts (the action decides what they may do)."""
    from sandbox.access import users as user_service

    with _errors_as_messages():
        return user_service.actor_named(_sandbox(), username=username)


@contextmanager
def _errors_as_messages() -> Iterator[None]:
    """A refused or bad command says why in one line, never with a stack trace."""
    from sandbox.errors import SandboxError

    try:
        yield
    except SandboxError as error:
        raise click.ClickException(error.message) from error


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
    from sandbox.jobs import reviews

    with _errors_as_messages():
        reviews.set_reviewers_required(_sandbox(), by=_actor(username), dataset=name, count=count)
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

    change = {"withdraw": consent_service.withdraw_consent, "give": consent_service.give_consent}[
        action
    ]
    with _errors_as_messages():
        change(
            _sandbox(), by=_actor(username), dataset=dataset, person_id=person_id, purpose=purpose
        )


@main.group()
def users() -> None:
    """Users and tokens."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["owner", "analyst", "auditor", "admin"]), required=True)
@click.password_option()
def users_create(username: str, role: str, password: str) -> None:
    """Create a user."""
    from policies.permissions import Role
    from sandbox.access import users as user_service

    with _errors_as_messages():
        user_service.add_user(
            _sandbox(), by="cli", username=username, password=password, role=Role(role)
        )
    click.echo(f"created {role} {username}")


@users.command("token")
@click.argument("username")
def users_token(username: str) -> None:
    """Print a fresh API token for USERNAME."""
    from sandbox.access import users as user_service

    with _errors_as_messages():
        click.echo(user_service.token_for(_sandbox(), username=username))


@main.group()
def runner() -> None:
    """The isolated job runner."""


@runner.command("build-image")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
def runner_build_image(force: bool) -> None:
    """Build the runner image locally (no registry needed)."""
    from runners.image import ImageBuildFailed, build_image

    try:
        tag = build_image(force=force, echo=click.echo)
    except (ImageBuildFailed, RuntimeError) as error:
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
    from sandbox.jobs import submit
    from sandbox.jobs.planning import JobRequest

    language = language or ("python" if code_file.name.endswith(".py") else "sql")
    request = JobRequest(
        dataset=dataset, language=language, mode=mode, code=code_file.read(), epsilon=epsilon
    )
    with _errors_as_messages():
        report = submit.check_job(_sandbox(), by=_actor(analyst), request=request)
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
    from sandbox.catalog import manifest_of

    click.echo(
        json.dumps(load_policy(manifest_of(dataset)).to_dict(), ensure_ascii=False, indent=2)
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
    from sandbox.access import requests

    with _errors_as_messages():
        found = requests.list_requests(_sandbox(), by=_actor(username), status=status)
    for request in found:
        click.echo(json.dumps(request, ensure_ascii=False))


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
    from sandbox.access import requests

    approval = requests.Approval(
        comment=comment,
        columns=list(columns) or None,
        modes=list(modes) or None,
        epsilon=epsilon,
        days=days,
    )
    with _errors_as_messages():
        approved = requests.approve_request(
            _sandbox(), by=_actor(username), request_id=request_id, approval=approval
        )
    click.echo(f"approved {request_id}: grant {approved['grant']['id']}")


@access.command("deny")
@click.argument("request_id")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
@click.option("--comment", required=True, help="Why: the analyst reads it.")
def access_deny(request_id: str, username: str, comment: str) -> None:
    """Deny REQUEST_ID with a comment."""
    from sandbox.access import requests

    with _errors_as_messages():
        requests.deny_request(
            _sandbox(), by=_actor(username), request_id=request_id, comment=comment
        )
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
    from sandbox.integrity.rotation import rotate_master_key

    try:
        rotation = rotate_master_key(_sandbox(), by="cli", retire=not keep_old)
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
    from sandbox.integrity.rotation import retire_master_keys

    try:
        retired = retire_master_keys(_sandbox(), by="cli")
    except SandboxError as error:
        raise click.ClickException(error.message) from error
    click.echo(f"retired: {', '.join(retired) or 'none'}")


@keys.command("rotate-signing")
def keys_rotate_signing() -> None:
    """Make a new release signing key current; the old public key stays published."""
    from sandbox.integrity.rotation import rotate_signing_key

    old, new = rotate_signing_key(_sandbox(), by="cli")
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
@click.option("--concurrency", default=2, show_default=True)
def worker(concurrency: int) -> None:
    """Run a Celery worker for jobs."""
    os.execvp(sys.executable, worker_command(concurrency))


def worker_command(concurrency: int) -> list[str]:
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


if __name__ == "__main__":
    main()
