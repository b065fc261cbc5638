"""Datetimes are read with one regular expression match per call, without groups.

waypoint_ts_epoch matched once per group: the planner pulled the match up into the outer
query, so each `m[...]` ran it again, about 1 ms a call, which a filter with a datetime
range on a declared field paid per row (and an index build per point). The new
waypoint_datetime_parts gives the groups `regexp_match` gave, from a match without groups
and fixed positions; the datetime filters' exact test uses it too. Values are unchanged, so
the indexes built on waypoint_ts_min/max stay valid; downgrading keeps the new functions
(0004's downgrade drops them all).

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
    for statement in functions.CREATE:  # CREATE OR REPLACE; waypoint_datetime_parts is new
        op.execute(statement)


def downgrade() -> None:
    pass
