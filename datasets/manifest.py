"""What a dataset holds and how each column may be used.

A manifest is the owner's declaration: tables, columns, the class of every
column (which decides its default rule), bounds and public category lists
used by differential privacy, the privacy unit and the consent column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ColumnClass(StrEnum):
    PERSON_KEY = "person_key"  # the privacy unit; pseudonymised in every view
    RECORD_KEY = "record_key"  # a row id (visit_id, lab_id); pseudonymised in every view
    DIRECT_IDENTIFIER = "direct_identifier"  # negative list (负面清单): never in a view
    QUASI_IDENTIFIER = "quasi_identifier"  # generalised in the view where a masking says so
    SENSITIVE = "sensitive"  # a measurement; only aggregated
    CATEGORY = "category"  # public category list: safe group key
    CONSENT = "consent"  # per-person consent flag (个人授权)


class ColumnType(StrEnum):
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    DATE = "date"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"


class Masking(StrEnum):
    NONE = "none"
    DROP = "drop"  # negative list: the column never enters a view
    PSEUDONYMISE = "pseudonymise"  # keyed HMAC, key per dataset and grant
    YEAR = "year"  # a date generalised to its year (birth_date -> birth_year)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    cls: ColumnClass
    description: str  # Chinese first: the catalog shows it
    description_en: str = ""
    bounds: tuple[float, float] | None = None
    categories: tuple[str, ...] | None = None

    @property
    def masking(self) -> Masking:
        if self.cls is ColumnClass.DIRECT_IDENTIFIER:
            return Masking.DROP
        if self.cls in (ColumnClass.PERSON_KEY, ColumnClass.RECORD_KEY):
            return Masking.PSEUDONYMISE
        if self.cls is ColumnClass.QUASI_IDENTIFIER and self.type is ColumnType.DATE:
            return Masking.YEAR
        return Masking.NONE

    @property
    def forbidden(self) -> bool:
        """On the negative list: may appear nowhere in a query or a result."""
        return self.masking is Masking.DROP

    @property
    def view_name(self) -> str:
        """The column's name in a job's view (a generalised date becomes *_year)."""
        if self.masking is Masking.YEAR:
            return self.name.removesuffix("_date") + "_year"
        return self.name

    def view_column(self) -> Column:
        """The column as a job's view holds it."""
        if self.masking is Masking.YEAR:
            low, high = self.bounds or (1900, 2030)
            return Column(
                name=self.view_name,
                type=ColumnType.INTEGER,
                cls=ColumnClass.QUASI_IDENTIFIER,
                description=self.description + "(年份)",
                description_en=self.description_en + " (year)",
                bounds=(low, high),
            )
        if self.masking is Masking.PSEUDONYMISE:
            return Column(
                name=self.name,
                type=ColumnType.STRING,
                cls=self.cls,
                description=self.description + "(假名)",
                description_en=self.description_en + " (pseudonym)",
            )
        return self


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    description_en: str
    columns: tuple[Column, ...]
    # Default bound on rows one person contributes to a dp query over this table.
    max_rows_per_person: int = 1

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        for column in self.columns:
            if column.name == lowered:
                return column
        return None

    def view_columns(self) -> tuple[Column, ...]:
        return tuple(c.view_column() for c in self.columns if not c.forbidden)

    def view_column(self, name: str) -> Column | None:
        lowered = name.lower()
        for column in self.view_columns():
            if column.name == lowered:
                return column
        return None


@dataclass(frozen=True)
class Manifest:
    name: str
    title: str
    title_en: str
    privacy_unit: str
    tables: tuple[Table, ...]
    # "table.column" of the per-person consent flag, and the purposes it covers.
    consent_column: str | None = None
    consent_purposes: tuple[str, ...] = field(default=("research",))

    def table(self, name: str) -> Table | None:
        lowered = name.lower()
        for table in self.tables:
            if table.name == lowered:
                return table
        return None

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def to_dict(self) -> dict[str, object]:
        """The catalog entry: schema with each column's class and rule, never data."""
        return {
            "name": self.name,
            "title": self.title,
            "title_en": self.title_en,
            "privacy_unit": self.privacy_unit,
            "tables": [
                {
                    "name": t.name,
                    "description": t.description,
                    "description_en": t.description_en,
                    "max_rows_per_person": t.max_rows_per_person,
                    "columns": [
                        {
                            "name": c.name,
                            "type": c.type.value,
                            "class": c.cls.value,
                            "masking": c.masking.value,
                            "view_name": None if c.forbidden else c.view_name,
                            "description": c.description,
                            "description_en": c.description_en,
                            "bounds": list(c.bounds) if c.bounds else None,
                            "categories": list(c.categories) if c.categories else None,
                        }
                        for c in t.columns
                    ],
                }
                for t in self.tables
            ],
        }
