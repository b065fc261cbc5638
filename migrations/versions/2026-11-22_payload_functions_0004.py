"""SQL functions behind numeric payload indexes (app/db/functions.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from app.db import functions

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in functions.CREATE:
        op.execute(statement)


def downgrade() -> None:
    for statement in functions.DROP:
        op.execute(statement)
