"""Risk scenario: per-entity feature state, versioned rules, alerts, webhooks and their outbox."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "risk_entities",
        sa.Column("model", sa.String(length=160), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "key"),
    )
    op.create_table(
        "risk_rules",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("rules_json", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model", "revision", name="uq_risk_rules_revision"),
    )
    op.create_index("ix_risk_rules_model", "risk_rules", ["model"])
    op.create_table(
        "risk_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("event_json", sa.Text(), nullable=False),
        sa.Column("rules_json", sa.Text(), nullable=False),
        sa.Column("features_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("acked_at", sa.DateTime(), nullable=True),
        sa.Column("acked_by", sa.String(length=160), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_risk_alerts_model", "risk_alerts", ["model"])
    op.create_index("ix_risk_alerts_decision", "risk_alerts", ["decision"])
    op.create_table(
        "risk_webhooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=True),
        sa.Column("min_decision", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "risk_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("webhook_id", sa.String(length=40), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_risk_deliveries_webhook_id", "risk_deliveries", ["webhook_id"])
    op.create_index("ix_risk_deliveries_status", "risk_deliveries", ["status"])


def downgrade() -> None:
    op.drop_index("ix_risk_deliveries_status", table_name="risk_deliveries")
    op.drop_index("ix_risk_deliveries_webhook_id", table_name="risk_deliveries")
    op.drop_table("risk_deliveries")
    op.drop_table("risk_webhooks")
    op.drop_table("risk_alerts")
    op.drop_index("ix_risk_rules_model", table_name="risk_rules")
    op.drop_table("risk_rules")
    op.drop_table("risk_entities")
