"""Autogenerate's difference tuples as one readable line each."""

from __future__ import annotations

from typing import Any


def _columns(obj: Any) -> str:
    names = [getattr(c, "name", str(c)) for c in getattr(obj, "columns", [])]
    if not names and hasattr(obj, "expressions"):
        names = [str(e) for e in obj.expressions]
    return ", ".join(names)


def _table_of(obj: Any) -> str:
    table = getattr(obj, "table", None)
    return getattr(table, "name", "?")


def _kind(constraint: Any) -> str:
    name = type(constraint).__name__
    return {
        "UniqueConstraint": "unique constraint",
        "ForeignKeyConstraint": "foreign key",
        "CheckConstraint": "check constraint",
        "PrimaryKeyConstraint": "primary key",
    }.get(name, name)


def _fk(fk: Any) -> str:
    target = fk.elements[0].target_fullname.rsplit(".", 1)[0] if fk.elements else "?"
    ondelete = f" ON DELETE {fk.ondelete}" if fk.ondelete else ""
    return f"{fk.name or '(unnamed)'} on {_table_of(fk)} ({_columns(fk)}) -> {target}{ondelete}"


def _describe_one(diff: tuple[Any, ...]) -> str:
    op = diff[0]
    if op in ("add_table", "remove_table"):
        table = diff[1]
        return (
            f"missing table {table.name}"
            if op == "add_table"
            else f"table {table.name} is in the database but not in the models"
        )
    if op in ("add_column", "remove_column"):
        _, _, table, column = diff
        where = f"{table}.{column.name}"
        if op == "add_column":
            return f"missing column {where} ({column.type})"
        return f"column {where} is in the database but not in the models"
    if op in ("add_index", "remove_index"):
        index = diff[1]
        what = f"index {index.name} on {_table_of(index)} ({_columns(index)})"
        return f"missing {what}" if op == "add_index" else f"{what} is not in the models"
    if op in ("add_fk", "remove_fk"):
        what = f"foreign key {_fk(diff[1])}"
        return f"missing {what}" if op == "add_fk" else f"{what} is not in the models"
    if op in ("add_constraint", "remove_constraint"):
        c = diff[1]
        what = f"{_kind(c)} {c.name} on {_table_of(c)} ({_columns(c)})"
        return f"missing {what}" if op == "add_constraint" else f"{what} is not in the models"
    if op.startswith("modify_"):
        _, _, table, column, _, existing, wanted = diff
        attribute = op.removeprefix("modify_")
        if attribute == "nullable":
            existing = "NULL" if existing else "NOT NULL"
            wanted = "NULL" if wanted else "NOT NULL"
        return (
            f"{table}.{column}: {attribute} is {existing} in the database, {wanted} in the models"
        )
    return f"{op}: {diff[1:]!r}"


def describe_diffs(diffs: list[Any]) -> list[str]:
    """Flatten ``compare_metadata``'s output (column changes come grouped) into lines."""
    lines: list[str] = []
    for diff in diffs:
        if isinstance(diff, list):
            lines.extend(_describe_one(tuple(d)) for d in diff)
        else:
            lines.append(_describe_one(tuple(diff)))
    return lines
