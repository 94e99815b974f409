"""Initial schema: users, calendar objects, actions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("login", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("calendar_props", sa.Text, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "calendar_objects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("href", sa.String(255), nullable=False),
        sa.Column("uid", sa.String(255), nullable=False),
        sa.Column("ics", sa.Text),
        sa.Column("etag", sa.String(80)),
        sa.Column("first_start", sa.DateTime),
        sa.Column("last_end", sa.DateTime),
        sa.Column("is_series", sa.Boolean, nullable=False),
        sa.Column("series_ics", sa.Text),
        sa.Column("materialised_until", sa.DateTime),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("user_id", "href", name="uq_objects_user_href"),
    )
    op.create_index("uq_objects_user_uid_live", "calendar_objects", ["user_id", "uid"],
                    unique=True, sqlite_where=sa.text("NOT deleted"),
                    postgresql_where=sa.text("NOT deleted"))
    op.create_index("ix_objects_user_revision", "calendar_objects", ["user_id", "revision"])
    op.create_index("ix_objects_user_range", "calendar_objects",
                    ["user_id", "first_start", "last_end"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("contact", sa.Text, nullable=False),
        sa.Column("start_utc", sa.DateTime, nullable=False),
        sa.Column("end_utc", sa.DateTime, nullable=False),
        sa.Column("tzid", sa.String(64)),
        sa.Column("all_day", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("object_id", sa.Integer,
                  sa.ForeignKey("calendar_objects.id", ondelete="SET NULL")),
        sa.Column("recurrence_id", sa.String(32)),
        sa.Column("extra_ics", sa.Text, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_actions_user_type_start", "actions", ["user_id", "type", "start_utc"])
    op.create_index("ix_actions_user_revision", "actions", ["user_id", "revision"])
    op.create_index("ix_actions_object", "actions", ["object_id", "recurrence_id"])


def downgrade() -> None:
    op.drop_table("actions")
    op.drop_table("calendar_objects")
    op.drop_table("users")
