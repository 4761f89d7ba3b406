"""Validation of SQL that users supply (sync `where` filters, ad-hoc audience queries).

User SQL is untrusted. It is parsed with sqlglot and accepted only when it is a single read-only expression
or SELECT over the relations and columns it may see. Accepted SQL is re-rendered from the parsed tree, so
comments and trailing text never reach the warehouse. The engine also runs it on a connection with DuckDB's
external access disabled (see `syncs.warehouse`): a plain SELECT can otherwise read files.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

DIALECT = "duckdb"

# Statements and clauses that write, reach outside the warehouse or change the session.
_FORBIDDEN_NODES: tuple[type[exp.Expression], ...] = (
    exp.Alter,
    exp.Attach,
    exp.Command,
    exp.Copy,
    exp.Create,
    exp.Delete,
    exp.Describe,
    exp.Detach,
    exp.Drop,
    exp.Export,
    exp.Insert,
    exp.Install,
    exp.Into,
    exp.LoadData,
    exp.Merge,
    exp.Pragma,
    exp.ReadCSV,
    exp.ReadParquet,
    exp.Set,
    exp.Summarize,
    exp.Update,
    exp.Use,
)

# Functions sqlglot does not model as typed expressions but that are plain, side-effect-free scalars.
SAFE_UNTYPED_FUNCTIONS = frozenset(
    {
        "list_has_any",
        "list_has_all",
        "regexp_full_match",
        "starts_with",
        "ends_with",
        "strip_accents",
        "nullif",
        "epoch",
        "age",
    }
)


class UnsafeSQLError(ValueError):
    """User SQL that was rejected. The message says why without echoing the SQL (it may hold PII)."""


def validate_condition(condition: str, columns: Iterable[str]) -> str:
    """Validate a boolean filter over `columns` (no relations at all) and return it re-rendered for DuckDB."""
    tree = _parse_single(condition)
    if isinstance(tree, exp.Query):
        raise UnsafeSQLError("a filter must be a boolean expression over the model's columns, not a query")
    allowed = {c.lower() for c in columns}
    for node in tree.walk():
        _reject_forbidden(node)
        if isinstance(node, exp.Query | exp.Subquery | exp.Exists | exp.Table):
            raise UnsafeSQLError("a filter cannot contain subqueries or refer to other relations")
        if isinstance(node, exp.Column):
            if node.table:
                raise UnsafeSQLError(f"column {node.sql(DIALECT)} must not be qualified; use the bare column name")
            if node.name.lower() not in allowed:
                raise UnsafeSQLError(f"unknown column {node.name!r}; the model has: {', '.join(sorted(allowed))}")
        _check_function(node)
    return tree.sql(dialect=DIALECT)


def validate_query(query: str, allowed_relations: Iterable[str]) -> str:
    """Validate a single read-only SELECT over `allowed_relations` ("schema.table" or "table")."""
    tree = _parse_single(query)
    if not isinstance(tree, exp.Select | exp.SetOperation):
        raise UnsafeSQLError("only a single SELECT statement is allowed")
    allowed = {r.lower() for r in allowed_relations}
    cte_names = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        _reject_forbidden(node)
        if isinstance(node, exp.Table):
            _check_relation(node, allowed, cte_names)
        _check_function(node)
    return tree.sql(dialect=DIALECT)


def _parse_single(sql: str) -> exp.Expression:
    if not sql or not sql.strip():
        raise UnsafeSQLError("the SQL is empty")
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except ParseError as error:
        reason = error.errors[0]["description"] if error.errors else "syntax error"
        raise UnsafeSQLError(f"the SQL does not parse: {reason}") from None
    except SqlglotError:
        raise UnsafeSQLError("the SQL does not parse") from None
    if len(statements) != 1:
        raise UnsafeSQLError(f"exactly one statement is allowed, found {len(statements)}")
    return statements[0]


def _reject_forbidden(node: exp.Expression) -> None:
    if isinstance(node, _FORBIDDEN_NODES):
        raise UnsafeSQLError(f"{type(node).__name__.upper()} is not allowed in user SQL (read-only SELECT only)")


def _check_function(node: exp.Expression) -> None:
    if isinstance(node, exp.Anonymous) and node.name.lower() not in SAFE_UNTYPED_FUNCTIONS:
        raise UnsafeSQLError(f"function {node.name}() is not allowed in user SQL")


def _check_relation(table: exp.Table, allowed: set[str], cte_names: set[str]) -> None:
    if not isinstance(table.this, exp.Identifier):
        raise UnsafeSQLError("table functions and file paths are not allowed; select from a model by name")
    if table.catalog:
        raise UnsafeSQLError("relations must not name a catalog (attached database)")
    name = table.name.lower()
    qualified = f"{table.db}.{table.name}".lower() if table.db else name
    if not table.db and name in cte_names:
        return
    if qualified in allowed or (not table.db and any(r.split(".")[-1] == name for r in allowed)):
        return
    raise UnsafeSQLError(f"relation {qualified!r} is not allowed; allowed: {', '.join(sorted(allowed))}")
