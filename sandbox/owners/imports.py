"""An owner's import, from source to published version: stage → profile → confirm → publish.

1. :func:`start_import` opens an import for a new dataset or the next version of one of
   the owner's own; its tables are staged encrypted under a key of its own
   (``<instance>/staging/<id>``), visible to its owner alone;
2. :func:`stage_upload` and :func:`stage_connection` stage files (CSV, XLSX, Parquet)
   and tables or queries of the owner's PostgreSQL or MySQL database (the password is
   used once and never stored);
3. :func:`profile_import` profiles every staged table and proposes a class and a rule
   for every column, from its values as well as its name, with the evidence;
4. :func:`confirm_import` takes the owner's definition (``datasets.definition``, each
   column naming the staged column it comes from): every staged column is either
   confirmed or left out on purpose, else nothing is confirmed;
5. :func:`publish_import` conforms the staged rows to the definition and publishes them
   as version N+1 (``sandbox.owners.publishing``), then destroys the staging.

Nothing staged enters any view before it is published. Each step is audited with
counts and names, never values.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from datasets.definition import DATASET_NAME, NAME, parse_definition, sources_of
from datasets.errors import DatasetError, SourceError
from datasets.importers import DatabaseOptions, FileOptions, StagedTable, stage_database, stage_file
from datasets.manifest import Manifest
from datasets.staging import Staging
from policies.permissions import Person, user_may_bring_datasets, user_may_handle_import
from policies.policy_file import PolicyFileError, parse_policy
from sandbox.actions import transaction
from sandbox.catalog import RETIRED, check_governs
from sandbox.context import Sandbox
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.integrity import audit
from sandbox.models import DatasetRecord, Import, ImportStatus, iso, utcnow
from sandbox.owners.publishing import Mode, definition_error, publish_tables

MAX_STAGED_TABLES = 50


def start_import(
    sandbox: Sandbox, *, by: Person, dataset: str, mode: str = "new"
) -> dict[str, Any]:
    """Open an import into ``dataset`` (new, or appended to / replacing one's own)."""
    with transaction(sandbox, by=by, action="import.start", subject=str(dataset)) as session:
        if not user_may_bring_datasets(by):
            raise Forbidden("Only data owners import datasets.", rule="permission.owner")
        name = _dataset_name(dataset)
        wanted = _mode(mode)
        record_status = session.scalar(
            select(DatasetRecord.status).where(DatasetRecord.name == name)
        )
        exists = record_status is not None
        if record_status == RETIRED:
            raise Conflict(
                f"{name} was retired: its data key is destroyed for good. Import the data as "
                "a new dataset under another name.",
                rule="import.retired",
            )
        if wanted is Mode.NEW and exists:
            raise Conflict(
                f"A dataset named {name} exists already: import a new version of it "
                "(append or replace), or choose another name.",
                rule="import.exists",
            )
        if wanted is not Mode.NEW:
            if not exists:
                raise NotFound(f"There is no dataset {name}.")
            check_governs(session, by=by, dataset=name)
        key = secrets.token_bytes(32)
        record = Import(owner_id=by.id, dataset=name, mode=wanted.value, staging_key={})
        session.add(record)
        session.flush()
        record.staging_key = sandbox.store.seal_key(_label(record.id), key)
        audit.append(
            session,
            actor=by.username,
            action="import.started",
            subject=record.id,
            details={"dataset": name, "mode": wanted.value},
        )
        return import_view(record)


@dataclass(frozen=True)
class ReadingOptions:
    """How the owner says to read a file; None: detect it."""

    encoding: str | None = None  # gbk, gb18030, utf-8
    delimiter: str | None = None  # one character
    header: bool = True  # False: the first row is data, columns named col_1, col_2, …


def stage_upload(
    sandbox: Sandbox,
    *,
    by: Person,
    import_id: str,
    source: Path | BinaryIO,
    filename: str,
    table: str | None = None,
    options: ReadingOptions | None = None,
) -> dict[str, Any]:
    """Stage one file (a CSV or Parquet table, each sheet of a workbook a table), cut off
    at the instance's import size cap while it streams."""
    asked = options or ReadingOptions()
    reading = FileOptions(
        encoding=asked.encoding,
        delimiter=asked.delimiter,
        header=asked.header,
        max_bytes=sandbox.settings.max_import_bytes,
    )
    staging = _opened(sandbox, by=by, import_id=import_id, action="import.stage")
    staged = _staged(
        lambda: stage_file(source, filename=filename, staging=staging, table=table, options=reading)
    )
    with transaction(sandbox, by=by, action="import.stage", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        return _record_staged(session, by=by, record=record, staged=staged)


def stage_connection(
    sandbox: Sandbox,
    *,
    by: Person,
    import_id: str,
    url: str,
    name: str,
    table: str | None = None,
    query: str | None = None,
) -> dict[str, Any]:
    """Stage a table or a read-only query of the owner's database. The URL's password is
    used for this connection only: it is stored nowhere and shown to no one."""
    staging = _opened(sandbox, by=by, import_id=import_id, action="import.stage")
    staged = _staged(
        lambda: [
            stage_database(
                url, staging=staging, name=name, table=table, query=query, options=DatabaseOptions()
            )
        ]
    )
    with transaction(sandbox, by=by, action="import.stage", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        return _record_staged(session, by=by, record=record, staged=staged)


def _opened(sandbox: Sandbox, *, by: Person, import_id: str, action: str) -> Staging:
    """The import's staging, once its owner is known; the slow work that follows (reading
    a source, profiling) runs outside any transaction, so no one else waits for it."""
    with transaction(sandbox, by=by, action=action, subject=import_id) as session:
        return _staging(sandbox, _open_import(session, by=by, import_id=import_id, editable=True))


def _staged(stage: Callable[[], list[StagedTable]]) -> list[StagedTable]:
    try:
        tables = stage()
    except SourceError as error:
        raise refused_source(error) from error
    except DatasetError as error:
        raise InvalidRequest(str(error), rule="import.staging") from error
    return tables


def refused_source(error: SourceError) -> InvalidRequest:
    """A source the importers refused, as the actions report it: its rule, file, row and
    column kept beside the message."""
    details = {k: v for k, v in error.to_dict().items() if k != "message" and v is not None}
    return InvalidRequest(str(error), **details)


def _record_staged(
    session: Session, *, by: Person, record: Import, staged: list[StagedTable]
) -> dict[str, Any]:
    tables = [t for t in record.tables if t["name"] not in {s.name for s in staged}]
    tables += [dataclasses.asdict(t) for t in staged]
    if len(tables) > MAX_STAGED_TABLES:
        raise InvalidRequest(f"An import holds at most {MAX_STAGED_TABLES} tables.")
    record.tables = tables
    record.status, record.profile = ImportStatus.STAGING.value, None
    record.definition = record.policy_text = None
    record.updated_at = utcnow()
    audit.append(
        session,
        actor=by.username,
        action="import.staged",
        subject=record.id,
        details={
            "tables": {t.name: t.rows for t in staged},
            "format": [t.source.get("format") for t in staged],
        },
    )
    return import_view(record)


def profile_import(sandbox: Sandbox, *, by: Person, import_id: str) -> dict[str, Any]:
    """Profile every staged table and propose a class and rule for every column."""
    from datasets.profiling.profiler import profile_table
    from datasets.profiling.proposals import propose_columns

    with transaction(sandbox, by=by, action="import.profile", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        if not record.tables:
            raise InvalidRequest("Stage a file or a database table first.", rule="import.empty")
        staging = _staging(sandbox, record)
        names = [table["name"] for table in record.tables]
    profiles: dict[str, Any] = {}
    for name in names:
        profile = profile_table(staging.reader(name), schema=staging.schema(name))
        proposals = propose_columns(profile, table=name)
        profiles[name] = {
            "profile": _plain(profile),
            "proposals": [_plain(p) for p in proposals],
        }
    with transaction(sandbox, by=by, action="import.profile", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        if [table["name"] for table in record.tables] != names:
            raise Conflict("Tables were staged meanwhile: profile again.", rule="import.changed")
        record.profile = profiles
        record.status = ImportStatus.PROFILED.value
        record.updated_at = utcnow()
        audit.append(
            session,
            actor=by.username,
            action="import.profiled",
            subject=record.id,
            details={"tables": sorted(profiles)},
        )
        return {**import_view(record), "profile": profiles, "draft": draft_definition(record)}


def draft_definition(record: Import) -> dict[str, Any]:
    """A definition proposed from the profile, for the owner to correct and confirm.

    Bounds and categories in it are derived from the data: the owner alone sees them,
    and must confirm or replace them (they are marked in the proposals).
    """
    tables: dict[str, Any] = {}
    policy_columns: dict[str, Any] = {}
    person_key: str | None = None
    consent: dict[str, Any] | None = None
    for table in record.tables:
        staged = table["name"]
        proposals = (record.profile or {}).get(staged, {}).get("proposals", [])
        columns: dict[str, Any] = {}
        for number, proposal in enumerate(proposals, start=1):
            source = str(proposal["column"])
            name = _column_name(source, number, taken=set(columns))
            spec: dict[str, Any] = {
                "type": proposal.get("type", "string"),
                "class": proposal["class"],
                "description": source,
                "source": source,
            }
            if proposal.get("bounds"):
                spec["bounds"] = list(proposal["bounds"])
            if proposal.get("categories"):
                spec["categories"] = list(proposal["categories"])
            if proposal["class"] == "person_key":
                person_key = person_key or name
            columns[name] = spec
            rules = [r for r in proposal.get("rule") or [] if r]
            if rules and proposal["class"] not in ("direct_identifier", "consent"):
                rule: dict[str, Any] = {"rule": rules}
                if proposal.get("aggregates"):
                    rule["aggregates"] = list(proposal["aggregates"])
                policy_columns[f"{staged}.{name}"] = rule
        tables[staged] = {
            "description": staged,
            "max_rows_per_person": _rows_per_person(record, staged),
            "source": staged,
            "columns": columns,
        }
        for name, spec in columns.items():
            if spec["class"] == "consent" and consent is None:
                consent = {"column": f"{staged}.{name}", "purposes": ["research"]}
    draft: dict[str, Any] = {
        "dataset": record.dataset,
        "title": record.dataset,
        "privacy_unit": person_key or "",
    }
    if consent is not None:
        draft["consent"] = consent
    return {
        **draft,
        "tables": tables,
        "policy": {"k_threshold": 10, "columns": policy_columns},
    }


# Rows a person may contribute to a dp query of a table where persons repeat: a proposal,
# which the owner sets from what they know of the data (more rows are clamped).
REPEATED_ROWS_PER_PERSON = 10


def _rows_per_person(record: Import, table: str) -> int:
    """One row per person where the person key is unique in the table, else a bound."""
    profile = ((record.profile or {}).get(table) or {}).get("profile") or {}
    proposals = ((record.profile or {}).get(table) or {}).get("proposals") or []
    keys = [p["column"] for p in proposals if p.get("class") == "person_key"]
    for column in profile.get("columns") or []:
        if keys and column.get("name") == keys[0]:
            unique = column.get("distinct") == column.get("rows") and not column.get("nulls")
            return 1 if unique else REPEATED_ROWS_PER_PERSON
    return 1


def confirm_import(
    sandbox: Sandbox, *, by: Person, import_id: str, definition: str | dict[str, Any]
) -> dict[str, Any]:
    """The owner's definition of the dataset (YAML text or its mapping), checked against
    what was staged: every staged column confirmed or excluded, keys whole."""
    with transaction(sandbox, by=by, action="import.confirm", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        if record.status == ImportStatus.STAGING.value:
            raise InvalidRequest("Profile the import before confirming it.", rule="import.order")
        raw = _definition_mapping(definition)
        manifest, policy_text = _checked_definition(raw, record)
        _check_complete(raw, record)
        record.definition = raw
        record.policy_text = policy_text
        record.status = ImportStatus.CONFIRMED.value
        record.updated_at = utcnow()
        audit.append(
            session,
            actor=by.username,
            action="import.confirmed",
            subject=record.id,
            details={
                "dataset": manifest.name,
                "columns": {t.name: len(t.columns) for t in manifest.tables},
                "classes": _classes(manifest),
            },
        )
        return import_view(record)


def publish_import(sandbox: Sandbox, *, by: Person, import_id: str) -> dict[str, Any]:
    """Publish the confirmed import as the dataset's next version; the staging goes."""
    with transaction(sandbox, by=by, action="import.publish", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        if record.status != ImportStatus.CONFIRMED.value or record.definition is None:
            raise InvalidRequest(
                "Confirm every column of the import before publishing it.",
                rule="import.unconfirmed",
            )
        manifest, policy_text = _checked_definition(record.definition, record)
        _check_complete(record.definition, record)
        staging = _staging(sandbox, record)
        frames = {}
        for table, (staged, columns, _) in sources_of(record.definition).items():
            wanted = list(columns.values())
            frame = staging.read_table(staged).select(wanted).to_pandas()
            frames[table] = frame.rename(columns={v: k for k, v in columns.items()})
        version = publish_tables(
            sandbox,
            session,
            by=by,
            manifest=manifest,
            policy_text=policy_text,
            tables=frames,
            mode=Mode(record.mode),
        )
        record.status = ImportStatus.PUBLISHED.value
        record.published_number = version.number
        # The profile held values read from the data (ranges, common values): not kept.
        record.profile = None
        record.updated_at = utcnow()
        staging.destroy()
        return {**import_view(record), "version": version.version, "number": version.number}


def discard_import(sandbox: Sandbox, *, by: Person, import_id: str) -> dict[str, Any]:
    with transaction(sandbox, by=by, action="import.discard", subject=import_id) as session:
        record = _open_import(session, by=by, import_id=import_id, editable=True)
        _staging(sandbox, record).destroy()
        shutil.rmtree(_folder(sandbox, record.id), ignore_errors=True)
        record.status = ImportStatus.DISCARDED.value
        record.profile = None
        record.updated_at = utcnow()
        audit.append(session, actor=by.username, action="import.discarded", subject=record.id)
        return import_view(record)


def read_import(sandbox: Sandbox, *, by: Person, import_id: str) -> dict[str, Any]:
    """The import as its owner sees it: staged tables, profile, proposals and draft."""
    with sandbox.tx() as session:
        record = _open_import(session, by=by, import_id=import_id, editable=False)
        view = import_view(record)
        if record.profile is not None:
            view["profile"] = record.profile
            view["draft"] = record.definition or draft_definition(record)
        return view


def my_imports(sandbox: Sandbox, *, by: Person) -> list[dict[str, Any]]:
    with sandbox.tx() as session:
        rows = session.scalars(
            select(Import).where(Import.owner_id == by.id).order_by(Import.created_at.desc())
        )
        return [import_view(r) for r in rows]


def import_view(record: Import) -> dict[str, Any]:
    return {
        "id": record.id,
        "dataset": record.dataset,
        "mode": record.mode,
        "status": record.status,
        "tables": record.tables,
        "published_number": record.published_number,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
    }


# --- building blocks ------------------------------------------------------------------------


def _open_import(session: Session, *, by: Person, import_id: str, editable: bool) -> Import:
    record = session.get(Import, import_id) if isinstance(import_id, str) else None
    if record is None or not user_may_handle_import(by, owner_id=record.owner_id):
        raise NotFound(f"There is no import {import_id}.")  # another owner's stays unknown
    if editable and record.status in (ImportStatus.PUBLISHED.value, ImportStatus.DISCARDED.value):
        raise Conflict(f"The import is {record.status}; start a new one.", rule="import.closed")
    return record


def _label(import_id: str) -> str:
    return f"staging-{import_id}"


def _folder(sandbox: Sandbox, import_id: str) -> Path:
    return sandbox.settings.instance / "staging" / import_id


def _staging(sandbox: Sandbox, record: Import) -> Staging:
    key = sandbox.store.open_key(_label(record.id), record.staging_key)
    return Staging(_folder(sandbox, record.id), key)


def _dataset_name(dataset: object) -> str:
    if not isinstance(dataset, str) or not DATASET_NAME.match(dataset):
        raise InvalidRequest(
            "dataset must be a name of lower-case letters, digits, _ and -, starting "
            "with a letter.",
            field="dataset",
        )
    return dataset


def _mode(mode: object) -> Mode:
    try:
        return Mode(str(mode))
    except ValueError:
        raise InvalidRequest(
            f"mode must be one of {', '.join(m.value for m in Mode)}.", field="mode"
        ) from None


def _definition_mapping(definition: object) -> dict[str, Any]:
    if isinstance(definition, str):
        try:
            definition = yaml.safe_load(definition)
        except yaml.YAMLError as error:
            raise InvalidRequest(
                "The definition is not valid YAML.", field="definition", rule="import.definition"
            ) from error
    if not isinstance(definition, dict):
        raise InvalidRequest(
            "The definition must be a mapping (see docs/owners.md).",
            field="definition",
            rule="import.definition",
        )
    return definition


def _checked_definition(raw: dict[str, Any], record: Import) -> tuple[Manifest, str]:
    source = f"import {record.id}"
    try:
        manifest, policy_text = parse_definition(raw, source=source)
        parse_policy(policy_text, manifest, source=f"{source}: policy")
    except DatasetError as error:
        raise definition_error(error) from error
    except PolicyFileError as error:
        raise InvalidRequest(str(error), field="definition", rule="import.policy") from error
    if manifest.name != record.dataset:
        raise InvalidRequest(
            f"The definition is of {manifest.name}; this import is into {record.dataset}.",
            field="definition",
            rule="import.definition",
        )
    return manifest, policy_text


def _check_complete(raw: dict[str, Any], record: Import) -> None:
    """Every staged column of every staged table is confirmed (a column's source) or left
    out on purpose; every source the definition names was staged."""
    staged = {t["name"]: [c for c, _ in t["columns"]] for t in record.tables}
    try:
        sources = sources_of(raw)
    except DatasetError as error:
        raise definition_error(error) from error
    used_tables = {s for s, _, _ in sources.values()}
    for table in staged:
        if table not in used_tables:
            raise InvalidRequest(
                f"The staged table {table} is in no table of the definition: define it, "
                "or discard the import and stage without it.",
                rule="import.unconfirmed",
                table=table,
            )
    for name, (table, columns, exclude) in sources.items():
        if table not in staged:
            raise InvalidRequest(
                f"tables.{name}.source: {table} was not staged.", rule="import.definition"
            )
        for column in [*columns.values(), *exclude]:
            if column not in staged[table]:
                raise InvalidRequest(
                    f"tables.{name}: the staged table {table} has no column {column}.",
                    rule="import.definition",
                    column=column,
                )
        unconfirmed = [c for c in staged[table] if c not in columns.values() and c not in exclude]
        if unconfirmed:
            raise InvalidRequest(
                f"tables.{name}: {len(unconfirmed)} staged columns are neither confirmed nor "
                f"excluded: {', '.join(unconfirmed[:10])}. Confirm each column's class and "
                "rule, or list it under exclude.",
                rule="import.unconfirmed",
                table=name,
                columns=unconfirmed,
            )


def _column_name(source: str, number: int, *, taken: set[str]) -> str:
    name = source.strip().lower().replace(" ", "_").replace("-", "_")
    if not NAME.match(name) or name in taken:
        name = f"column_{number}"
    return name


def _classes(manifest: Manifest) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in manifest.tables:
        for column in table.columns:
            counts[column.cls.value] = counts.get(column.cls.value, 0) + 1
    return counts


def _plain(value: object) -> object:
    """A profile or proposal as JSON values (dataclasses, enums, tuples, numbers)."""
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, dict):
        return _plain(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, pa.DataType):
        return str(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
