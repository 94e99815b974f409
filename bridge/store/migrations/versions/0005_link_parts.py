"""Links per part of a series cut "this and following".

``sync_links.part``: Google and Outlook hold a series changed "this and following"
(RECURRENCE-ID;RANGE=THISANDFUTURE) as several series; each is linked to its part of the
Gestan object ("" the object itself, else the recurrence-id key where the part starts), so
one object may have several links on a target.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_links") as batch:
        batch.add_column(sa.Column("part", sa.String(20), nullable=False, server_default=""))
        batch.drop_constraint("uq_links_object", type_="unique")
        batch.create_unique_constraint("uq_links_object",
                                       ["user_id", "target", "object_id", "part"])


def downgrade() -> None:
    op.execute("DELETE FROM sync_links WHERE part <> ''")
    with op.batch_alter_table("sync_links") as batch:
        batch.drop_constraint("uq_links_object", type_="unique")
        batch.create_unique_constraint("uq_links_object", ["user_id", "target", "object_id"])
        batch.drop_column("part")
