"""The owner's definition form: the draft as fields, the posted fields as a definition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.datastructures import MultiDict

import portal
from datasets.definition import parse_definition, sources_of
from portal import i18n, owner_forms
from portal.web_owners import use_chart
from sandbox.errors import InvalidRequest


def imported_view(status: str = "profiled") -> dict[str, Any]:
    """An import as ``read_import`` returns it once profiled."""
    proposals = [
        {"column": "患者编号", "class": "person_key", "type": "string", "rule": ["join_key"]},
        {"column": "出生日期", "class": "quasi_identifier", "type": "date", "rule": ["dimension"]},
        {"column": "col_3", "class": "direct_identifier", "type": "string", "rule": ["forbidden"]},
        {
            "column": "费用",
            "class": "sensitive",
            "type": "float",
            "rule": ["aggregate_only", "filter"],
            "aggregates": ["COUNT", "SUM"],
            "bounds": [0.0, 5000.0],
        },
        {"column": "同意", "class": "consent", "type": "boolean", "rule": ["forbidden"]},
    ]
    columns = [[p["column"], "string"] for p in proposals]
    draft = {
        "dataset": "clinic",
        "privacy_unit": "column_1",
        "tables": {
            "table": {
                "source": "table",
                "max_rows_per_person": 1,
                "columns": {
                    "column_1": {"type": "string", "class": "person_key", "source": "患者编号"},
                    "column_4": {
                        "type": "float",
                        "class": "sensitive",
                        "source": "费用",
                        "bounds": [0.0, 5000.0],
                    },
                },
            }
        },
        "policy": {"k_threshold": 10, "columns": {}},
    }
    return {
        "id": "i1",
        "dataset": "clinic",
        "status": status,
        "tables": [{"name": "table", "rows": 300, "columns": columns}],
        "profile": {"table": {"profile": {"columns": []}, "proposals": proposals}},
        "draft": draft,
    }


def posted(form: dict[str, Any], **changes: str | list[str]) -> MultiDict[str, str]:
    """The fields a browser would post for ``form`` (as the template names them)."""
    fields: MultiDict[str, str] = MultiDict()
    for name in ("title", "title_en", "privacy_unit", "consent", "purposes", "k_threshold"):
        fields[name] = str(form[name])
    for name in ("dominance_n", "dominance_k", "p_percent", "round_base"):
        fields[name] = str(form[name])
    for flag in ("zeros_disclosive", "differencing"):
        if form[flag]:
            fields[flag] = "on"
    for table in form["tables"]:
        for name in ("source", "name", "description", "description_en", "max_rows"):
            fields[f"{table['key']}-{name}"] = str(table[name])
        for column in table["columns"]:
            _post_column(fields, column)
    for name, value in changes.items():
        fields.setlist(name, value if isinstance(value, list) else [value])
    return fields


def _post_column(fields: MultiDict[str, str], column: dict[str, Any]) -> None:
    key = column["key"]
    texts = ("source", "staged_type", "name", "class", "type", "low", "high", "categories")
    for name in (*texts, "description", "description_en"):
        fields[f"{key}-{name}"] = str(column[name])
    fields.setlist(f"{key}-rule", column["rules"])
    fields.setlist(f"{key}-aggregate", column["aggregates"])
    if column["exclude"]:
        fields[f"{key}-exclude"] = "on"


@pytest.fixture
def app_context() -> Any:
    """A request, so that refusals are worded (in Chinese, the default)."""
    app = Flask("test", root_path=str(Path(portal.__file__).parent))
    app.config["SECRET_KEY"] = "test"
    i18n.init_app(app)
    with app.test_request_context():
        yield


def test_owner_form_of_import_completes_the_draft_from_the_proposals() -> None:
    form = owner_forms.form_of_import(imported_view())
    (table,) = form["tables"]
    person, birth, id_card, cost, consent = table["columns"]
    assert (person["name"], person["class"], person["rules"]) == (
        "column_1",
        "person_key",
        ["join_key"],
    )
    assert (birth["class"], birth["type"], birth["rules"]) == (
        "quasi_identifier",
        "date",
        ["dimension"],
    )
    assert id_card["class"] == "direct_identifier" and id_card["rules"] == ["forbidden"]
    assert (cost["low"], cost["high"], cost["derived_bounds"]) == ("0", "5000", True)
    assert cost["aggregates"] == ["COUNT", "SUM"]
    assert form["privacy_unit"] == person["key"]
    assert form["consent"] == consent["key"]  # the column proposed as consent
    assert form["k_threshold"] == "10" and form["zeros_disclosive"] is True


def test_owner_form_confirmed_bounds_are_no_longer_marked_as_the_datas() -> None:
    form = owner_forms.form_of_import(imported_view(status="confirmed"))
    cost = form["tables"][0]["columns"][3]
    assert cost["derived_bounds"] is False
    assert form["consent"] == ""  # a confirmed definition without consent keeps none


def test_owner_form_posted_fields_make_a_valid_definition(app_context: None) -> None:
    form = owner_forms.form_of_import(imported_view())
    names = ["person_id", "birth_date", "id_card", "cost", "consent"]
    fields = posted(form, **{f"t0-c{n}-name": name for n, name in enumerate(names)})
    fields["t0-name"] = "visits"
    fields.setlist("t0-c3-aggregate", ["COUNT", "SUM", "AVG"])
    definition = owner_forms.definition_of_form(
        owner_forms.form_of_post(fields, dataset="clinic"), dataset="clinic"
    )
    manifest, policy_text = parse_definition(definition)
    assert manifest.privacy_unit == "person_id"
    assert manifest.consent_column == "visits.consent"
    assert [c.name for c in manifest.tables[0].columns] == names
    assert manifest.tables[0].column("cost").bounds == (0.0, 5000.0)
    # A generalised date's rule is written under its view name; closed classes get none.
    rules = definition["policy"]["columns"]
    assert rules["visits.birth_year"] == {"rule": ["dimension"]}
    assert rules["visits.cost"] == {
        "rule": ["aggregate_only", "filter"],
        "aggregates": ["COUNT", "SUM", "AVG"],
    }
    assert "visits.id_card" not in rules and "visits.consent" not in rules
    staged, columns, exclude = sources_of(definition)["visits"]
    assert staged == "table" and columns["id_card"] == "col_3" and exclude == []
    assert "k_threshold: 10" in policy_text


def test_owner_form_excluded_columns_are_listed_as_left_out(app_context: None) -> None:
    form = owner_forms.form_of_import(imported_view())
    fields = posted(form, **{"t0-c2-exclude": "on", "consent": ""})
    definition = owner_forms.definition_of_form(
        owner_forms.form_of_post(fields, dataset="clinic"), dataset="clinic"
    )
    table = definition["tables"]["table"]
    assert table["exclude"] == ["col_3"]
    assert "col_3" not in {c["source"] for c in table["columns"].values()}
    assert "consent" not in definition


def test_owner_form_two_columns_of_one_name_are_refused(app_context: None) -> None:
    form = owner_forms.form_of_import(imported_view())
    fields = posted(form, **{"t0-c0-name": "same", "t0-c1-name": "same"})
    with pytest.raises(InvalidRequest) as refused:
        owner_forms.definition_of_form(
            owner_forms.form_of_post(fields, dataset="clinic"), dataset="clinic"
        )
    assert refused.value.details["field"] == "t0-c1"
    assert "same" in refused.value.message and "两列" in refused.value.message


def test_owner_form_numbers_that_do_not_parse_reach_the_definition_as_typed(
    app_context: None,
) -> None:
    form = owner_forms.form_of_import(imported_view())
    fields = posted(form, **{"t0-max_rows": "many", "t0-c3-low": "ten"})
    definition = owner_forms.definition_of_form(
        owner_forms.form_of_post(fields, dataset="clinic"), dataset="clinic"
    )
    assert definition["tables"]["table"]["max_rows_per_person"] == "many"
    assert definition["tables"]["table"]["columns"]["column_4"]["bounds"] == ["ten", 5000]


def test_use_chart_draws_a_step_per_day_of_use() -> None:
    grants = [
        {
            "id": "g1",
            "analyst": "analyst",
            "epsilon_total": 4.0,
            "use_over_time": [
                {"day": "2026-03-01", "epsilon": 1.0},
                {"day": "2026-03-03", "epsilon": 2.0},
            ],
        },
        {"id": "g2", "analyst": "analyst2", "epsilon_total": 10.0, "use_over_time": []},
    ]
    chart = use_chart(grants)
    assert chart is not None
    (line,) = chart["lines"]
    points = [tuple(map(float, p.split(","))) for p in line["points"].split()]
    xs, ys = zip(*points, strict=True)
    assert xs[0] == chart["x0"] and xs[-1] == chart["x1"]
    assert ys[0] == chart["y0"] and list(xs) == sorted(xs)
    assert len(set(ys)) == 3  # 0, 1 and 2 spent
    assert [t["value"] for t in chart["totals"]] == [4.0]
    assert use_chart(grants[1:]) is None
