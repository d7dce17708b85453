"""Alerts sent to a webhook, one row per (organization, kind, type, local day).

``queries.alerts.deliver`` inserts the rows of the alerts it is about to post in one
transaction (``ON CONFLICT DO NOTHING``: an alert already sent that day is skipped, and
a run that sends the same alert at the same time waits on the unique index) and commits
only when the post succeeded. ``destination`` is the webhook's host, never the URL,
which may hold a token.

Grants as migration 0003 asks: SELECT to both roles; to ``dashboard_app`` INSERT of the
columns a delivery writes, and nothing else (a delivery is history: no UPDATE, no
DELETE). ``id`` is an identity column, so inserting needs no grant on its sequence.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GRANTS = (
    "GRANT SELECT ON alert_deliveries TO dashboard_app, dashboard_reader",
    """
    GRANT INSERT (organization_id, kind, type, local_day, message, details, destination)
    ON alert_deliveries TO dashboard_app
    """,
)


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("kind", sa.Text(collation="C"), nullable=False),
        sa.Column("type", sa.Text(collation="C"), server_default=sa.text("''"), nullable=False),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column(
            "sent_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "kind IN ('will_hit_limit', 'over_limit', 'spike', 'low_runway')",
            name=op.f("ck_alert_deliveries_kind_known"),
        ),
        sa.CheckConstraint(
            "(kind IN ('will_hit_limit', 'over_limit')) = (type <> '')",
            name=op.f("ck_alert_deliveries_type_matches_kind"),
        ),
        sa.CheckConstraint(
            "btrim(destination) <> ''", name=op.f("ck_alert_deliveries_destination_not_blank")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_alert_deliveries_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint(
            "organization_id",
            "kind",
            "type",
            "local_day",
            name=op.f("uq_alert_deliveries_organization_id_kind_type_local_day"),
        ),
    )
    for statement in _GRANTS:
        op.execute(statement)


def downgrade() -> None:
    # Dropping the table drops its grants and indexes with it.
    op.drop_table("alert_deliveries")
