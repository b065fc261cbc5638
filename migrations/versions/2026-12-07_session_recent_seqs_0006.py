"""Resumable sessions record the seqs returned since their state was stored, apart.

A session's engine reads results ahead and stores them in its state, so the pages served
from that read-ahead leave `state` and `emitted_seqs` as they are and only append their
seqs to `recent_seqs` (a short, uncompressed list): the per-page UPDATE no longer rewrites
the two large columns. Existing rows start with an empty list, which is what they mean.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "resumable_queries",
        sa.Column("recent_seqs", sa.LargeBinary, nullable=False, server_default=sa.text("''")),
    )


def downgrade() -> None:
    # Folding the recent seqs into `emitted_seqs` needs the application's codec: stop the
    # sessions that have any, rather than leave them able to return those points again.
    op.execute("DELETE FROM resumable_queries WHERE length(recent_seqs) > 0")
    op.drop_column("resumable_queries", "recent_seqs")
