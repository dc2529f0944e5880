"""A column that holds one of an enum's values, checked by the database itself.

On SQLite the column is a VARCHAR with a CHECK constraint on the table. On PostgreSQL
it is a domain over VARCHAR with the same check (migration 0006): a table's CHECK
constraints are compiled again for every statement that writes a row of it, even
when the statement leaves the column alone, while a domain's check is compiled once
per connection and evaluated only where a value is assigned to the column (on the
runs a worker starts and finishes, a tenth less of PostgreSQL's CPU: docs/benchmarks.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Dialect, String, TypeDecorator
from sqlalchemy.dialects.postgresql import DOMAIN

LENGTH = 16


def _check(values: tuple[str, ...]) -> str:
    """A domain's check that its value is one of `values`."""
    return "VALUE IN (" + ", ".join(f"'{value}'" for value in values) + ")"


class Choice(TypeDecorator[StrEnum]):
    """One of `enum`'s values: the domain `name` on PostgreSQL, else a VARCHAR whose
    CHECK constraint is named after `name` (`ck_<table>_<name>`)."""

    impl = String(LENGTH)
    cache_ok = True

    def __init__(self, enum: type[StrEnum], name: str) -> None:
        super().__init__()
        self.enum = enum
        self.name = name

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(member.value for member in self.enum)

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            domain = DOMAIN(self.name, String(LENGTH), check=_check(self.values))
            return dialect.type_descriptor(domain)
        return self.impl_instance

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def literal_processor(self, dialect: Dialect) -> Any:
        # A value written into the SQL as a quoted string (the domain has no renderer).
        quote = String(LENGTH).literal_processor(dialect)  # type: ignore[no-untyped-call]
        return lambda value: quote(self.enum(value).value)

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)

    @property
    def python_type(self) -> type[StrEnum]:
        return self.enum
