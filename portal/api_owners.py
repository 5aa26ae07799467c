"""The owners' JSON API: imports (stage, profile, confirm, publish), datasets' versions,
definitions, usage, retirement and consent registry imports (ARCHITECTURE.md, "HTTP API").

Files go up as the request body itself (``PUT .../files?filename=visits.csv``), read as
a stream straight into the encrypted staging: nothing is spooled to disk in plain text.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from portal.auth import login_required, sandbox
from portal.json_body import json_object, optional_text, text
from sandbox.errors import InvalidRequest
from sandbox.owners import consent_registry, datasets, imports

bp = Blueprint("api_owners", __name__, url_prefix="/api/v1")
MAX_NAME_CHARS = 200


def _filename() -> str:
    name = request.args.get("filename") or request.headers.get("X-Filename") or ""
    if not name or len(name) > MAX_NAME_CHARS or "/" in name or "\\" in name:
        raise InvalidRequest("Name the file: ?filename=visits.csv (no folders).", field="filename")
    return name


def upload_stream() -> Any:
    """The request body as a stream, allowed up to the import size cap."""
    limit = sandbox().settings.max_import_bytes
    request.max_content_length = limit
    if request.content_length is not None and request.content_length > limit:
        raise InvalidRequest(
            f"The file is larger than the import limit of {limit} bytes.",
            rule="import.too_large",
        )
    return request.stream


@bp.post("/imports")
@login_required
def start_import() -> Any:
    body = json_object()
    started = imports.start_import(
        sandbox(),
        by=g.actor,
        dataset=text(body, "dataset"),
        mode=optional_text(body, "mode") or "new",
    )
    return jsonify(started), 201


@bp.get("/imports")
@login_required
def my_imports() -> Any:
    return jsonify(imports=imports.my_imports(sandbox(), by=g.actor))


@bp.get("/imports/<import_id>")
@login_required
def read_import(import_id: str) -> Any:
    return jsonify(imports.read_import(sandbox(), by=g.actor, import_id=import_id))


@bp.put("/imports/<import_id>/files")
@login_required
def stage_file(import_id: str) -> Any:
    """The file is the body; ``filename`` names it, ``table``, ``encoding`` and
    ``delimiter`` (optional) say how to read it."""
    options = imports.ReadingOptions(
        encoding=request.args.get("encoding") or None,
        delimiter=request.args.get("delimiter") or None,
        header=request.args.get("header", "true") != "false",
    )
    staged = imports.stage_upload(
        sandbox(),
        by=g.actor,
        import_id=import_id,
        source=upload_stream(),
        filename=_filename(),
        table=request.args.get("table") or None,
        options=options,
    )
    return jsonify(staged)


@bp.post("/imports/<import_id>/connections")
@login_required
def stage_connection(import_id: str) -> Any:
    """``{url, name, table | query}``: the URL's password is used once, stored nowhere."""
    body = json_object()
    staged = imports.stage_connection(
        sandbox(),
        by=g.actor,
        import_id=import_id,
        url=text(body, "url"),
        name=text(body, "name"),
        table=optional_text(body, "table"),
        query=optional_text(body, "query"),
    )
    return jsonify(staged)


@bp.post("/imports/<import_id>/profile")
@login_required
def profile_import(import_id: str) -> Any:
    return jsonify(imports.profile_import(sandbox(), by=g.actor, import_id=import_id))


@bp.put("/imports/<import_id>/definition")
@login_required
def confirm_import(import_id: str) -> Any:
    """The owner's definition: JSON ``{"definition": {...}}`` or a YAML body."""
    if request.mimetype in ("application/yaml", "application/x-yaml", "text/yaml"):
        definition: Any = request.get_data(as_text=True)
    else:
        definition = json_object().get("definition")
    return jsonify(
        imports.confirm_import(sandbox(), by=g.actor, import_id=import_id, definition=definition)
    )


@bp.post("/imports/<import_id>/publish")
@login_required
def publish_import(import_id: str) -> Any:
    return jsonify(imports.publish_import(sandbox(), by=g.actor, import_id=import_id))


@bp.delete("/imports/<import_id>")
@login_required
def discard_import(import_id: str) -> Any:
    return jsonify(imports.discard_import(sandbox(), by=g.actor, import_id=import_id))


@bp.get("/owner/datasets")
@login_required
def my_datasets() -> Any:
    return jsonify(datasets=datasets.my_datasets(sandbox(), by=g.actor))


@bp.get("/datasets/<name>/versions")
@login_required
def dataset_versions(name: str) -> Any:
    return jsonify(datasets.dataset_versions(sandbox(), by=g.actor, dataset=name))


@bp.get("/datasets/<name>/definition")
@login_required
def export_definition(name: str) -> Any:
    text = datasets.export_definition(sandbox(), by=g.actor, dataset=name)
    return Response(text, mimetype="application/yaml; charset=utf-8")


@bp.get("/datasets/<name>/usage")
@login_required
def dataset_usage(name: str) -> Any:
    return jsonify(datasets.dataset_usage(sandbox(), by=g.actor, dataset=name))


@bp.post("/datasets/<name>/retire")
@login_required
def retire_dataset(name: str) -> Any:
    """``{"confirm": "<the dataset's name>"}``: the data key is destroyed for good."""
    confirm = text(json_object(), "confirm")
    return jsonify(datasets.retire_dataset(sandbox(), by=g.actor, dataset=name, confirm=confirm))


@bp.put("/datasets/<name>/consents")
@login_required
def import_consent(name: str) -> Any:
    """The consent registry file is the body (``?filename=consent.csv``)."""
    counts = consent_registry.import_consent(
        sandbox(), by=g.actor, dataset=name, source=upload_stream(), filename=_filename()
    )
    return jsonify(dataset=name, **counts)
