"""The owner's policy file: defaults by class, validation with clear errors, narrowing."""

from __future__ import annotations

import pytest

from datasets.health_manifest import HEALTH
from policies.policy_file import (
    PolicyFileError,
    Rule,
    Use,
    load_policy,
    parse_policy,
)
from policies.sql_check import check_sql


def test_policy_defaults_follow_column_classes() -> None:
    policy = parse_policy("dataset: health\n", HEALTH)
    assert policy.rule("patients", "sex").rules == {Rule.DIMENSION}
    assert policy.rule("visits", "person_id").allows(Use.JOIN)
    assert not policy.rule("visits", "cost").allows(Use.GROUP)
    assert policy.rule("visits", "cost").allows(Use.AGGREGATE, "AVG")
    assert not policy.rule("visits", "cost").allows(Use.AGGREGATE, "MAX")
    assert policy.rule("patients", "id_card").forbidden
    assert policy.rule("patients", "consent_research").forbidden


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dataset: health\ncolumns:\n  visits.cost: {rule: sometimes}\n", "unknown rule"),
        ("dataset: health\ncolumns:\n  patients.name: {rule: dimension}\n", "negative list"),
        ("dataset: health\ncolumns:\n  visits.nope: {rule: dimension}\n", "not a view column"),
        ("dataset: health\ncolumns:\n  visits.cost: {rule: aggregate_only}\n", "needs the list"),
        ("dataset: health\ncolumns:\n  visits.cost: {rule: [forbidden, filter]}\n", "stands alone"),
        (
            "dataset: health\ncolumns:\n  visits.cost: {rule: filter, aggregates: [MODE]}\n",
            "unknown aggregates MODE",
        ),
        ("dataset: other\n", "'dataset' must be health"),
        ("dataset: health\nk_threshold: 1\n", "k_threshold"),
        ("dataset: health\ncolums: {}\n", "unknown keys colums"),
        ("dataset: [health\n", "not valid YAML at line"),
    ],
)
def test_policy_file_errors_name_the_place(text: str, message: str) -> None:
    with pytest.raises(PolicyFileError) as caught:
        parse_policy(text, HEALTH, source="health.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("health.yaml")


def test_policy_version_changes_with_content() -> None:
    one = parse_policy("dataset: health\n", HEALTH)
    two = parse_policy("dataset: health\nk_threshold: 11\n", HEALTH)
    assert one.version != two.version and len(one.version) == 64


def test_grant_narrowing_only_narrows() -> None:
    policy = load_policy(HEALTH)
    narrowed = policy.narrowed(
        {"visits.cost": {"rule": ["aggregate_only", "dimension"], "aggregates": ["AVG", "MAX"]}}
    )
    cost = narrowed.rule("visits", "cost")
    assert cost.rules == {Rule.AGGREGATE_ONLY}  # dimension was never the owner's to give
    assert cost.allowed_aggregates() == {"AVG"}
    assert narrowed.version != policy.version


def test_grant_columns_close_every_other_column() -> None:
    policy = load_policy(HEALTH).narrowed({}, ["visits.department", "visits.cost"])
    assert check_sql(
        "SELECT department, AVG(cost) FROM visits GROUP BY 1", HEALTH, mode="masked", policy=policy
    ).allowed
    refused = check_sql(
        "SELECT hospital, COUNT(*) FROM visits GROUP BY 1", HEALTH, mode="masked", policy=policy
    )
    assert [f.rule for f in refused.decision.findings] == ["column.forbidden"]


def test_grant_narrowing_rejects_unknown_columns() -> None:
    with pytest.raises(PolicyFileError):
        load_policy(HEALTH).narrowed({"visits.nope": {"rule": "filter"}})
