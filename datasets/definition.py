"""A dataset's definition as its owner writes it: the manifest and the policy in one YAML.

The same manifest (:class:`datasets.manifest.Manifest`) and policy
(:func:`policies.policy_file.parse_policy`) the engine uses, as data instead of
code, so an owner can export a published dataset's definition, edit it, and
import it again with the next version::

    dataset: clinic
    title: 社区门诊
    title_en: Community clinic
    privacy_unit: patient_id
    consent: {column: patients.consent, purposes: [research]}     # optional
    tables:
      patients:
        description: 患者
        description_en: Patients
        max_rows_per_person: 1
        columns:
          patient_id: {type: string, class: person_key, description: 患者编号}
          cost: {type: float, class: sensitive, bounds: [0, 50000]}
          department: {type: string, class: category, categories: [内科, 外科]}
    policy:                                       # the policy file's content
      k_threshold: 10
      columns:
        patients.cost: {rule: [aggregate_only, filter], aggregates: [COUNT, SUM, AVG]}

Every error names the place (``clinic.yaml: tables.patients.columns.cost.bounds``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from datasets.errors import DatasetError
from datasets.manifest import Column, ColumnClass, ColumnType, Manifest, Table

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# A dataset name is also a folder of the store and a path segment of the API.
DATASET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MAX_TABLES = 50
MAX_COLUMNS = 500
MAX_CATEGORIES = 10_000
MAX_ROWS_PER_PERSON = 10_000
NUMERIC = (ColumnType.INTEGER, ColumnType.FLOAT)
TOP_KEYS = {"dataset", "title", "title_en", "privacy_unit", "consent", "tables", "policy"}
TABLE_KEYS = {
    "description",
    "description_en",
    "max_rows_per_person",
    "columns",
    "source",
    "exclude",
}
COLUMN_KEYS = {"type", "class", "description", "description_en", "bounds", "categories", "source"}


class DefinitionError(DatasetError):
    """A dataset definition that is not valid; the message names the place."""


def parse_definition(raw: Any, *, source: str = "definition") -> tuple[Manifest, str]:
    """The manifest and the policy text of a definition (YAML text or its mapping).

    The policy is returned as YAML text for :func:`policies.policy_file.parse_policy`,
    which validates it against the manifest with its own errors.
    """
    data = _mapping(raw, source)
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise DefinitionError(f"{source}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    name = _text(data.get("dataset"), f"{source}: dataset", pattern=DATASET_NAME)
    tables_raw = data.get("tables")
    if not isinstance(tables_raw, Mapping) or not tables_raw:
        raise DefinitionError(f"{source}: tables must map each table's name to its columns")
    if len(tables_raw) > MAX_TABLES:
        raise DefinitionError(f"{source}: at most {MAX_TABLES} tables")
    tables = tuple(_table(str(t), spec, f"{source}: tables.{t}") for t, spec in tables_raw.items())
    privacy_unit = _text(data.get("privacy_unit"), f"{source}: privacy_unit", pattern=NAME)
    for table in tables:
        column = table.column(privacy_unit)
        if column is None or column.cls is not ColumnClass.PERSON_KEY:
            raise DefinitionError(
                f"{source}: tables.{table.name} needs the privacy unit {privacy_unit} "
                "as a column of class person_key"
            )
    for table in tables:
        extra = [c.name for c in table.columns if c.cls is ColumnClass.PERSON_KEY]
        if extra != [privacy_unit]:
            raise DefinitionError(
                f"{source}: tables.{table.name}: only {privacy_unit} may be of class person_key"
            )
    consent_column, purposes = _consent(data.get("consent"), tables, f"{source}: consent")
    manifest = Manifest(
        name=name,
        title=_text(data.get("title", name), f"{source}: title"),
        title_en=_text(data.get("title_en", ""), f"{source}: title_en", empty=True),
        privacy_unit=privacy_unit,
        tables=tables,
        consent_column=consent_column,
        consent_purposes=purposes,
    )
    policy = data.get("policy") or {}
    if not isinstance(policy, Mapping):
        raise DefinitionError(f"{source}: policy must be a mapping (the policy file's content)")
    policy_text = yaml.safe_dump(
        {"dataset": name, **{str(k): v for k, v in policy.items() if k != "dataset"}},
        allow_unicode=True,
        sort_keys=False,
    )
    return manifest, policy_text


def sources_of(
    raw: Any, *, source: str = "definition"
) -> dict[str, tuple[str, dict[str, str], list[str]]]:
    """Where an import's definition takes each table and column from: per table, the staged
    table, each column's staged column and the staged columns left out on purpose.

    ``source`` (of a table or a column) defaults to its own name; ``exclude`` lists
    staged columns the owner leaves out of the dataset.
    """
    data = _mapping(raw, source)
    found = {}
    for name, spec in (data.get("tables") or {}).items():
        where = f"{source}: tables.{name}"
        if not isinstance(spec, Mapping):
            raise DefinitionError(f"{where}: expected a mapping with columns")
        staged = _text(spec.get("source", str(name)), f"{where}.source")
        columns = {
            str(c): _text((raw_c or {}).get("source", str(c)), f"{where}.columns.{c}.source")
            for c, raw_c in (spec.get("columns") or {}).items()
            if isinstance(raw_c, Mapping)
        }
        exclude = spec.get("exclude") or []
        if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise DefinitionError(f"{where}.exclude: a list of the staged columns left out")
        found[str(name)] = (staged, columns, list(exclude))
    return found


def definition_of(manifest: Manifest, policy_text: str) -> dict[str, Any]:
    """The definition of a manifest and its policy, as :func:`parse_definition` reads it."""
    policy = yaml.safe_load(policy_text) or {}
    policy.pop("dataset", None)
    data: dict[str, Any] = {
        "dataset": manifest.name,
        "title": manifest.title,
        "title_en": manifest.title_en,
        "privacy_unit": manifest.privacy_unit,
    }
    if manifest.consent_column:
        data["consent"] = {
            "column": manifest.consent_column,
            "purposes": list(manifest.consent_purposes),
        }
    data["tables"] = {
        t.name: {
            "description": t.description,
            "description_en": t.description_en,
            "max_rows_per_person": t.max_rows_per_person,
            "columns": {c.name: _column_data(c) for c in t.columns},
        }
        for t in manifest.tables
    }
    data["policy"] = policy
    return data


def dump_definition(manifest: Manifest, policy_text: str) -> str:
    return yaml.safe_dump(
        definition_of(manifest, policy_text), allow_unicode=True, sort_keys=False, width=100
    )


def _column_data(column: Column) -> dict[str, Any]:
    data: dict[str, Any] = {"type": column.type.value, "class": column.cls.value}
    if column.description:
        data["description"] = column.description
    if column.description_en:
        data["description_en"] = column.description_en
    if column.bounds is not None:
        data["bounds"] = list(column.bounds)
    if column.categories is not None:
        data["categories"] = list(column.categories)
    return data


def _mapping(raw: Any, source: str) -> Mapping[Any, Any]:
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise DefinitionError(f"{source}: not valid YAML{where}") from error
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{source}: expected a mapping at the top")
    return raw


def _text(
    value: Any, where: str, *, pattern: re.Pattern[str] | None = None, empty: bool = False
) -> str:
    if not isinstance(value, str) or (not value.strip() and not empty):
        raise DefinitionError(f"{where}: expected text")
    if pattern is not None and not pattern.match(value):
        raise DefinitionError(
            f"{where}: {value!r} is not a name (lower-case letters, digits and _, "
            "starting with a letter)"
        )
    return value


def _table(name: str, spec: Any, where: str) -> Table:
    if not NAME.match(name):
        raise DefinitionError(f"{where}: not a table name (lower-case letters, digits and _)")
    if not isinstance(spec, Mapping):
        raise DefinitionError(f"{where}: expected a mapping with columns")
    unknown = set(spec) - TABLE_KEYS
    if unknown:
        raise DefinitionError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    columns_raw = spec.get("columns")
    if not isinstance(columns_raw, Mapping) or not columns_raw:
        raise DefinitionError(f"{where}.columns: map each column's name to its type and class")
    if len(columns_raw) > MAX_COLUMNS:
        raise DefinitionError(f"{where}.columns: at most {MAX_COLUMNS} columns")
    rows = spec.get("max_rows_per_person", 1)
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS_PER_PERSON:
        raise DefinitionError(
            f"{where}.max_rows_per_person: a whole number from 1 to {MAX_ROWS_PER_PERSON}"
        )
    return Table(
        name=name,
        description=_text(spec.get("description", name), f"{where}.description"),
        description_en=_text(spec.get("description_en", ""), f"{where}.description_en", empty=True),
        columns=tuple(
            _column(str(c), raw, f"{where}.columns.{c}") for c, raw in columns_raw.items()
        ),
        max_rows_per_person=rows,
    )


def _column(name: str, spec: Any, where: str) -> Column:
    if not NAME.match(name):
        raise DefinitionError(f"{where}: not a column name (lower-case letters, digits and _)")
    if not isinstance(spec, Mapping):
        raise DefinitionError(f"{where}: expected a mapping with type and class")
    unknown = set(spec) - COLUMN_KEYS
    if unknown:
        raise DefinitionError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    kind = _choice(spec.get("type"), ColumnType, f"{where}.type")
    cls = _choice(spec.get("class"), ColumnClass, f"{where}.class")
    return Column(
        name=name,
        type=kind,
        cls=cls,
        description=_text(spec.get("description", name), f"{where}.description"),
        description_en=_text(spec.get("description_en", ""), f"{where}.description_en", empty=True),
        bounds=_bounds(spec.get("bounds"), kind, f"{where}.bounds"),
        categories=_categories(spec.get("categories"), f"{where}.categories"),
    )


def _choice(value: Any, kind: type[ColumnType] | type[ColumnClass], where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(k.value for k in kind)
        raise DefinitionError(f"{where}: one of {names}") from None


def _bounds(value: Any, kind: ColumnType, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if kind not in (*NUMERIC, ColumnType.DATE):
        raise DefinitionError(f"{where}: only numbers and dates have bounds")
    numbers = list(value) if isinstance(value, list | tuple) else []
    if len(numbers) != 2 or not all(
        isinstance(n, int | float) and not isinstance(n, bool) for n in numbers
    ):
        raise DefinitionError(f"{where}: two numbers, [low, high]")
    low, high = float(numbers[0]), float(numbers[1])
    if not low < high:
        raise DefinitionError(f"{where}: the low bound must be below the high one")
    return low, high


def _categories(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_CATEGORIES:
        raise DefinitionError(f"{where}: a list of 1 to {MAX_CATEGORIES} categories")
    if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
        raise DefinitionError(f"{where}: categories are text or numbers")
    texts = tuple(str(v) for v in value)
    if len(set(texts)) != len(texts):
        raise DefinitionError(f"{where}: a category is listed twice")
    return texts


def _consent(raw: Any, tables: tuple[Table, ...], where: str) -> tuple[str | None, tuple[str, ...]]:
    if raw is None:
        return None, ("research",)
    if not isinstance(raw, Mapping) or set(raw) - {"column", "purposes"}:
        raise DefinitionError(f"{where}: a mapping of column (table.column) and purposes")
    column = raw.get("column")
    table_name, _, column_name = str(column).partition(".")
    table = next((t for t in tables if t.name == table_name), None)
    found = table.column(column_name) if table is not None else None
    if found is None or found.cls is not ColumnClass.CONSENT:
        raise DefinitionError(f"{where}.column: a column of class consent, as table.column")
    purposes = raw.get("purposes", ["research"])
    if (
        not isinstance(purposes, list)
        or not purposes
        or not all(isinstance(p, str) and NAME.match(p) for p in purposes)
    ):
        raise DefinitionError(f"{where}.purposes: a list of purpose names")
    return str(column), tuple(purposes)
