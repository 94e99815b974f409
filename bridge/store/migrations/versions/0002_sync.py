"""The bridge's sync tables: links (status table), per-target state, audit log.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_links",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("object_id", sa.Integer,
                  sa.ForeignKey("calendar_objects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("remote_id", sa.String(1024), nullable=False),
        sa.Column("remote_etag", sa.String(200)),
        sa.Column("local_hash", sa.String(64), nullable=False),
        sa.Column("remote_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user_id", "target", "object_id", name="uq_links_object"),
        sa.UniqueConstraint("user_id", "target", "remote_id", name="uq_links_remote"),
    )
    op.create_table(
        "sync_state",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("target", sa.String(32), primary_key=True),
        sa.Column("calendar_id", sa.String(1024)),
        sa.Column("remote_state", sa.Text),
        sa.Column("pushed_revision", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "sync_locks",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_runs_user", "sync_runs", ["user_id", "id"])
    op.create_table(
        "sync_run_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("sync_runs.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("side", sa.String(16), nullable=False),
        sa.Column("uid", sa.String(255), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("losing_ics", sa.Text),
    )
    op.create_index("ix_run_items_run", "sync_run_items", ["run_id"])


def downgrade() -> None:
    for table in ("sync_run_items", "sync_runs", "sync_locks", "sync_state", "sync_links"):
        op.drop_table(table)
