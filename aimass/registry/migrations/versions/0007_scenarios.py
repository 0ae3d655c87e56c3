"""Scenario state: recommendation events (interactions sent after training, folded in and kept
for the next training job) and forecast observations (points appended to served series)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "recommendation_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("user", sa.String(length=256), nullable=False),
        sa.Column("item", sa.String(length=256), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_recommendation_events_model_user", "recommendation_events", ["model", "user", "id"]
    )
    op.create_table(
        "forecast_observations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("series_id", sa.String(length=256), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_forecast_observations_model_series",
        "forecast_observations",
        ["model", "series_id", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_forecast_observations_model_series", table_name="forecast_observations")
    op.drop_table("forecast_observations")
    op.drop_index("ix_recommendation_events_model_user", table_name="recommendation_events")
    op.drop_table("recommendation_events")
