"""Sync per occurrence, and the window's end.

``sync_links.parts``: the content key of each occurrence (series master, each exception,
each cancelled instance) when the two sides last agreed, so that edits to different
occurrences of one series on the two sides are merged, not decided as one;
``sync_links.remote_pieces``: the versions (etags) of the pieces a remote keeps apart (a
Google series' master and exceptions), so that a listing of our own writes costs nothing.
``sync_state.
open_window_end`` / ``close_window_end``: the end of the window at the last open / close, so
that appointments entering the window as time passes are looked for in the new slice only.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_links") as batch:
        batch.add_column(sa.Column("parts", sa.Text()))
        batch.add_column(sa.Column("remote_pieces", sa.Text()))
    with op.batch_alter_table("sync_state") as batch:
        batch.add_column(sa.Column("open_window_end", sa.DateTime()))
        batch.add_column(sa.Column("close_window_end", sa.DateTime()))


def downgrade() -> None:
    with op.batch_alter_table("sync_state") as batch:
        batch.drop_column("close_window_end")
        batch.drop_column("open_window_end")
    with op.batch_alter_table("sync_links") as batch:
        batch.drop_column("remote_pieces")
        batch.drop_column("parts")
