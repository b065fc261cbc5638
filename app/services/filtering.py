"""The services' one door to the filter package (parsing and compiling filters)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def compile_filter_sql(node: Any) -> sa.ColumnElement[bool]:
    """A WHERE clause over `points` for a filter AST."""
    from app.filters import compile_sql

    return compile_sql(node)
