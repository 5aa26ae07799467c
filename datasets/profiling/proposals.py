"""A proposed class and rule for every column of a profiled table, with its evidence.

The values decide first: a column whose sample holds identifiers is a direct
identifier whatever its name (``col_3`` of resident ID numbers), and a column
named ``phone`` that holds no phone number is judged by what it holds. The name
decides when the values cannot (too few to check, or a kind no detector knows,
such as passport numbers), and it is the main evidence for quasi-identifiers
(sex, age, birth date) and keys. Every proposal carries its evidence, worded in
both languages, and the bounds and categories it proposes are marked as read
from the data: the owner confirms each column before anything is published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date

from datasets.manifest import ColumnClass, ColumnType
from datasets.profiling.column_names import (
    DETECTORS_OF_KIND,
    DIRECT_IDENTIFIER_KINDS,
    QUASI_IDENTIFIER_KINDS,
    kind_of_name,
)
from datasets.profiling.detectors import Detection, evidence
from datasets.profiling.evidence import Evidence, percent
from datasets.profiling.profiles import ColumnProfile, ProfilingError, TableProfile

# A category list is proposed only if every category has at least this many rows:
# a rarer one would single people out in a released table.
MIN_CATEGORY_ROWS = 10
# Fewer sampled values than this cannot contradict what the name says.
MIN_CHECKED = 20
# Dates spanning this many years or more look like birth dates, not events.
BIRTH_DATE_SPAN_YEARS = 30
# Text this long on average is free text rather than a code or a label.
FREE_TEXT_LENGTH = 20
# Short text with at least this share of distinct values is a code (a key).
CODE_DISTINCT_SHARE = 0.5
SEX_WORDS = frozenset(
    {"男", "女", "男性", "女性", "未知", "其他", "未说明", "m", "f", "male", "female"}
)

NUMBERS = (ColumnType.INTEGER, ColumnType.FLOAT)
DATES = (ColumnType.DATE, ColumnType.TIMESTAMP)
STATISTICS = ("COUNT", "SUM", "AVG", "STDDEV", "VARIANCE")


@dataclass(frozen=True)
class ProposedValues:
    """Bounds and categories read from the data: shown to the owner only."""

    bounds: tuple[float, float] | None = None
    categories: tuple[str, ...] | None = None
    derived_from_data: bool = True


@dataclass(frozen=True)
class ColumnProposal:
    table: str
    column: str
    cls: ColumnClass
    type: ColumnType
    rules: tuple[str, ...]
    aggregates: tuple[str, ...]
    confidence: float  # 0 to 1
    evidence: tuple[Evidence, ...]
    derived: ProposedValues = field(default_factory=ProposedValues)

    @property
    def rule_key(self) -> str:
        """The column's key in a policy file (``table.column``)."""
        return f"{self.table}.{self.column}"

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "column": self.column,
            "class": self.cls.value,
            "type": self.type.value,
            "rule": list(self.rules),
            "aggregates": list(self.aggregates),
            "confidence": self.confidence,
            "evidence": [e.to_dict() for e in self.evidence],
            "bounds": list(self.derived.bounds) if self.derived.bounds else None,
            "categories": list(self.derived.categories) if self.derived.categories else None,
            "derived_from_data": self.derived.derived_from_data,
        }


@dataclass(frozen=True)
class _Verdict:
    cls: ColumnClass
    confidence: float
    evidence: tuple[Evidence, ...]


def propose_columns(
    profile: TableProfile, *, table: str, person_key: str | None = None
) -> list[ColumnProposal]:
    """A proposal for every column of ``profile``, in its order.

    ``person_key`` is the column the owner names as the privacy unit; without one,
    the first column whose name says it is a person's id (``patient_id``, 患者编号)
    and that holds no identifier is proposed.
    """
    if person_key is not None and profile.column(person_key) is None:
        raise ProfilingError(f"the table has no column {person_key!r} to be its person key")
    chosen = person_key if person_key is not None else _person_key_candidate(profile)
    return [
        _proposal(column, table=table, person_key=chosen, named_by_owner=person_key is not None)
        for column in profile.columns
    ]


def _person_key_candidate(profile: TableProfile) -> str | None:
    for column in profile.columns:
        if kind_of_name(column.name) != "person_key" or column.non_null == 0:
            continue
        if not any(d.significant for d in column.detections):
            return column.name
    return None


def _proposal(
    column: ColumnProfile, *, table: str, person_key: str | None, named_by_owner: bool
) -> ColumnProposal:
    verdict = _verdict(column, person_key=person_key, named_by_owner=named_by_owner)
    kind = column.inferred_type
    if verdict.cls is ColumnClass.DIRECT_IDENTIFIER or kind_of_name(column.name) == "postcode":
        kind = ColumnType.STRING  # an identifier or a code keeps its characters (0, X)
    rules, aggregates = _rules(verdict.cls, kind)
    return ColumnProposal(
        table=table,
        column=column.name,
        cls=verdict.cls,
        type=kind,
        rules=rules,
        aggregates=aggregates,
        confidence=round(verdict.confidence, 2),
        evidence=verdict.evidence,
        derived=_proposed_values(column, verdict.cls),
    )


def _verdict(column: ColumnProfile, *, person_key: str | None, named_by_owner: bool) -> _Verdict:
    kind = kind_of_name(column.name)
    found = _significant(column)
    if column.name == person_key:
        return _person_key(column, found, named_by_owner=named_by_owner)
    if found:
        return _identified(column, found, kind)
    if kind is not None and kind in DIRECT_IDENTIFIER_KINDS:
        named = _named_identifier(column, kind)
        if named is not None:
            return named
        return _prefixed(_by_values(column, None), _contradiction(column, kind))
    return _by_values(column, kind)


def _significant(column: ColumnProfile) -> list[Detection]:
    found = [d for d in column.detections if d.significant]
    # The strongest first; free text last, as it says least about the column itself.
    return sorted(found, key=lambda d: (d.detector == "free_text", -d.share))


def _person_key(column: ColumnProfile, found: list[Detection], *, named_by_owner: bool) -> _Verdict:
    reasons = [Evidence("owner.person_key")] if named_by_owner else [_name("person_key")]
    if column.non_null:
        reasons.append(
            Evidence("key.one_row_per_person" if column.unique else "key.rows_per_person")
        )
    reasons.extend(evidence(d) for d in found)
    return _Verdict(ColumnClass.PERSON_KEY, 1.0 if named_by_owner else 0.8, tuple(reasons))


def _identified(column: ColumnProfile, found: list[Detection], kind: str | None) -> _Verdict:
    reasons = [evidence(d) for d in found]
    strongest = found[0]
    confirms = kind is not None and strongest.detector in DETECTORS_OF_KIND.get(kind, ())
    if confirms and kind is not None:
        reasons.append(_name(kind))
    confidence = min(0.99, 0.6 + 0.4 * strongest.share + (0.1 if confirms else 0.0))
    return _Verdict(ColumnClass.DIRECT_IDENTIFIER, confidence, tuple(reasons))


def _named_identifier(column: ColumnProfile, kind: str) -> _Verdict | None:
    """A direct identifier by its name, unless the values say strongly otherwise."""
    if column.sampled < MIN_CHECKED:
        message = "name.unchecked" if column.sampled else "name.suggests"
        reasons = [Evidence(message, {"kind_id": f"kind.{kind}"})]
        if not column.readable:
            reasons.append(Evidence("values.unreadable"))
        elif not column.sampled:
            reasons.append(Evidence("values.empty"))
        return _Verdict(ColumnClass.DIRECT_IDENTIFIER, 0.6, tuple(reasons))
    if kind not in DETECTORS_OF_KIND:
        return _Verdict(ColumnClass.DIRECT_IDENTIFIER, 0.7, (_name(kind),))
    if kind in ("person_name", "address") and not _vocabulary(column):
        # No detector knows every name or address: free text of many values under
        # such a name stays an identifier; numbers, dates or a small vocabulary do not.
        return _Verdict(ColumnClass.DIRECT_IDENTIFIER, 0.6, (_name(kind),))
    return None


def _vocabulary(column: ColumnProfile) -> bool:
    """Values that cannot be names or addresses: not text, or a few repeated words."""
    if column.inferred_type is not ColumnType.STRING:
        return True
    return column.all_categories_known


def _contradiction(column: ColumnProfile, kind: str | None) -> Evidence:
    detectors = DETECTORS_OF_KIND.get(kind or "", ())
    share = sum(d.share for d in column.detections if d.detector in detectors)
    return Evidence(
        "name.contradicted",
        {"kind_id": f"kind.{kind}", "percent": percent(share), "sampled": column.sampled},
    )


def _by_values(column: ColumnProfile, kind: str | None) -> _Verdict:
    # Nothing to go by: kept off the views until the owner says what it is.
    if column.non_null == 0:
        return _Verdict(ColumnClass.DIRECT_IDENTIFIER, 0.3, (Evidence("values.empty"),))
    if not column.readable:
        return _Verdict(ColumnClass.DIRECT_IDENTIFIER, 0.3, (Evidence("values.unreadable"),))
    for decide in (_consent, _quasi_identifier, _key):
        verdict = decide(column, kind)
        if verdict is not None:
            return verdict
    return _by_type(column, kind)


def _consent(column: ColumnProfile, kind: str | None) -> _Verdict | None:
    if kind == "consent" and column.inferred_type is ColumnType.BOOLEAN:
        return _Verdict(ColumnClass.CONSENT, 0.8, (_name("consent"), Evidence("values.consent")))
    return None


def _quasi_identifier(column: ColumnProfile, kind: str | None) -> _Verdict | None:
    if kind in QUASI_IDENTIFIER_KINDS and _fits_quasi(column, kind):
        return _Verdict(ColumnClass.QUASI_IDENTIFIER, 0.8, (_name(kind or ""),))
    if kind != "event_date" and column.inferred_type in DATES and _spans_decades(column):
        return _Verdict(ColumnClass.QUASI_IDENTIFIER, 0.6, (Evidence("values.birth_dates"),))
    if column.inferred_type is ColumnType.STRING and _holds_sexes(column):
        return _Verdict(ColumnClass.QUASI_IDENTIFIER, 0.7, (Evidence("values.sexes"),))
    return None


def _fits_quasi(column: ColumnProfile, kind: str | None) -> bool:
    if column.inferred_type is ColumnType.BOOLEAN:
        return False
    if kind == "sex":
        return column.distinct <= 10
    if kind == "age":
        return column.inferred_type not in DATES
    return True


def _spans_decades(column: ColumnProfile) -> bool:
    low, high = column.derived.minimum, column.derived.maximum
    if not isinstance(low, date) or not isinstance(high, date):
        return False
    return high.year - low.year >= BIRTH_DATE_SPAN_YEARS


def _holds_sexes(column: ColumnProfile) -> bool:
    values = {c.value.strip().lower() for c in column.derived.top_categories}
    return column.all_categories_known and bool(values) and values <= SEX_WORDS


def _key(column: ColumnProfile, kind: str | None) -> _Verdict | None:
    if kind == "person_key":  # another column is the privacy unit: this one joins
        return _Verdict(ColumnClass.RECORD_KEY, 0.6, (_name("person_key"),))
    short = (column.mean_length or 0.0) < FREE_TEXT_LENGTH and kind != "free_text"
    keyish = column.inferred_type is ColumnType.INTEGER or (
        column.inferred_type is ColumnType.STRING and short
    )
    if column.unique and keyish:
        message = "values.unique" if column.distinct_exact else "values.unique_estimated"
        reasons = [Evidence(message)] + ([_name("record_key")] if kind == "record_key" else [])
        return _Verdict(
            ColumnClass.RECORD_KEY, 0.8 if kind == "record_key" else 0.6, tuple(reasons)
        )
    if kind == "record_key" and keyish and not column.all_categories_known:
        return _Verdict(ColumnClass.RECORD_KEY, 0.6, (_name("record_key"),))
    if column.inferred_type is ColumnType.STRING and _looks_like_codes(column, kind):
        return _Verdict(ColumnClass.RECORD_KEY, 0.4, (Evidence("values.many_codes"),))
    return None


def _looks_like_codes(column: ColumnProfile, kind: str | None) -> bool:
    length = column.mean_length or 0.0
    many = column.distinct >= CODE_DISTINCT_SHARE * column.non_null
    return kind != "free_text" and length < FREE_TEXT_LENGTH and many and column.non_null >= 50


def _by_type(column: ColumnProfile, kind: str | None) -> _Verdict:
    kind_of_column = column.inferred_type
    if kind_of_column in NUMBERS:
        return _Verdict(ColumnClass.SENSITIVE, 0.7, (Evidence("values.numbers"),))
    if kind_of_column is ColumnType.BOOLEAN:
        return _Verdict(ColumnClass.SENSITIVE, 0.7, (Evidence("values.booleans"),))
    if kind_of_column in DATES:
        return _Verdict(ColumnClass.SENSITIVE, 0.7, (Evidence("values.event_dates"),))
    long_text = (column.mean_length or 0.0) >= FREE_TEXT_LENGTH or kind == "free_text"
    if not long_text and (column.all_categories_known or _repeats(column)):
        reasons = [Evidence("values.categories", {"distinct": column.distinct})]
        if _proposed_categories(column) is None and column.all_categories_known:
            reasons.append(Evidence("values.rare_categories", {"min_rows": MIN_CATEGORY_ROWS}))
        return _Verdict(
            ColumnClass.CATEGORY, 0.7 if column.all_categories_known else 0.5, tuple(reasons)
        )
    return _Verdict(
        ColumnClass.SENSITIVE, 0.6, (Evidence("values.free_text", {"sampled": column.sampled}),)
    )


def _repeats(column: ColumnProfile) -> bool:
    """Few values, each seen several times: labels, even if too many to list."""
    return column.distinct_exact and column.distinct * 10 <= column.non_null


def _prefixed(verdict: _Verdict, reason: Evidence) -> _Verdict:
    return replace(verdict, evidence=(reason, *verdict.evidence))


def _name(kind: str) -> Evidence:
    return Evidence("name.suggests", {"kind_id": f"kind.{kind}"})


# --- rules, bounds and categories --------------------------------------------------------


def _rules(cls: ColumnClass, kind: ColumnType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if cls in (ColumnClass.DIRECT_IDENTIFIER, ColumnClass.CONSENT):
        return ("forbidden",), ()
    if cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY):
        return ("join_key",), ("COUNT",)
    if cls in (ColumnClass.QUASI_IDENTIFIER, ColumnClass.CATEGORY):
        return ("dimension",), ("COUNT",)
    if kind in NUMBERS:
        return ("aggregate_only", "filter"), STATISTICS
    if kind is ColumnType.BOOLEAN:
        return ("aggregate_only", "filter"), ("COUNT", "SUM", "AVG")  # a rate: its mean
    return ("aggregate_only", "filter"), ("COUNT",)


def _proposed_values(column: ColumnProfile, cls: ColumnClass) -> ProposedValues:
    if cls not in (ColumnClass.SENSITIVE, ColumnClass.QUASI_IDENTIFIER, ColumnClass.CATEGORY):
        return ProposedValues()
    bounds = _bounds(column)
    if column.inferred_type in DATES and cls is ColumnClass.QUASI_IDENTIFIER:
        bounds = _year_bounds(column)  # a quasi-identifying date is generalised to its year
    return ProposedValues(bounds=bounds, categories=_proposed_categories(column))


def _bounds(column: ColumnProfile) -> tuple[float, float] | None:
    low, high = column.derived.minimum, column.derived.maximum
    if column.inferred_type not in NUMBERS or kind_of_name(column.name) == "postcode":
        return None
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if not math.isfinite(low) or not math.isfinite(high):
        return None
    return rounded_outward(float(low), float(high))


def _year_bounds(column: ColumnProfile) -> tuple[float, float] | None:
    low, high = column.derived.minimum, column.derived.maximum
    if isinstance(low, date) and isinstance(high, date):
        return float(low.year), float(high.year)
    return None


def rounded_outward(low: float, high: float) -> tuple[float, float]:
    """``low`` and ``high`` widened to round numbers at the span's order of magnitude
    (12.3 and 48,765 become 0 and 50,000), so the bounds do not give away the extremes."""
    span = high - low or abs(high) or 1.0
    exponent = math.floor(math.log10(span))
    step = 10.0**exponent
    digits = max(0, -exponent)  # 0.1 steps: round away the float noise of 0.30000000000000004
    return round(math.floor(low / step) * step, digits), round(
        math.ceil(high / step) * step, digits
    )


def _proposed_categories(column: ColumnProfile) -> tuple[str, ...] | None:
    if column.inferred_type is not ColumnType.STRING or not column.all_categories_known:
        return None
    categories = column.derived.top_categories
    if min(c.rows for c in categories) < MIN_CATEGORY_ROWS:
        return None
    return tuple(sorted(c.value for c in categories))
