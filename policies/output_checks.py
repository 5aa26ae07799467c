"""ACRO-style output checks for masked-mode releases, and sketches for differencing.

The rules (owner-configurable in the policy file's ``disclosure:`` section,
ACRO's defaults otherwise), each implemented once here and called by the SQL
path and the Python path alike (:func:`row_suppression`, :func:`dropped_row`):

- threshold: every row and cell stands for at least k distinct persons (10);
  a SUM or a mean counts only the persons of non-zero value (a sum of
  indicators is a count in disguise; a mean times the row's count is its sum);
- zeros are disclosive (a structural zero says "no one");
- dominance (N, K): in a magnitude cell the N largest persons' contributions
  must stay below K of the total (2, 0.9): on the boundary a cell fails;
- p-percent: the total less the two largest contributions must be more than
  p of the largest (0.1), or the second largest could estimate it: on the
  boundary a cell fails;
- secondary suppression: a cell from which a suppressed cell of its row could
  be computed (SUM = mean × count) is blanked with it;
- a model summary needs at least ``min_dof`` residual degrees of freedom (10);
- counts may be rounded to a base (off by default; the owner may set 5).

Every rule a row or cell fails is reported (:class:`Suppression`), to auditors.

Differencing: each released (and each suppressed) row carries an invertible
Bloom lookup table (IBLT) of its persons. Subtracting two sketches and peeling
the result recovers a set difference whenever it is small, so the worker can
tell when a new row, less a row already out (in this job or an earlier release
under the grant), or a total less the released cells of a breakdown, isolates
fewer than k persons: those outputs are held for an auditor. The sketches never
leave the sandbox; they hold 64-bit hashes of keyed pseudonyms, not values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from policies.decision import Phrase, PolicyError

# --- the rules ---------------------------------------------------------------------------


class RulesError(PolicyError):
    """A ``disclosure:`` section that is not valid; the message names the place."""


@dataclass(frozen=True)
class DisclosureRules:
    threshold: int = 10
    dominance_n: int = 2
    dominance_k: float = 0.9
    p_percent: float = 0.1
    min_dof: int = 10
    zeros_disclosive: bool = True
    round_base: int = 0  # 0: counts are not rounded
    differencing: bool = True
    # Release a Python job's outputs on what its helper declared, unverified. Off:
    # the analyst's code could forge every count the checks read.
    trust_python_declarations: bool = False

    def with_threshold(self, k: int) -> DisclosureRules:
        """The stricter threshold of the policy's and a grant's."""
        return DisclosureRules(**{**self.__dict__, "threshold": max(self.threshold, k)})

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def parse(cls, raw: Any, *, threshold: int, where: str) -> DisclosureRules:
        if raw is None:
            return cls(threshold=threshold)
        if not isinstance(raw, Mapping):
            raise RulesError(f"{where}: expected a mapping")
        known = {
            "dominance",
            "p_percent",
            "min_dof",
            "zeros_disclosive",
            "round_base",
            "differencing",
            "trust_python_declarations",
        }
        unknown = set(raw) - known
        if unknown:
            raise RulesError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        dominance = raw.get("dominance") or {}
        if not isinstance(dominance, Mapping) or set(dominance) - {"n", "k"}:
            raise RulesError(f"{where}.dominance: expected a mapping of n and k")
        rules = cls(
            threshold=threshold,
            dominance_n=_number(dominance.get("n", 2), f"{where}.dominance.n", int, 1, 10),
            dominance_k=_number(dominance.get("k", 0.9), f"{where}.dominance.k", float, 0.0, 1.0),
            p_percent=_number(raw.get("p_percent", 0.1), f"{where}.p_percent", float, 0.0, 1.0),
            min_dof=_number(raw.get("min_dof", 10), f"{where}.min_dof", int, 0, 10_000),
            zeros_disclosive=_flag(raw.get("zeros_disclosive", True), f"{where}.zeros_disclosive"),
            round_base=_number(raw.get("round_base", 0), f"{where}.round_base", int, 0, 100),
            differencing=_flag(raw.get("differencing", True), f"{where}.differencing"),
            trust_python_declarations=_flag(
                raw.get("trust_python_declarations", False), f"{where}.trust_python_declarations"
            ),
        )
        return rules


def _number(value: Any, where: str, kind: type, low: float, high: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RulesError(f"{where}: expected a number from {low} to {high}")
    if kind is int and not float(value).is_integer():
        raise RulesError(f"{where}: expected a whole number")
    if not low <= value <= high:
        raise RulesError(f"{where}: expected a number from {low} to {high}")
    return kind(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RulesError(f"{where}: expected true or false")
    return value


# --- cell rules: one implementation, for the SQL path and the Python path alike ----------

# The rules, in the order a cell's failures are reported.
THRESHOLD = "threshold"
ZERO = "zero"
DOMINANCE = "dominance"
P_PERCENT = "p_percent"
# Blanked because a suppressed cell of the same row could be computed from it.
SECONDARY = "secondary"
RULE_ORDER = (THRESHOLD, ZERO, DOMINANCE, P_PERCENT, SECONDARY)
# The largest persons' contributions each magnitude cell hands to the rules: the
# greatest ``dominance.n`` an owner may set.
TOP_CONTRIBUTIONS = 10
# Within this relative distance of a boundary a cell counts as on it, and fails:
# 0.9 of a total is 0.9 whatever the rounding of floats said.
BOUNDARY = 1e-9


class CellKind(StrEnum):
    KEY = "key"  # a group key: the row's label, never suppressed on its own
    COUNT = "count"  # exactly one COUNT
    MAGNITUDE = "magnitude"  # holds a SUM or a mean
    OTHER = "other"  # any other aggregate expression


@dataclass(frozen=True)
class Contributions:
    """One magnitude aggregate of a cell: its persons' largest |contributions| and their sum.

    Contributions are persons' totals of ``|value|`` in the cell, not rows'.
    """

    largest: tuple[float, ...]
    total: float

    @classmethod
    def of(cls, largest: Iterable[Any], total: Any) -> Contributions:
        return cls(
            tuple(sorted((abs(float(v)) for v in largest or []), reverse=True)),
            float(total or 0.0),
        )


@dataclass(frozen=True)
class Cell:
    """What the rules read of one cell of an output row.

    ``contributors``: the distinct persons behind the cell; for a SUM or a mean,
    those with a non-zero value (a sum of indicators is a count in disguise, and
    a mean times the row's count is its sum). ``reads``: the columns its
    aggregates read, which tie it to the other cells of its row.
    """

    kind: CellKind
    value: Any = None
    contributors: int | None = None
    contributions: tuple[Contributions, ...] = ()
    reads: frozenset[str] = frozenset()


def dominance_fails(top: Sequence[float], total: float, rules: DisclosureRules) -> bool:
    """The N largest persons' contributions make up K of the cell's total or more.

    Safe only below K: a cell on the boundary fails.
    """
    if total <= 0:
        return False
    largest = sorted((abs(t) for t in top), reverse=True)[: rules.dominance_n]
    return sum(largest) >= rules.dominance_k * total * (1 - BOUNDARY)


def p_percent_fails(top: Sequence[float], total: float, rules: DisclosureRules) -> bool:
    """The second largest contributor could estimate the largest within p of its value.

    The total less the two largest must be more than p of the largest: a cell
    on the boundary fails.
    """
    largest = sorted((abs(t) for t in top), reverse=True)
    if not largest or largest[0] <= 0:
        return False
    second = largest[1] if len(largest) > 1 else 0.0
    return total - largest[0] - second <= rules.p_percent * largest[0] * (1 + BOUNDARY)


def small(persons: int, rules: DisclosureRules) -> list[str]:
    """The rules a number of persons (a row's or a cell's) fails: below k, or none at all.

    With ``zeros_disclosive: false`` the owner has said that no one is safe to show.
    """
    if persons == 0:
        return [THRESHOLD, ZERO] if rules.zeros_disclosive else []
    return [THRESHOLD] if persons < rules.threshold else []


def cell_failures(cell: Cell, rules: DisclosureRules) -> list[str]:
    """Every rule one cell fails, in :data:`RULE_ORDER`; a group key fails none."""
    if cell.kind is CellKind.KEY:
        return []
    failures = small(cell.contributors, rules) if cell.contributors is not None else []
    if cell.kind is CellKind.COUNT and cell.value == 0 and rules.zeros_disclosive:
        failures = failures if ZERO in failures else [*failures, ZERO]
    if any(dominance_fails(c.largest, c.total, rules) for c in cell.contributions):
        failures.append(DOMINANCE)
    if any(p_percent_fails(c.largest, c.total, rules) for c in cell.contributions):
        failures.append(P_PERCENT)
    return failures


def row_suppression(cells: Sequence[Cell], rules: DisclosureRules) -> dict[int, list[str]]:
    """Which cells of one kept row are blanked, each with every rule it fails.

    Secondary suppression: a suppressed cell must not be computable from the
    cells left beside it (a SUM is its mean times a count, a mean its SUM over
    a count, a count its SUM over its mean). So every other cell of the row
    that is not a group key or a count and reads a column a suppressed cell
    reads is blanked too; counts alone give none of them back.
    """
    primary = {i: f for i, cell in enumerate(cells) if (f := cell_failures(cell, rules))}
    suppressed = dict(primary)
    for index, cell in enumerate(cells):
        if index in primary or cell.kind in (CellKind.KEY, CellKind.COUNT):
            continue
        if any(cells[j].reads & cell.reads for j in primary):
            suppressed[index] = [SECONDARY]
    return suppressed


def dropped_row(persons: int, cells: Sequence[Cell], rules: DisclosureRules) -> list[str]:
    """Why a whole row is dropped (fewer than k persons), with every rule its cells fail
    besides, so an auditor sees every reason; empty: the row is kept."""
    reasons = small(persons, rules)
    if not reasons:
        return []
    failed = set(reasons).union(*(cell_failures(cell, rules) for cell in cells))
    return [rule for rule in RULE_ORDER if rule in failed]


@dataclass(frozen=True)
class Suppression:
    """One blanked cell or dropped row of an output, with every rule it failed.

    For auditors only: a rule says something of the value (a zero, a dominant
    person), so the analyst's result carries only how many were suppressed.
    """

    table: str
    keys: tuple[tuple[str, Any], ...]
    rules: tuple[str, ...]
    row: int | None = None  # the index among the released rows; None: the row was dropped
    column: str | None = None  # None: the whole row

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "row": self.row,
            "column": self.column,
            "keys": [[name, value] for name, value in self.keys],
            "rules": list(self.rules),
        }


@dataclass(frozen=True)
class LargestShare:
    """The largest single person's share of a released magnitude cell's total, and where.

    For auditors only, beside what they already read (the row's keys, the column):
    the share is rounded to a whole percent, never a contribution itself.
    """

    share: float
    table: str
    keys: tuple[tuple[str, Any], ...]
    column: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": round(self.share, 2),
            "table": self.table,
            "keys": [[name, value] for name, value in self.keys],
            "column": self.column,
        }


def cell_largest_share(cell: Cell) -> float | None:
    """The largest person's share of the cell's total (None: no magnitude in the cell)."""
    shares = [c.largest[0] / c.total for c in cell.contributions if c.largest and c.total > 0]
    return min(1.0, max(shares)) if shares else None


def larger_share(
    found: LargestShare | None,
    cell: Cell,
    *,
    table: str,
    keys: tuple[tuple[str, Any], ...],
    column: str,
) -> LargestShare | None:
    """``found``, or this cell's largest share where it is larger."""
    share = cell_largest_share(cell)
    if share is None or (found is not None and found.share >= share):
        return found
    return LargestShare(share, table, keys, column)


def tally(suppressions: Iterable[Suppression]) -> dict[str, int]:
    """How many rows and cells each rule suppressed (a cell failing two counts in both)."""
    counts: dict[str, int] = {}
    for one in suppressions:
        for rule in one.rules:
            counts[rule] = counts.get(rule, 0) + 1
    return {rule: counts[rule] for rule in RULE_ORDER if rule in counts}


def rounded(count: Any, base: int) -> Any:
    if not base or isinstance(count, bool) or not isinstance(count, int | float):
        return count
    return int(base * round(float(count) / base))


# --- sketches of persons: invertible Bloom lookup tables ---------------------------------

PARTITIONS = 3
CELLS_PER_PARTITION = 21
CELLS = PARTITIONS * CELLS_PER_PARTITION
MASK = (1 << 64) - 1


def _md5_lower(text: str) -> int:
    """DuckDB's md5_number_lower: the digest's last 8 bytes, little-endian."""
    digest = hashlib.md5(text.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "little")


def check_of(key: int) -> int:
    return _md5_lower(str(key))


def person_hashes(person: str) -> tuple[int, int]:
    """(key, check) of a pseudonym, as the SQL of :data:`KEY_SQL` and :data:`CHECK_SQL`."""
    key = _md5_lower(person)
    return key, check_of(key)


# The same in DuckDB, over a column ``p`` (the person) and then ``h`` (its key).
KEY_SQL = "md5_number_lower(CAST(p AS VARCHAR))"
CHECK_SQL = "md5_number_lower(CAST(h AS VARCHAR))"
CELL_SQL = (
    f"j * {CELLS_PER_PARTITION} + ((h >> (8 * j)::UTINYINT) % {CELLS_PER_PARTITION})::INTEGER"
)


def cell_of(key: int, partition: int) -> int:
    return partition * CELLS_PER_PARTITION + ((key >> (8 * partition)) % CELLS_PER_PARTITION)


@dataclass
class Sketch:
    """An IBLT: per cell, how many persons, the XOR of their keys and of their checks."""

    count: list[int] = field(default_factory=lambda: [0] * CELLS)
    keys: list[int] = field(default_factory=lambda: [0] * CELLS)
    checks: list[int] = field(default_factory=lambda: [0] * CELLS)

    @classmethod
    def of(cls, persons: Iterable[str]) -> Sketch:
        sketch = cls()
        for person in set(persons):
            sketch.add(*person_hashes(person))
        return sketch

    @classmethod
    def from_cells(cls, cells: Iterable[Mapping[str, Any]]) -> Sketch:
        """From the runner's list of {"i": cell, "c": count, "k": key xor, "s": check xor}."""
        sketch = cls()
        for cell in cells:
            index = int(cell["i"])
            if not 0 <= index < CELLS:
                raise ValueError("sketch cell out of range")
            sketch.count[index] = int(cell["c"])
            sketch.keys[index] = int(cell["k"]) & MASK
            sketch.checks[index] = int(cell["s"]) & MASK
        return sketch

    def add(self, key: int, check: int, sign: int = 1) -> None:
        for partition in range(PARTITIONS):
            index = cell_of(key, partition)
            self.count[index] += sign
            self.keys[index] ^= key
            self.checks[index] ^= check

    def minus(self, other: Sketch) -> Sketch:
        return Sketch(
            [a - b for a, b in zip(self.count, other.count, strict=True)],
            [a ^ b for a, b in zip(self.keys, other.keys, strict=True)],
            [a ^ b for a, b in zip(self.checks, other.checks, strict=True)],
        )

    def to_list(self) -> list[list[int]]:
        return [self.count, self.keys, self.checks]

    @classmethod
    def from_list(cls, raw: Sequence[Sequence[int]]) -> Sketch:
        count, keys, checks = (list(map(int, part)) for part in raw)
        if not len(count) == len(keys) == len(checks) == CELLS:
            raise ValueError("a sketch has the wrong size")
        return cls(count, keys, checks)

    def peel(self) -> tuple[int, int] | None:
        """Sizes (only in self, only in other) of the difference this sketch holds, if it
        can be recovered; None when it is too large to peel (then it is not small)."""
        count, keys, checks = list(self.count), list(self.keys), list(self.checks)
        plus = minus = 0
        progress = True
        while progress:
            progress = False
            for index in range(CELLS):
                if count[index] not in (1, -1):
                    continue
                key = keys[index]
                # A pure cell holds exactly one person: its check is its key's.
                if checks[index] != check_of(key):
                    continue
                if not any(cell_of(key, p) == index for p in range(PARTITIONS)):
                    continue
                sign = count[index]
                if sign > 0:
                    plus += 1
                else:
                    minus += 1
                check = checks[index]
                for partition in range(PARTITIONS):
                    cell = cell_of(key, partition)
                    count[cell] -= sign
                    keys[cell] ^= key
                    checks[cell] ^= check
                progress = True
        if any(count) or any(keys) or any(checks):
            return None
        return plus, minus


# --- differencing ------------------------------------------------------------------------


@dataclass(frozen=True)
class SketchedRow:
    """One row of an output as the checks see it (kept inside the sandbox)."""

    table: str
    keys: tuple[tuple[str, Any], ...]  # the row's group key columns and values
    persons: int
    sketch: Sketch
    released: bool
    job: str | None = None  # an earlier job's id; None: this job

    def to_json(self) -> dict[str, Any]:
        """As stored with its job (``jobs.disclosure_sketches``); the job is the row's."""
        return {
            "table": self.table,
            "keys": [list(k) for k in self.keys],
            "persons": self.persons,
            "sketch": self.sketch.to_list(),
            "released": self.released,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, job: str) -> SketchedRow:
        return cls(
            table=raw["table"],
            keys=tuple((k, v) for k, v in raw["keys"]),
            persons=raw["persons"],
            sketch=Sketch.from_list(raw["sketch"]),
            released=raw["released"],
            job=job,
        )

    def where(self) -> str:
        place = ", ".join(f"{name}={value}" for name, value in self.keys) or "all rows"
        origin = f"job {self.job} " if self.job else ""
        return f"{origin}output {self.table} ({place})"


@dataclass(frozen=True)
class Isolation:
    rule: str
    persons: int
    new: SketchedRow
    other: SketchedRow
    detail: Phrase


def isolations(
    new: Sequence[SketchedRow], earlier: Sequence[SketchedRow], threshold: int
) -> list[Isolation]:
    """Where a released row, less another row or the released cells of a breakdown,
    leaves fewer than ``threshold`` (but some) persons."""
    found: list[Isolation] = []
    released_new = [r for r in new if r.released]
    out = released_new + [r for r in earlier if r.released]
    # 1. Nested pairs: a new released row and any released row differing by < k persons.
    for index, row in enumerate(released_new):
        for other in out[index + 1 :]:
            gap = abs(row.persons - other.persons)
            if not 0 < gap < threshold:
                continue
            sizes = row.sketch.minus(other.sketch).peel()
            if sizes is not None and min(sizes) == 0 and 0 < max(sizes) < threshold:
                found.append(
                    Isolation(
                        "masked.differencing",
                        max(sizes),
                        row,
                        other,
                        Phrase(
                            "masked.differencing.detail",
                            "one row less the other isolates fewer than the threshold",
                        ),
                    )
                )
    # 2. Suppressed rows recovered from a total or marginal less a breakdown's released rows.
    suppressed = [r for r in new if not r.released] + [r for r in earlier if not r.released]
    tables: dict[tuple[str | None, str], list[SketchedRow]] = {}
    for row in [*new, *earlier]:
        tables.setdefault((row.job, row.table), []).append(row)
    for hidden in suppressed:
        breakdown = [r for r in tables[(hidden.job, hidden.table)] if r.released]
        for total in out:
            if (total.job, total.table) == (hidden.job, hidden.table):
                continue
            if hidden.job is not None and total.job is not None:
                continue  # both already out before this job: judged then
            parts = _under(total.keys, breakdown)
            remainder = total.sketch
            for part in parts:
                remainder = remainder.minus(part.sketch)
            sizes = remainder.peel()
            if sizes is not None and sizes[1] == 0 and 0 < sizes[0] < threshold:
                found.append(
                    Isolation(
                        "masked.suppressed_cell_recoverable",
                        sizes[0],
                        hidden,
                        total,
                        Phrase(
                            "masked.suppressed_cell_recoverable.detail",
                            "a total less the released cells of a breakdown recovers a "
                            "suppressed row",
                        ),
                    )
                )
    return found


@dataclass(frozen=True)
class RowSize:
    """An earlier release's row as the differencing checks see it before reading its
    sketch: where it is, its group keys and how many persons it holds."""

    ref: int  # where its sketch is stored
    job: str
    table: str
    keys: tuple[tuple[str, Any], ...]
    persons: int
    released: bool


def rows_to_compare(
    new: Sequence[SketchedRow], earlier: Sequence[RowSize], threshold: int
) -> set[int]:
    """The earlier rows whose sketches ``isolations`` needs to judge ``new``.

    Sizes alone rule the rest out, exactly: a sketch difference that peels to
    (only in one, only in the other) = (a, b) has a − b equal to the difference
    of the persons counts, so a pair whose counts differ by 0 or by ``threshold``
    or more cannot isolate, nor can a total less a breakdown's parts whose counts
    leave 0, or ``threshold`` or more, persons. Same findings, far fewer sketches
    read (tests/unit/policies/test_output_checks.py proves the equality).
    """
    needed: set[int] = set()
    released_new = [r for r in new if r.released]
    released_earlier = [r for r in earlier if r.released]
    # 1. Nested pairs: a new released row and an earlier released row.
    for fresh in released_new:
        for other in released_earlier:
            if 0 < abs(fresh.persons - other.persons) < threshold:
                needed.add(other.ref)
    # 2a. A suppressed row of this job, recovered from an earlier total less this job's
    #     released cells of its table.
    for hidden in (r for r in new if not r.released):
        cells = [r for r in released_new if r.table == hidden.table]
        for total in released_earlier:
            if 0 < total.persons - _parts_persons(total.keys, cells) < threshold:
                needed.add(total.ref)
    # 2b. An earlier suppressed row, recovered from a new total less the released cells
    #     of the earlier row's table.
    breakdowns: dict[tuple[str, str], list[RowSize]] = {}
    for stored in released_earlier:
        breakdowns.setdefault((stored.job, stored.table), []).append(stored)
    for suppressed in (r for r in earlier if not r.released):
        parts = breakdowns.get((suppressed.job, suppressed.table), [])
        for new_total in released_new:
            if 0 < new_total.persons - _parts_persons(new_total.keys, parts) < threshold:
                needed.add(suppressed.ref)
                needed.update(r.ref for r in parts)
    return needed


# A row of a breakdown: sketched (this job's, or read back) or known by its size only.
_Row = TypeVar("_Row", SketchedRow, RowSize)


def _parts_persons(keys: tuple[tuple[str, Any], ...], breakdown: Sequence[_Row]) -> int:
    """Persons in the breakdown's rows that fall under a total's keys."""
    return sum(r.persons for r in _under(keys, breakdown))


def _under(keys: tuple[tuple[str, Any], ...], breakdown: Sequence[_Row]) -> list[_Row]:
    """The breakdown's rows that fall under a total's keys: equal on every key column the
    two share (a total without keys, or on other columns, takes them all)."""
    shared = dict(keys)
    return [
        r
        for r in breakdown
        if all(dict(r.keys).get(k) == v for k, v in shared.items() if k in dict(r.keys))
    ]
