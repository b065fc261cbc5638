"""waypoint_ts_epoch matches its regular expression once per call, not once per group.

The planner pulled the match up into the outer query, so each `m[...]` ran it again: about
1 ms a call, which a filter with a datetime range on a declared field paid per row (and an
index build per point). The function returns the same values, so the indexes built on
waypoint_ts_min/max stay valid; downgrading keeps the faster body.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from app.db import functions

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in functions.CREATE:  # CREATE OR REPLACE: only waypoint_ts_epoch changed
        op.execute(statement)


def downgrade() -> None:
    pass
