"""The owner's definition form: an import's draft as form fields, and the posted fields
back as the definition mapping ``confirm_import`` takes (``datasets.definition``).

The form is keyed by position (``t0-c2-class`` is the third staged column of the first
staged table) and carries each staged table's and column's name in a hidden field, so
a column renamed in the form still says where its values come from; ``confirm_import``
checks those names against what was staged. Numbers that do not parse are handed on as
typed, so the action's error names the place and the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_babel import gettext

from sandbox.errors import InvalidRequest
from sandbox.models import ImportStatus
from sandbox.owners import vocabulary

CLASSES, TYPES, RULES = vocabulary.CLASSES, vocabulary.TYPES, vocabulary.RULES
AGGREGATES, CLOSED_CLASSES = vocabulary.AGGREGATES, vocabulary.CLOSED_CLASSES
MAX_TABLES = 50
MAX_COLUMNS = 500
MAX_CATEGORY_LINES = 10_000
Form = Mapping[str, str]


# --- the draft as a form -------------------------------------------------------------------


def proposal_of(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One profiled column's proposal with its fields where the form reads them."""
    derived = raw.get("derived") or {}
    return {
        "class": raw.get("cls") or raw.get("class") or vocabulary.DIRECT_IDENTIFIER,
        "type": raw.get("type") or vocabulary.STRING,
        "rules": list(raw.get("rules") or raw.get("rule") or []),
        "aggregates": list(raw.get("aggregates") or []),
        "confidence": raw.get("confidence"),
        "evidence": list(raw.get("evidence") or []),
        "bounds": raw.get("bounds") or derived.get("bounds"),
        "categories": raw.get("categories") or derived.get("categories"),
    }


def form_of_import(view: Mapping[str, Any]) -> dict[str, Any]:
    """The form for a profiled import: the draft definition (or the owner's confirmed
    one), completed column by column from the profile's proposals."""
    draft = view.get("draft") or {}
    profile = view.get("profile") or {}
    policy = draft.get("policy") or {}
    rules = policy.get("columns") or {}
    tables_by_source = {
        str(spec.get("source", name)): (str(name), spec)
        for name, spec in (draft.get("tables") or {}).items()
        if isinstance(spec, Mapping)
    }
    # Until the owner confirms, the draft's bounds and categories are the data's own.
    drafted = view.get("status") != ImportStatus.CONFIRMED.value
    tables = []
    for t, staged in enumerate(view.get("tables") or []):
        source = str(staged["name"])
        name, spec = tables_by_source.get(source, (source, {}))
        profiled = profile.get(source) or {}
        tables.append(_table_form(t, staged, name, spec, profiled, rules, drafted=drafted))
    privacy_unit = str(draft.get("privacy_unit") or "")
    consent = draft.get("consent") or {}
    consent_table, _, consent_column = str(consent.get("column", "")).partition(".")
    consent_key = _key_of(tables, consent_table, consent_column) if consent else ""
    if not consent and drafted:
        consent_key = _first_of_class(tables, vocabulary.CONSENT)
    return {
        "title": str(draft.get("title") or view.get("dataset") or ""),
        "title_en": str(draft.get("title_en") or ""),
        "privacy_unit": _key_of(tables, None, privacy_unit),
        "consent": consent_key,
        "purposes": ", ".join(consent.get("purposes") or ["research"]),
        "tables": tables,
        **_disclosure_form(policy),
    }


def _table_form(
    t: int,
    staged: Mapping[str, Any],
    name: str,
    spec: Mapping[str, Any],
    profiled: Mapping[str, Any],
    rules: Mapping[str, Any],
    *,
    drafted: bool,
) -> dict[str, Any]:
    columns_by_source = {
        str(raw.get("source", column)): (str(column), raw)
        for column, raw in (spec.get("columns") or {}).items()
        if isinstance(raw, Mapping)
    }
    excluded = set(spec.get("exclude") or [])
    proposals = {str(p.get("column")): proposal_of(p) for p in profiled.get("proposals") or []}
    profiles = {str(c.get("name")): c for c in (profiled.get("profile") or {}).get("columns", [])}
    columns = []
    for c, (source, staged_type) in enumerate(staged.get("columns") or []):
        proposal = proposals.get(source) or proposal_of({})
        column, raw = columns_by_source.get(source, (f"column_{c + 1}", {}))
        cls = str(raw.get("class") or proposal["class"])
        kind = str(raw.get("type") or proposal["type"])
        rule = rules.get(f"{name}.{view_name(column, cls, kind)}")
        if not isinstance(rule, Mapping):
            rule = {"rule": proposal["rules"], "aggregates": proposal["aggregates"]}
        names = rule.get("rule") or []
        bounds = raw.get("bounds") or proposal["bounds"] or ["", ""]
        categories = raw.get("categories") or proposal["categories"] or []
        columns.append(
            {
                "key": f"t{t}-c{c}",
                "source": source,
                "staged_type": staged_type,
                "name": column,
                "class": cls,
                "type": kind,
                "rules": [names] if isinstance(names, str) else list(names),
                "aggregates": [str(a).upper() for a in rule.get("aggregates") or []],
                "low": _number_text(bounds[0]),
                "high": _number_text(bounds[1]),
                "categories": "\n".join(str(v) for v in categories),
                "description": str(raw.get("description") or source),
                "description_en": str(raw.get("description_en") or ""),
                "exclude": source in excluded,
                "proposal": proposal,
                "profile": profiles.get(source),
                "derived_bounds": drafted and _same(bounds, proposal["bounds"]),
                "derived_categories": drafted and _same(categories, proposal["categories"]),
            }
        )
    return {
        "key": f"t{t}",
        "source": str(staged["name"]),
        "rows": staged.get("rows"),
        "name": name,
        "description": str(spec.get("description") or name),
        "description_en": str(spec.get("description_en") or ""),
        "max_rows": str(spec.get("max_rows_per_person", 1)),
        "columns": columns,
    }


def _disclosure_form(policy: Mapping[str, Any]) -> dict[str, Any]:
    defaults = vocabulary.disclosure_defaults()
    raw = policy.get("disclosure") or {}
    dominance = raw.get("dominance") or {}
    return {
        "k_threshold": str(policy.get("k_threshold", defaults.threshold)),
        "dominance_n": str(dominance.get("n", defaults.dominance_n)),
        "dominance_k": str(dominance.get("k", defaults.dominance_k)),
        "p_percent": str(raw.get("p_percent", defaults.p_percent)),
        "round_base": str(raw.get("round_base", defaults.round_base)),
        "zeros_disclosive": bool(raw.get("zeros_disclosive", defaults.zeros_disclosive)),
        "differencing": bool(raw.get("differencing", defaults.differencing)),
    }


def _key_of(tables: list[dict[str, Any]], table: str | None, column: str) -> str:
    """The form key of the column named ``column`` (in ``table``, or the first table)."""
    for t in tables:
        if table is not None and t["name"] != table:
            continue
        for c in t["columns"]:
            if c["name"] == column and not c["exclude"]:
                return str(c["key"])
    return ""


def _first_of_class(tables: list[dict[str, Any]], cls: str) -> str:
    for t in tables:
        for c in t["columns"]:
            if c["class"] == cls and not c["exclude"]:
                return str(c["key"])
    return ""


def _same(values: object, proposed: object) -> bool:
    """The values are the ones the profile read from the data."""
    if not isinstance(values, list | tuple) or not isinstance(proposed, list | tuple):
        return False
    return [str(v) for v in values] == [str(v) for v in proposed]


def _number_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value)


view_name = vocabulary.view_name


def form_of_post(form: Any, *, dataset: str) -> dict[str, Any]:
    """The posted fields in the form's own shape, to show again next to an error."""
    tables = []
    for t in range(MAX_TABLES):
        key = f"t{t}"
        if f"{key}-source" not in form:
            break
        columns = []
        for c in range(MAX_COLUMNS):
            ckey = f"{key}-c{c}"
            if f"{ckey}-source" not in form:
                break
            columns.append(
                {
                    "key": ckey,
                    "source": form.get(f"{ckey}-source", ""),
                    "staged_type": form.get(f"{ckey}-staged_type", ""),
                    "name": form.get(f"{ckey}-name", "").strip(),
                    "class": form.get(f"{ckey}-class", ""),
                    "type": form.get(f"{ckey}-type", ""),
                    "rules": form.getlist(f"{ckey}-rule"),
                    "aggregates": form.getlist(f"{ckey}-aggregate"),
                    "low": form.get(f"{ckey}-low", "").strip(),
                    "high": form.get(f"{ckey}-high", "").strip(),
                    "categories": form.get(f"{ckey}-categories", ""),
                    "description": form.get(f"{ckey}-description", "").strip(),
                    "description_en": form.get(f"{ckey}-description_en", "").strip(),
                    "exclude": f"{ckey}-exclude" in form,
                }
            )
        tables.append(
            {
                "key": key,
                "source": form.get(f"{key}-source", ""),
                "name": form.get(f"{key}-name", "").strip(),
                "description": form.get(f"{key}-description", "").strip(),
                "description_en": form.get(f"{key}-description_en", "").strip(),
                "max_rows": form.get(f"{key}-max_rows", "").strip(),
                "columns": columns,
            }
        )
    return {
        "title": form.get("title", "").strip() or dataset,
        "title_en": form.get("title_en", "").strip(),
        "privacy_unit": form.get("privacy_unit", ""),
        "consent": form.get("consent", ""),
        "purposes": form.get("purposes", ""),
        "k_threshold": form.get("k_threshold", "").strip(),
        "dominance_n": form.get("dominance_n", "").strip(),
        "dominance_k": form.get("dominance_k", "").strip(),
        "p_percent": form.get("p_percent", "").strip(),
        "round_base": form.get("round_base", "").strip(),
        "zeros_disclosive": "zeros_disclosive" in form,
        "differencing": "differencing" in form,
        "tables": tables,
    }


def definition_of_form(shape: Mapping[str, Any], *, dataset: str) -> dict[str, Any]:
    """The definition mapping of the form (as :func:`form_of_post` shapes it)."""
    by_key: dict[str, tuple[str, str]] = {}
    tables: dict[str, Any] = {}
    rules: dict[str, Any] = {}
    for table in shape["tables"]:
        name = table["name"]
        if name in tables:
            raise InvalidRequest(gettext("owner.form.table_twice", name=name), field=table["key"])
        columns: dict[str, Any] = {}
        exclude = []
        for column in table["columns"]:
            if column["exclude"]:
                exclude.append(column["source"])
                continue
            if column["name"] in columns:
                raise InvalidRequest(
                    gettext("owner.form.column_twice", table=name, name=column["name"]),
                    field=column["key"],
                )
            columns[column["name"]] = _column_definition(column)
            by_key[column["key"]] = (name, column["name"])
            rule = _rule_definition(column)
            if rule is not None:
                view = view_name(column["name"], column["class"], column["type"])
                rules[f"{name}.{view}"] = rule
        tables[name] = {
            "source": table["source"],
            "description": table["description"] or name,
            "description_en": table["description_en"],
            "max_rows_per_person": _whole(table["max_rows"]),
            "columns": columns,
            **({"exclude": exclude} if exclude else {}),
        }
    definition: dict[str, Any] = {
        "dataset": dataset,
        "title": shape["title"] or dataset,
        "title_en": shape["title_en"],
        "privacy_unit": by_key.get(shape["privacy_unit"], ("", ""))[1],
        "tables": tables,
        "policy": {
            "k_threshold": _whole(shape["k_threshold"]),
            "disclosure": _disclosure_definition(shape),
            "columns": rules,
        },
    }
    if shape["consent"]:
        if shape["consent"] not in by_key:
            raise InvalidRequest(gettext("owner.form.consent_excluded"), field="consent")
        table_name, column_name = by_key[shape["consent"]]
        purposes = [p.strip() for p in shape["purposes"].replace("、", ",").split(",")]
        definition["consent"] = {
            "column": f"{table_name}.{column_name}",
            "purposes": [p for p in purposes if p] or ["research"],
        }
    return definition


def _column_definition(column: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": column["type"],
        "class": column["class"],
        "description": column["description"] or column["source"],
        "source": column["source"],
    }
    if column["description_en"]:
        spec["description_en"] = column["description_en"]
    if column["low"] or column["high"]:
        spec["bounds"] = [_number(column["low"]), _number(column["high"])]
    lines = [line.strip() for line in str(column["categories"]).splitlines()]
    categories = [line for line in lines if line][:MAX_CATEGORY_LINES]
    if categories:
        spec["categories"] = categories
    return spec


def _rule_definition(column: Mapping[str, Any]) -> dict[str, Any] | None:
    """The column's rule as the owner ticked it; none (the class's default) if none is."""
    if column["class"] in CLOSED_CLASSES or not column["rules"]:
        return None
    rule: dict[str, Any] = {"rule": [r for r in RULES if r in column["rules"]]}
    if vocabulary.FORBIDDEN in column["rules"]:
        return {"rule": [vocabulary.FORBIDDEN]}
    aggregates = [a for a in AGGREGATES if a in column["aggregates"]]
    if aggregates:
        rule["aggregates"] = aggregates
    return rule


def _disclosure_definition(shape: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "dominance": {"n": _whole(shape["dominance_n"]), "k": _number(shape["dominance_k"])},
        "p_percent": _number(shape["p_percent"]),
        "round_base": _whole(shape["round_base"]),
        "zeros_disclosive": bool(shape["zeros_disclosive"]),
        "differencing": bool(shape["differencing"]),
    }


def _whole(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _number(text: str) -> float | int | str:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def with_proposals(posted: dict[str, Any], proposed: Mapping[str, Any]) -> dict[str, Any]:
    """The posted form with the profile's proposals beside its columns again."""
    tables = {t["key"]: t for t in proposed.get("tables") or []}
    for table in posted["tables"]:
        known = tables.get(table["key"]) or {}
        table["rows"] = known.get("rows")
        columns = {c["key"]: c for c in known.get("columns") or []}
        for column in table["columns"]:
            other = columns.get(column["key"]) or {}
            column["proposal"] = other.get("proposal") or proposal_of({})
            column["profile"] = other.get("profile")
            column["derived_bounds"] = column["derived_categories"] = False
    return posted
