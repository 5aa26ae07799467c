"""The words an owner's definition is made of, for the pages and the API to offer:
column classes, types, rules, aggregates, disclosure defaults, and the wording of a
proposal's evidence. The portal reads them here, not from ``datasets`` or ``policies``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasets.manifest import Column, ColumnClass, ColumnType
from datasets.profiling.evidence import Evidence
from policies.output_checks import DisclosureRules
from policies.policy_file import AGGREGATE_NAMES, Rule

CLASSES = tuple(c.value for c in ColumnClass)
TYPES = tuple(t.value for t in ColumnType)
RULES = tuple(r.value for r in Rule)
FORBIDDEN = Rule.FORBIDDEN.value
# In the order the forms show them.
AGGREGATES = ("COUNT", "SUM", "AVG", "STDDEV", "VARIANCE", "MIN", "MAX", "MEDIAN", "QUANTILE")
assert set(AGGREGATES) == AGGREGATE_NAMES
# Classes whose columns never open in a view: no rule is written for them.
CLOSED_CLASSES = frozenset({ColumnClass.DIRECT_IDENTIFIER.value, ColumnClass.CONSENT.value})
DIRECT_IDENTIFIER = ColumnClass.DIRECT_IDENTIFIER.value
CONSENT = ColumnClass.CONSENT.value
STRING = ColumnType.STRING.value


@dataclass(frozen=True)
class DisclosureDefaults:
    threshold: int
    dominance_n: int
    dominance_k: float
    p_percent: float
    round_base: int
    zeros_disclosive: bool
    differencing: bool


def disclosure_defaults() -> DisclosureDefaults:
    """The output checks' defaults (ACRO's), which a definition's ``disclosure`` overrides."""
    rules = DisclosureRules()
    return DisclosureDefaults(
        threshold=rules.threshold,
        dominance_n=rules.dominance_n,
        dominance_k=rules.dominance_k,
        p_percent=rules.p_percent,
        round_base=rules.round_base,
        zeros_disclosive=rules.zeros_disclosive,
        differencing=rules.differencing,
    )


def view_name(name: str, cls: str, kind: str) -> str:
    """The column's name in a job's view, where its rule is written (a generalised date
    becomes ``*_year``); its name as given when the class or type is not known."""
    try:
        column = Column(name=name, type=ColumnType(kind), cls=ColumnClass(cls), description=name)
    except ValueError:
        return name
    return column.view_name


def evidence_text(evidence: Mapping[str, Any], language: str) -> str:
    """A proposal's piece of evidence (its message id and params) in ``language``."""
    worded = evidence.get("text_zh") if language.startswith("zh") else evidence.get("text")
    if worded:
        return str(worded)
    found = Evidence(str(evidence.get("message_id", "")), dict(evidence.get("params") or {}))
    return found.text(language)
