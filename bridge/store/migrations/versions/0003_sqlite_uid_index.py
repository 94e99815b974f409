"""SQLite: the live-UID index with the predicate SQLite's planner can match.

SQLAlchemy renders ``~deleted`` as ``deleted = 0`` on SQLite; an index declared ``WHERE NOT
deleted`` is then never used and every UID check scans the user's objects (PUT slowed down
as the calendar grew). PostgreSQL matches either form and is left as it is.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _recreate(where: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("uq_objects_user_uid_live", table_name="calendar_objects")
    op.create_index("uq_objects_user_uid_live", "calendar_objects", ["user_id", "uid"],
                    unique=True, sqlite_where=sa.text(where))


def upgrade() -> None:
    _recreate("deleted = 0")


def downgrade() -> None:
    _recreate("NOT deleted")
