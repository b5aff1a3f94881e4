"""The dialect-specific SQL of the filter language, in one place.

Filters are compiled to dialect-neutral expressions; the few operations whose SQL differs by
backend are ``DialectOp`` elements, rendered at statement compile time by one function per
dialect:

- ``json_kind``: the JSON type of the value at a path, as a normalized predicate;
- ``json_value`` / ``json_number``: the value at a path as text or boolean, or compared as a
  number (only evaluated under a guard on its JSON type, so a cast never fails on a row
  holding another type);
- ``json_contains``: PostgreSQL ``@>`` (``JSON_CONTAINS`` on MySQL, ``archon_json_contains``
  on SQLite, a function the engine registers);
- ``text_compare`` / ``text_in``: text compared by code point, without PostgreSQL's locale
  collation and without MySQL's PAD SPACE (where ``'a' = 'a '``);
- ``like_text``: text for LIKE in a case-sensitive collation.

JSON paths are rendered as literals: their parts are checked identifiers, never values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

# \Z, not $: "$" also matches before a final newline, which PostgreSQL would then trim.
_PATH_PART = re.compile(r"\A[A-Za-z_][A-Za-z0-9_\-]*\Z")
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# JSON type names per dialect, for the kinds the filter language distinguishes.
_KINDS: dict[str, dict[str, tuple[str, ...]]] = {
    "postgresql": {
        "string": ("string",),
        "number": ("number",),
        "boolean": ("boolean",),
        "object": ("object",),
        "array": ("array",),
    },
    "mysql": {
        "string": ("STRING",),
        "number": ("INTEGER", "UNSIGNED INTEGER", "DOUBLE", "DECIMAL"),
        "boolean": ("BOOLEAN",),
        "object": ("OBJECT",),
        "array": ("ARRAY",),
        "integer": ("INTEGER", "UNSIGNED INTEGER"),
    },
    "sqlite": {
        "string": ("text",),
        "number": ("integer", "real"),
        "boolean": ("true", "false"),
        "object": ("object",),
        "array": ("array",),
    },
}
_NULL_KIND = {"postgresql": "null", "mysql": "NULL", "sqlite": "null"}


class DialectOp(ColumnElement[Any]):
    """An operation rendered per dialect; ``operation`` picks it, ``args`` are its SQL operands."""

    _traverse_internals = [
        ("operation", InternalTraversal.dp_string),
        ("args", InternalTraversal.dp_clauseelement_tuple),
        ("path", InternalTraversal.dp_string_list),
        ("kind", InternalTraversal.dp_string),
    ]

    def __init__(
        self,
        op: str,
        args: Sequence[ColumnElement[Any]],
        *,
        path: Sequence[str] = (),
        kind: str = "",
        type_: Any = None,
    ) -> None:
        if not all(_PATH_PART.match(part) for part in path):
            raise ValueError(f"invalid JSON path {path!r}")
        self.operation, self.args, self.path, self.kind = op, tuple(args), list(path), kind
        self.type = sa.types.to_instance(type_ or sa.Boolean())
        # A predicate, not a boolean value: without this, dialects lacking a native boolean
        # render ``WHERE (source_id = ?) = 1``, which no index can serve.
        self._is_implicitly_boolean = type_ is None


class JsonPath:
    """Typed access to the value at ``path`` inside a JSON column (the whole value when empty)."""

    def __init__(self, column: ColumnElement[Any], path: Sequence[str]) -> None:
        self.column, self.path = column, tuple(path)

    def _op(self, op: str, *args: ColumnElement[Any], kind: str = "", type_: Any = None) -> Any:
        return DialectOp(op, (self.column, *args), path=self.path, kind=kind, type_=type_)

    def absent(self) -> ColumnElement[bool]:
        """True where the value is missing, SQL NULL or JSON null (never unknown)."""
        return self._op("json_kind", kind="null")

    def is_kind(self, kind: str) -> ColumnElement[bool]:
        """Whether the value is a JSON ``string``, ``number``, ``boolean``, ``object`` or
        ``array`` (or any of a comma-separated list of them)."""
        return self._op("json_kind", kind=kind)

    def typed(self, kind: str) -> ColumnElement[Any]:
        """The value as ``string``, ``boolean`` or ``boolean_number`` (0/1); numbers are
        compared with ``compare_number``."""
        types = {"string": sa.Text(), "boolean": sa.Boolean()}
        return self._op("json_value", kind=kind, type_=types.get(kind, sa.Integer()))

    def compare_number(self, op: str, value: int | float) -> ColumnElement[bool]:
        """``value <op> number`` for a JSON number, exact for integers on every backend."""
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            # The same number as an integer: compared exactly, never through a double.
            value = int(value)
        type_ = sa.BigInteger() if isinstance(value, int) else sa.Float()
        args = [sa.bindparam(None, value, type_=type_)]
        if isinstance(value, int) and float(value) != value:  # no double equals it: its
            near = float(value)  # neighbours decide against a double (MySQL's DOUBLE branch)
            other = math.nextafter(near, math.inf if near < value else -math.inf)
            args += [sa.bindparam(None, min(near, other)), sa.bindparam(None, max(near, other))]
        return self._op("json_number", *args, kind=op)

    def contains(self, json_text: str) -> ColumnElement[bool]:
        """PostgreSQL ``@>``: whether the value contains the JSON document ``json_text``."""
        return self._op("json_contains", sa.bindparam(None, json_text, type_=sa.Text()))

    def guard(
        self, branches: dict[str, ColumnElement[bool]], otherwise: Any = None
    ) -> ColumnElement[bool]:
        """NULL when absent; else the branch of the value's JSON kind; else ``otherwise``."""
        whens: list[tuple[ColumnElement[bool], Any]] = [(self.absent(), sa.null())]
        whens += [(self.is_kind(kind), expr) for kind, expr in branches.items()]
        fallback = sa.null() if otherwise is None else otherwise
        return sa.type_coerce(sa.case(*whens, else_=fallback), sa.Boolean())


def text_compare(left: ColumnElement[Any], op: str, value: str) -> ColumnElement[bool]:
    """``left <op> value`` for text, by code point on every backend."""
    bind = sa.bindparam(None, value, type_=sa.Text())
    return DialectOp("text_compare", (left, bind), kind=op)


def text_in(left: ColumnElement[Any], values: Sequence[str]) -> ColumnElement[bool]:
    """``left IN values`` for text, exact on every backend (non-empty ``values``)."""
    bind = sa.bindparam(None, list(values), type_=sa.Text(), expanding=True)
    return DialectOp("text_in", (left, bind))


def like_text(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    """``expr`` as text in a case-sensitive collation, ready for LIKE."""
    return DialectOp("like_text", (expr,), type_=sa.Text())


# -- rendering --------------------------------------------------------------------------------

Render = Callable[[DialectOp], ColumnElement[Any]]


def _pg_path(e: DialectOp) -> Any:
    return sa.literal_column("'{" + ",".join(e.path) + "}'")


def _pg_doc(e: DialectOp) -> Any:
    return e.args[0].op("#>")(_pg_path(e))


def _pg_text(e: DialectOp) -> Any:
    return e.args[0].op("#>>")(_pg_path(e))


def _pg(e: DialectOp) -> ColumnElement[Any]:
    if e.operation == "json_kind":
        return _kind_in(sa.func.jsonb_typeof(_pg_doc(e)), "postgresql", e.kind)
    if e.operation == "json_value":
        text = _pg_text(e)
        casts: dict[str, Any] = {"string": sa.Text(), "boolean": sa.Boolean()}
        if e.kind == "boolean_number":
            return sa.cast(sa.cast(text, sa.Boolean()), sa.Integer())
        return sa.cast(text, casts[e.kind])
    if e.operation == "json_number":
        number = sa.cast(_pg_text(e), sa.Numeric())
        return number.op(_COMPARE[e.kind], is_comparison=True)(e.args[1])
    if e.operation == "json_contains":
        return _pg_doc(e).op("@>")(sa.cast(e.args[1], postgresql.JSONB()))
    if e.operation == "like_text":
        return sa.cast(e.args[0], sa.Text())
    if e.operation == "text_in":
        return e.args[0].in_(e.args[1])  # deterministic collations compare equal bytes only
    left = e.args[0] if e.kind in ("eq", "ne") else _c_collation(e.args[0])
    return left.op(_COMPARE[e.kind], is_comparison=True)(e.args[1])


def _c_collation(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.cast(expr, sa.Text()).collate("C")


def _dollar_path(e: DialectOp) -> Any:
    """The path as MySQL and SQLite spell it: ``'$."a"."b"'``."""
    return sa.literal_column("'$" + "".join(f'."{part}"' for part in e.path) + "'")


def _mysql(e: DialectOp) -> ColumnElement[Any]:
    doc = sa.func.json_extract(e.args[0], _dollar_path(e)) if e.path else e.args[0]
    if e.operation == "json_kind":
        return _kind_in(sa.func.json_type(doc), "mysql", e.kind)
    if e.operation == "json_value":
        if e.kind == "string":
            return sa.func.json_unquote(doc)
        truth = sa.func.json_unquote(doc) == sa.literal_column("'true'")
        return sa.case((truth, 1), else_=0) if e.kind == "boolean_number" else truth
    if e.operation == "json_number":
        # DOUBLE is exact only to 2**53: integers compare as DECIMAL, other numbers as DOUBLE.
        # Integers are told by their digits: MariaDB's JSON_TYPE calls 1e-05 an INTEGER.
        compare = _COMPARE[e.kind]
        text = sa.func.json_unquote(doc)
        integer = sa.cast(text, sa.Numeric(65, 0))
        double = doc.op("+")(sa.literal_column("0e0"))
        return sa.case(
            (
                text.op("REGEXP")(sa.literal_column("'^-?[0-9]+$'")),
                integer.op(compare, is_comparison=True)(e.args[1]),
            ),
            else_=_double_compare(double, e),
        )
    if e.operation == "json_contains":
        args = (e.args[0], e.args[1], _dollar_path(e)) if e.path else (e.args[0], e.args[1])
        return sa.func.json_contains(*args)
    return _mysql_text(e)


def _double_compare(double: Any, e: DialectOp) -> Any:
    if len(e.args) == 2:
        return double.op(_COMPARE[e.kind], is_comparison=True)(e.args[1])
    below, above = e.args[2:]  # the doubles either side of an integer no double equals
    above_it, below_it = double >= above, double <= below
    return {"eq": sa.false(), "ne": sa.true(), "gt": above_it, "gte": above_it,
            "lt": below_it, "lte": below_it}[e.kind]  # fmt: skip


def _mysql_text(e: DialectOp) -> ColumnElement[Any]:
    left, right = e.args
    exact = sa.cast(left, mysql.BINARY())
    if e.operation == "text_in":
        return sa.and_(left.in_(right), exact.in_(right))
    if e.kind in ("eq", "ne"):
        # `=` can use an index; the binary comparison settles PAD SPACE ties ('a' = 'a ').
        equal = sa.and_(left == right, exact == right)
        return equal if e.kind == "eq" else sa.not_(equal)
    return exact.op(_COMPARE[e.kind], is_comparison=True)(right)


def _sqlite(e: DialectOp) -> ColumnElement[Any]:
    path = _dollar_path(e)
    column = e.args[0]
    if e.operation == "json_kind":
        return _kind_in(sa.func.json_type(column, path), "sqlite", e.kind)
    if e.operation == "json_value":
        return sa.func.json_extract(column, path)
    if e.operation == "json_number":
        number = sa.func.json_extract(column, path)
        return number.op(_COMPARE[e.kind], is_comparison=True)(e.args[1])
    if e.operation == "json_contains":
        doc = column.op("->")(path) if e.path else column
        return sa.func.archon_json_contains(doc, e.args[1])
    if e.operation == "like_text":
        return column
    if e.operation == "text_in":
        return column.in_(e.args[1])  # BINARY collation: exact already
    return column.op(_COMPARE[e.kind], is_comparison=True)(e.args[1])


def _kind_in(type_name: Any, dialect: str, kind: str) -> ColumnElement[bool]:
    if kind == "null":
        null_name: Any = sa.literal_column(f"'{_NULL_KIND[dialect]}'")
        return sa.or_(type_name.is_(None), type_name == null_name)
    names: list[Any] = [
        sa.literal_column(f"'{name}'") for k in kind.split(",") for name in _KINDS[dialect][k]
    ]
    return type_name.in_(names) if len(names) > 1 else type_name == names[0]


_RENDERERS: dict[str, Render] = {
    "postgresql": _pg,
    "mysql": _mysql,
    "mariadb": _mysql,
    "sqlite": _sqlite,
}


@compiles(DialectOp)
def _render(element: DialectOp, compiler: SQLCompiler, **kw: Any) -> str:
    name = compiler.dialect.name
    renderer = _RENDERERS.get(name)
    if renderer is None:
        raise NotImplementedError(f"filters are not implemented for the {name!r} dialect")
    if name in ("mysql", "mariadb") and element.operation == "like_text":
        # CONVERT(x USING utf8mb4) has no SQLAlchemy construct; JSON text may come back in
        # another collation, and LIKE must be case-sensitive.
        inner = compiler.process(element.args[0], **kw)
        return f"(CONVERT({inner} USING utf8mb4) COLLATE utf8mb4_bin)"
    # Parenthesized: the element is one operand wherever it appears (NOT, AND, comparisons).
    return f"({compiler.process(renderer(element), **kw)})"
