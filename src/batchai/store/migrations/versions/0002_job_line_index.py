"""a cluster's line of jobs as one index

The scheduler reads the head of each cluster's line (queued jobs by priority, then first come first
served). With an index on ``cluster_id`` alone, SQLite read every job the cluster ever had and sorted the
queued ones on each pass; this index gives the head directly. It also serves what ``ix_jobs_cluster_id``
did (a cluster's jobs), which goes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_line",
            ["cluster_id", "execution_state", sa.text("priority DESC"), "created_at", "id"],
            unique=False,
        )
        batch_op.drop_index("ix_jobs_cluster_id")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_cluster_id", ["cluster_id"], unique=False)
        batch_op.drop_index("ix_jobs_line")
