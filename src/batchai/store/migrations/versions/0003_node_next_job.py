"""a node's next job

A node may hold the job that runs on it next (``staged``): its launcher starts it the moment the job
running there ends, without waiting for the server's pass.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_job_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_nodes_next_job", "jobs", ["next_job_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint("fk_nodes_next_job", type_="foreignkey")
        batch_op.drop_column("next_job_id")
