"""The ``sandbox`` command-line tool."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import click

from policies.permissions import Actor
from sandbox.client_cli import jobs
from sandbox.context import Sandbox, current, describe_runner
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


@datasets.command("import")
@click.argument("sources", nargs=-1, required=True)
@click.option("--dataset", "name", required=True, help="The dataset's name (new, or yours).")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
@click.option(
    "--mode",
    type=click.Choice(["new", "append", "replace"]),
    default="new",
    show_default=True,
    help="A new dataset, or the next version of one of yours.",
)
@click.option("--encoding", help="The files' encoding (gbk, gb18030, utf-8); default: detect.")
@click.option("--delimiter", help="The CSV delimiter; default: detect.")
@click.option("--table", help="The staged table's name (one file or database table).")
@click.option("--query", help="A read-only SELECT to stage from the database URL.")
@click.option("--ask-password", is_flag=True, help="Prompt for the database password.")
@click.option(
    "--definition",
    "definition_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your definition (YAML): confirm every column with it.",
)
@click.option("--publish", is_flag=True, help="Publish once confirmed.")
@click.option(
    "--draft",
    "draft_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the proposed definition (default: <dataset>.definition.yaml).",
)
def datasets_import(  # noqa: PLR0913 - click hands every option over as an argument
    sources: tuple[str, ...],
    name: str,
    username: str,
    mode: str,
    encoding: str | None,
    delimiter: str | None,
    table: str | None,
    query: str | None,
    ask_password: bool,
    definition_file: Path | None,
    publish: bool,
    draft_file: Path | None,
) -> None:
    """Stage SOURCES (CSV, XLSX, Parquet files, or a postgresql:// / mysql:// URL), profile
    them and propose a class for every column; with --definition confirm, with --publish
    publish as the dataset's next version."""
    from sandbox.owners import imports

    sandbox, by = _sandbox(), _actor(username)
    options = imports.ReadingOptions(encoding=encoding, delimiter=delimiter)
    with _errors_as_messages():
        started = imports.start_import(sandbox, by=by, dataset=name, mode=mode)
        import_id = started["id"]
        for source in sources:
            if "://" in source:
                url = _with_password(source) if ask_password else source
                staged = imports.stage_connection(
                    sandbox,
                    by=by,
                    import_id=import_id,
                    url=url,
                    name=table or name,
                    table=None if query else table,
                    query=query,
                )
            else:
                path = Path(source)
                staged = imports.stage_upload(
                    sandbox,
                    by=by,
                    import_id=import_id,
                    source=path,
                    filename=path.name,
                    table=table,
                    options=options,
                )
        for entry in staged["tables"]:
            click.echo(
                f"staged {entry['name']}: {entry['rows']} rows, {len(entry['columns'])} columns"
            )
        profiled = imports.profile_import(sandbox, by=by, import_id=import_id)
        _echo_proposals(profiled["profile"])
        if definition_file is None:
            target = draft_file or Path(f"{name}.definition.yaml")
            _write_private(target, yaml_dump(profiled["draft"]))
            click.echo(
                f"import {import_id}: the proposed definition is in {target} (data-derived "
                "bounds and categories: yours alone). Correct it, then run "
                f"`sandbox datasets confirm {import_id} {target} --publish`."
            )
            return
        _confirm(import_id, definition_file, by=by, publish=publish)


@datasets.command("confirm")
@click.argument("import_id")
@click.argument("definition_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
@click.option("--publish", is_flag=True, help="Publish once confirmed.")
def datasets_confirm(import_id: str, definition_file: Path, username: str, publish: bool) -> None:
    """Confirm every column of IMPORT_ID with DEFINITION_FILE (YAML); --publish publishes."""
    with _errors_as_messages():
        _confirm(import_id, definition_file, by=_actor(username), publish=publish)


def _confirm(import_id: str, definition_file: Path, *, by: Actor, publish: bool) -> None:
    from sandbox.owners import imports

    sandbox = _sandbox()
    text = definition_file.read_text(encoding="utf-8")
    imports.confirm_import(sandbox, by=by, import_id=import_id, definition=text)
    click.echo(f"import {import_id}: every column confirmed")
    if publish:
        done = imports.publish_import(sandbox, by=by, import_id=import_id)
        click.echo(
            f"{done['dataset']}: version {done['number']} published ({done['version'][:12]})"
        )


@datasets.command("publish")
@click.argument("import_id")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
def datasets_publish(import_id: str, username: str) -> None:
    """Publish a confirmed import as its dataset's next version."""
    from sandbox.owners import imports

    with _errors_as_messages():
        done = imports.publish_import(_sandbox(), by=_actor(username), import_id=import_id)
    click.echo(f"{done['dataset']}: version {done['number']} published ({done['version'][:12]})")


@datasets.command("versions")
@click.argument("name")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
def datasets_versions(name: str, username: str) -> None:
    """NAME's published versions."""
    from sandbox.owners import datasets as owned

    with _errors_as_messages():
        view = owned.dataset_versions(_sandbox(), by=_actor(username), dataset=name)
    click.echo(f"{name}: {view['status']}, current version {view['current']}")
    for version in view["versions"]:
        rows = ", ".join(f"{t} {n}" for t, n in version["rows"].items())
        click.echo(
            f"  v{version['number']}  {version['published_at']}  {version['mode']:<7}  "
            f"{version['version'][:12]}  {rows}"
        )


@datasets.command("export")
@click.argument("name")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
def datasets_export(name: str, username: str) -> None:
    """Print NAME's definition (manifest and policy) as YAML."""
    from sandbox.owners import datasets as owned

    with _errors_as_messages():
        click.echo(owned.export_definition(_sandbox(), by=_actor(username), dataset=name), nl=False)


@datasets.command("retire")
@click.argument("name")
@click.option("--confirm", required=True, help="The dataset's name again: this cannot be undone.")
@click.option("--as", "username", default="owner", show_default=True, help="The data owner.")
def datasets_retire(name: str, confirm: str, username: str) -> None:
    """Retire NAME: its data key is destroyed, its grants end."""
    from sandbox.owners import datasets as owned

    with _errors_as_messages():
        owned.retire_dataset(_sandbox(), by=_actor(username), dataset=name, confirm=confirm)
    click.echo(f"{name}: retired; its data key is destroyed")


def _with_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    password = click.prompt("database password", hide_input=True)
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def _echo_proposals(profile: dict[str, object]) -> None:
    for table, entry in profile.items():
        click.echo(f"{table}:")
        for proposal in entry["proposals"]:  # type: ignore[index]
            evidence = "; ".join(e.get("text", "") for e in proposal.get("evidence") or [])
            click.echo(f"  {proposal['column']:<24} {proposal['class']:<18} {evidence}")


def yaml_dump(data: object) -> str:
    import yaml

    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")


@datasets.command("reviewers")
@click.argument("name")
@click.argument("count", type=click.IntRange(1, 2), required=False)
@click.option(
    "--unverified",
    type=click.IntRange(1, 2),
    help="Auditors for an output the sandbox could not verify (2 unless lowered).",
)
@click.option("--as", "username", default="owner", show_default=True, help="The dataset's owner.")
def datasets_reviewers(name: str, count: int | None, unverified: int | None, username: str) -> None:
    """Require COUNT (1 or 2) distinct auditors to approve NAME's held outputs, and
    --unverified N for those the sandbox could not compute again itself."""
    from sandbox.jobs import reviews

    settings = {
        key: value
        for key, value in (
            ("reviewers_required", count),
            ("unverified_reviewers_required", unverified),
        )
        if value is not None
    }
    if not settings:
        raise click.UsageError("Give COUNT, --unverified N, or both.")
    with _errors_as_messages():
        done = reviews.set_review_quorum(
            _sandbox(), by=_actor(username), dataset=name, settings=settings
        )
    click.echo(
        f"{name}: {done['reviewers_required']} auditor(s) must approve each held output, "
        f"{done['unverified_reviewers_required']} each one the sandbox could not verify"
    )


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


@consent.command("import")
@click.argument("dataset")
@click.argument("registry", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", default="owner", show_default=True, help="The dataset's owner.")
def consent_import(dataset: str, registry: Path, username: str) -> None:
    """Merge a consent registry file (person_id, purpose, given_at[, withdrawn_at])."""
    from sandbox.owners.consent_registry import import_consent

    with _errors_as_messages():
        counts = import_consent(
            _sandbox(),
            by=_actor(username),
            dataset=dataset,
            source=registry,
            filename=registry.name,
        )
    click.echo(
        f"{dataset}: {counts['rows']} rows; {counts['given']} consents given, "
        f"{counts['withdrawn']} withdrawn, {counts['withdrawals_kept']} later withdrawals kept"
    )


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
@click.option(
    "--role",
    type=click.Choice(["owner", "analyst", "auditor", "organizer", "admin"]),
    required=True,
)
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


@users.command("tokens")
@click.argument("username")
def users_tokens(username: str) -> None:
    """List USERNAME's API tokens (never the tokens themselves); * lists everyone's."""
    from sandbox.access import users as user_service

    with _errors_as_messages():
        found = user_service.list_tokens(_sandbox(), by=user_service.OPERATOR, user=username)
    for t in found:
        state = f"revoked {t['revoked_at']}" if t["revoked_at"] else f"expires {t['expires_at']}"
        used = t["last_used_at"] or "never used"
        click.echo(f"{t['id']}\t{t['user']}\t{t['label'] or '-'}\t{state}\t{used}")


@users.command("revoke-token")
@click.argument("token_id", type=int)
def users_revoke_token(token_id: int) -> None:
    """Revoke the API token TOKEN_ID: it authenticates nothing from now on."""
    from sandbox.access import users as user_service

    with _errors_as_messages():
        revoked = user_service.revoke_token(_sandbox(), by=user_service.OPERATOR, token_id=token_id)
    click.echo(f"revoked token {revoked['id']} at {revoked['revoked_at']}")


@users.command("unlock")
@click.argument("username")
def users_unlock(username: str) -> None:
    """End USERNAME's lock after too many failed logins."""
    from sandbox.access import users as user_service

    with _errors_as_messages():
        was_locked = user_service.unlock_account(
            _sandbox(), by=user_service.OPERATOR, username=username
        )
    click.echo(f"unlocked {username}" if was_locked else f"{username} was not locked")


@users.command("password")
@click.argument("username")
@click.password_option(help="The new password (at least 12 characters, two kinds).")
def users_password(username: str, password: str) -> None:
    """Set USERNAME's password (the password rule applies)."""
    from sandbox.access import users as user_service

    with _errors_as_messages():
        user_service.change_password(
            _sandbox(), by=user_service.OPERATOR, username=username, password=password
        )
    click.echo(f"password of {username} changed")


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
    """Say which runner, runtime and image jobs would use."""
    ready, lines = describe_runner(_sandbox())
    for line in lines:
        click.echo(line)
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
    from sandbox.catalog import published

    with _sandbox().tx() as session:
        policy = published(session, dataset).policy
    click.echo(json.dumps(policy.to_dict(), ensure_ascii=False, indent=2))


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


@main.group()
def contest() -> None:
    """Contests: tracks, submissions, leaderboards, the final board."""


def _submission_queue(final: bool = False) -> Callable[[str], None]:
    from sandbox.worker.celery_app import make_celery
    from sandbox.worker.tasks import make_submission_enqueue

    return make_submission_enqueue(make_celery(_sandbox().settings), final=final)


@contest.command("list")
def contest_list() -> None:
    """Every contest, its phase and its tracks."""
    from sandbox.contest import contests

    for found in contests.list_contests(_sandbox()):
        click.echo(f"{found['slug']}  [{found['phase']}]  {found['title']}")
        for track in found["tracks"]:
            quotas = track["quotas"]
            click.echo(
                f"  {track['slug']:<24} {track['task']:<11} {track['metric']:<18} "
                f"{quotas['daily']}/day, {quotas['total']} in all, {quotas['running']} at once"
            )


@contest.command("board")
@click.argument("contest_slug")
@click.argument("track")
def contest_board(contest_slug: str, track: str) -> None:
    """A track's public leaderboard (and its final board once published)."""
    from sandbox.contest import boards

    with _errors_as_messages():
        board = boards.leaderboard(_sandbox(), contest=contest_slug, track=track)
    click.echo(f"{board['track']} ({board['metric']}, {board['rule']})")
    for line in board["public"]:
        click.echo(
            f"  {line['place']:>3}. {line['team']:<32} {line['score']:<10} "
            f"[{line['low']}, {line['high']}]"
        )
    if board["final"] is not None:
        click.echo("final board (private part, signed):")
        for line in board["final"]["lines"]:
            click.echo(f"  {line['place']:>3}. {line['team']:<32} {line['score']}")


@contest.command("submit")
@click.argument("contest_slug")
@click.argument("track")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--as", "username", required=True, help="A member of a team in the contest.")
def contest_submit(contest_slug: str, track: str, file: TextIO, username: str) -> None:
    """Submit FILE (Python with fit(train) and predict(model, features)) to a track."""
    from sandbox.contest import submissions

    with _errors_as_messages():
        queued = submissions.submit(
            _sandbox(),
            by=_actor(username),
            contest=contest_slug,
            track=track,
            code=file.read(),
            enqueue=_submission_queue(),
        )
    click.echo(f"submission {queued['id']} {queued['status']}")


@contest.command("phase")
@click.argument("contest_slug")
@click.argument("phase")
@click.option("--as", "username", default="organizer", show_default=True)
def contest_phase(contest_slug: str, phase: str, username: str) -> None:
    """Move a contest to its next phase (open submits the tracks' baselines)."""
    from sandbox.contest import contests

    with _errors_as_messages():
        moved = contests.set_phase(
            _sandbox(),
            by=_actor(username),
            contest=contest_slug,
            phase=phase,
            enqueue=_submission_queue(),
        )
    click.echo(f"{moved['slug']}: {moved['phase']}")


@contest.command("final-scoring")
@click.argument("contest_slug")
@click.option("--as", "username", default="organizer", show_default=True)
def contest_final_scoring(contest_slug: str, username: str) -> None:
    """Score each team's picks once on the private part (final phase)."""
    from sandbox.contest import boards

    with _errors_as_messages():
        started = boards.start_final_scoring(
            _sandbox(), by=_actor(username), contest=contest_slug, enqueue=_submission_queue(True)
        )
    click.echo(f"{started['queued']} submissions queued for the private part")


@contest.command("publish")
@click.argument("contest_slug")
@click.option("--as", "username", default="organizer", show_default=True)
def contest_publish(contest_slug: str, username: str) -> None:
    """Sign and publish the final boards, and close the contest."""
    from sandbox.contest import boards

    with _errors_as_messages():
        done = boards.publish_final(_sandbox(), by=_actor(username), contest=contest_slug)
    for track in done["tracks"]:
        click.echo(f"{track['track']}: {len(track['lines'])} teams ranked")
    click.echo(f"{done['contest']}: {done['phase']}")


@main.command()
@click.option("--concurrency", default=2, show_default=True)
@click.option(
    "--queues",
    default="sandbox-jobs",
    show_default=True,
    help="Comma-separated: sandbox-jobs (researchers' jobs), sandbox-contest (submissions).",
)
def worker(concurrency: int, queues: str) -> None:
    """Run a Celery worker for jobs, contest submissions, or both."""
    from sandbox.worker.tasks import QUEUES

    names = tuple(q.strip() for q in queues.split(",") if q.strip())
    unknown = [q for q in names if q not in QUEUES]
    if not names or unknown:
        raise click.BadParameter(f"queues are {', '.join(QUEUES)}", param_hint="--queues")
    os.execvp(sys.executable, worker_command(concurrency, queues=names))


def worker_command(concurrency: int, *, queues: tuple[str, ...] = ("sandbox-jobs",)) -> list[str]:
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
        ",".join(queues),
        "--without-gossip",
        "--without-mingle",
    ]


# The analyst's commands over the API (sandbox/client_cli.py): no instance needed.
main.add_command(jobs)


if __name__ == "__main__":
    main()
