"""Images in vector stores: a store's image-embedding model, and the image vector of an image
file's first chunk (so the store's image index can be rebuilt from the database)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("vector_stores") as batch:
        batch.add_column(sa.Column("image_model", sa.String(length=160), nullable=True))
        batch.add_column(
            sa.Column("image_dimensions", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("vector_store_chunks") as batch:
        batch.add_column(sa.Column("image_vector", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vector_store_chunks") as batch:
        batch.drop_column("image_vector")
    with op.batch_alter_table("vector_stores") as batch:
        batch.drop_column("image_dimensions")
        batch.drop_column("image_model")
