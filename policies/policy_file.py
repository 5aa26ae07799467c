"""Column rules: what each column may be used for, from the owner's policy file.

A rule is one or more of ``forbidden``, ``join_key``, ``aggregate_only``,
``filter`` and ``dimension`` (Clean Rooms' analysis rules, SCQL's column
control lists). Defaults come from each column's class in the manifest; the
owner's YAML file overrides them per column; a grant may only narrow them.
The policy's version is the SHA-256 of its canonical content, recorded on
every job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from datasets.manifest import ColumnClass, Manifest
from policies.decision import PolicyError
from policies.output_checks import DisclosureRules, RulesError

POLICY_DIR = Path(__file__).parent / "files"
AGGREGATE_NAMES = frozenset(
    {"COUNT", "SUM", "AVG", "STDDEV", "VARIANCE", "MIN", "MAX", "MEDIAN", "QUANTILE"}
)
STATISTICS = frozenset({"COUNT", "SUM", "AVG", "STDDEV", "VARIANCE"})


class Rule(StrEnum):
    FORBIDDEN = "forbidden"
    JOIN_KEY = "join_key"
    AGGREGATE_ONLY = "aggregate_only"
    FILTER = "filter"
    DIMENSION = "dimension"


class Use(StrEnum):
    """Where a column reference stands in a query."""

    JOIN = "join"  # an equality between columns in JOIN ... ON (or WHERE)
    AGGREGATE = "aggregate"  # inside an aggregate function
    FILTER = "filter"  # compared in WHERE or HAVING
    GROUP = "group"  # a GROUP BY key
    OUTPUT = "output"  # a released column, or an ORDER BY of one


class PolicyFileError(PolicyError):
    """The owner's policy file is not valid; the message names the place."""


@dataclass(frozen=True)
class ColumnRule:
    rules: frozenset[Rule]
    aggregates: frozenset[str] = field(default=frozenset())

    @property
    def forbidden(self) -> bool:
        return Rule.FORBIDDEN in self.rules or not self.rules

    def allowed_aggregates(self) -> frozenset[str]:
        if self.forbidden:
            return frozenset()
        implied = {"COUNT"} if self.rules & {Rule.DIMENSION, Rule.JOIN_KEY} else set()
        return frozenset(self.aggregates | implied)

    def allows(self, use: Use, aggregate: str | None = None) -> bool:
        if self.forbidden:
            return False
        if use is Use.AGGREGATE:
            return aggregate in self.allowed_aggregates()
        if use is Use.JOIN:
            return Rule.JOIN_KEY in self.rules
        if use is Use.FILTER:
            return bool(self.rules & {Rule.FILTER, Rule.DIMENSION})
        return Rule.DIMENSION in self.rules  # GROUP, OUTPUT

    def describe(self) -> str:
        if self.forbidden:
            return "forbidden"
        names = ", ".join(sorted(r.value for r in self.rules))
        aggregates = ", ".join(sorted(self.allowed_aggregates()))
        return f"{names}" + (f" (aggregates: {aggregates})" if aggregates else "")

    def narrowed_by(self, other: ColumnRule) -> ColumnRule:
        """The stricter of the two: what both allow."""
        if self.forbidden or other.forbidden:
            return FORBIDDEN
        return ColumnRule(self.rules & other.rules, self.aggregates & other.aggregates)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": sorted(r.value for r in self.rules), "aggregates": sorted(self.aggregates)}


FORBIDDEN = ColumnRule(frozenset({Rule.FORBIDDEN}))


def default_rule(cls: ColumnClass) -> ColumnRule:
    if cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY):
        return ColumnRule(frozenset({Rule.JOIN_KEY}), frozenset({"COUNT"}))
    if cls in (ColumnClass.CATEGORY, ColumnClass.QUASI_IDENTIFIER):
        return ColumnRule(frozenset({Rule.DIMENSION}), frozenset({"COUNT"}))
    if cls is ColumnClass.SENSITIVE:
        return ColumnRule(frozenset({Rule.AGGREGATE_ONLY}), STATISTICS)
    return FORBIDDEN  # direct identifiers, consent flags, anything unknown


@dataclass(frozen=True)
class DatasetPolicy:
    dataset: str
    k_threshold: int
    central_authorization_purposes: frozenset[str]
    # "table.column" (as the view names it) -> rule; every view column is here.
    columns: Mapping[str, ColumnRule]
    version: str
    # Output checks of masked releases (ACRO's defaults unless the owner sets them).
    disclosure: DisclosureRules = field(default_factory=DisclosureRules)

    def rule(self, table: str, column: str) -> ColumnRule:
        return self.columns.get(f"{table.lower()}.{column.lower()}", FORBIDDEN)

    def narrowed(
        self, overrides: Mapping[str, Any], opened: list[str] | None = None
    ) -> DatasetPolicy:
        """A grant's view of the policy: its own rules can only narrow the owner's."""
        columns = dict(self.columns)
        for name, raw in overrides.items():
            if name not in columns:
                raise PolicyFileError(f"grant rules: {name} is not a column of {self.dataset}")
            columns[name] = columns[name].narrowed_by(_parse_rule(raw, f"grant rules: {name}"))
        if opened:
            unknown = [n for n in opened if n not in columns]
            if unknown:
                raise PolicyFileError(f"grant columns: {', '.join(unknown)} unknown")
            columns = {n: (r if n in opened else FORBIDDEN) for n, r in columns.items()}
        content = {name: rule.to_dict() for name, rule in sorted(columns.items())}
        return replace(self, columns=columns, version=_version(self.version, content))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "version": self.version,
            "k_threshold": self.k_threshold,
            "central_authorization_purposes": sorted(self.central_authorization_purposes),
            "disclosure": self.disclosure.to_dict(),
            "columns": {name: rule.to_dict() for name, rule in sorted(self.columns.items())},
        }


def _version(*parts: Any) -> str:
    return hashlib.sha256(
        json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def _parse_rule(raw: Any, where: str) -> ColumnRule:
    if not isinstance(raw, dict):
        raise PolicyFileError(f"{where}: expected a mapping with 'rule' (and 'aggregates')")
    unknown_keys = set(raw) - {"rule", "aggregates"}
    if unknown_keys:
        raise PolicyFileError(f"{where}: unknown keys {', '.join(sorted(unknown_keys))}")
    names = raw.get("rule")
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise PolicyFileError(f"{where}: 'rule' must be a rule name or a list of them")
    try:
        rules = frozenset(Rule(n) for n in names)
    except ValueError as error:
        raise PolicyFileError(
            f"{where}: unknown rule; rules are {', '.join(r.value for r in Rule)}"
        ) from error
    if Rule.FORBIDDEN in rules and len(rules) > 1:
        raise PolicyFileError(f"{where}: 'forbidden' stands alone")
    aggregates = raw.get("aggregates", [])
    if not isinstance(aggregates, list) or not all(isinstance(a, str) for a in aggregates):
        raise PolicyFileError(f"{where}: 'aggregates' must be a list of function names")
    upper = frozenset(a.upper() for a in aggregates)
    if upper - AGGREGATE_NAMES:
        raise PolicyFileError(
            f"{where}: unknown aggregates {', '.join(sorted(upper - AGGREGATE_NAMES))}; "
            f"known: {', '.join(sorted(AGGREGATE_NAMES))}"
        )
    if Rule.AGGREGATE_ONLY in rules and not upper:
        raise PolicyFileError(f"{where}: aggregate_only needs the list of aggregates it allows")
    return ColumnRule(rules, upper)


def parse_policy(text: str, manifest: Manifest, *, source: str = "policy") -> DatasetPolicy:
    """Validate an owner's policy file against the manifest."""
    raw = _policy_mapping(text, source)
    if raw.get("dataset") != manifest.name:
        raise PolicyFileError(f"{source}: 'dataset' must be {manifest.name}")
    k = raw.get("k_threshold", 10)
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise PolicyFileError(f"{source}: k_threshold must be a whole number of at least 2")
    central = raw.get("central_authorization") or {}
    purposes = central.get("purposes", []) if isinstance(central, dict) else None
    if not isinstance(purposes, list) or not all(isinstance(p, str) for p in purposes):
        raise PolicyFileError(f"{source}: central_authorization.purposes must be a list")
    columns = _column_rules(manifest, raw.get("columns") or {}, source)
    try:
        disclosure = DisclosureRules.parse(
            raw.get("disclosure"), threshold=k, where=f"{source}: disclosure"
        )
    except RulesError as error:
        raise PolicyFileError(str(error)) from error
    return DatasetPolicy(
        dataset=manifest.name,
        k_threshold=k,
        central_authorization_purposes=frozenset(purposes),
        columns=columns,
        version=_version(text),
        disclosure=disclosure,
    )


def _policy_mapping(text: str, source: str) -> dict[Any, Any]:
    """The policy file's top-level mapping, holding no key a policy does not know."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyFileError(f"{source}: not valid YAML{where}") from error
    if not isinstance(raw, dict):
        raise PolicyFileError(f"{source}: expected a mapping at the top")
    unknown = set(raw) - {
        "dataset",
        "k_threshold",
        "central_authorization",
        "columns",
        "disclosure",
    }
    if unknown:
        raise PolicyFileError(f"{source}: unknown keys {', '.join(sorted(unknown))}")
    return raw


def _column_rules(
    manifest: Manifest, overrides: Mapping[Any, Any], source: str
) -> dict[str, ColumnRule]:
    """Every view column's rule: its class's default unless the owner's file sets one."""
    columns: dict[str, ColumnRule] = {}
    for table in manifest.tables:
        for column in table.columns:
            view = column.view_column()
            columns[f"{table.name}.{view.name}"] = default_rule(view.cls)
    negative_list = {
        f"{t.name}.{c.name}" for t in manifest.tables for c in t.columns if c.forbidden
    }
    for name, rule in overrides.items():
        key = str(name).lower()
        if key in negative_list:
            raise PolicyFileError(
                f"{source}: columns.{name} is on the negative list (负面清单) and never opens"
            )
        if key not in columns:
            raise PolicyFileError(f"{source}: columns.{name} is not a view column")
        columns[key] = _parse_rule(rule, f"{source}: columns.{name}")
    return columns


def load_policy(manifest: Manifest, folder: Path = POLICY_DIR) -> DatasetPolicy:
    path = folder / f"{manifest.name}.yaml"
    if not path.exists():
        raise PolicyFileError(f"no policy file for {manifest.name} ({path.name})")
    return parse_policy(path.read_text(encoding="utf-8"), manifest, source=path.name)
