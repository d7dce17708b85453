"""Initial schema: tenants, users, credits, daily quotas, generations, audit.

Reviewed by hand against the database design (docs/design.md): every tenant table
has organization_id NOT NULL and leads its primary key with it; the compound indexes
(generations (organization_id, created_at), usage_limits (organization_id, date) and
the unique (organization_id, type, date)) are the ones the dashboard's queries use.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 08:43:31.260707
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "generation_types",
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("default_credits", sa.Integer(), nullable=False),
        sa.Column("default_daily_limit", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "type ~ '^[a-z][a-z0-9_]*$'", name=op.f("ck_generation_types_type_format")
        ),
        sa.CheckConstraint(
            "default_credits >= 0", name=op.f("ck_generation_types_default_credits_not_negative")
        ),
        sa.CheckConstraint(
            "default_daily_limit >= 0",
            name=op.f("ck_generation_types_default_daily_limit_not_negative"),
        ),
        sa.PrimaryKeyConstraint("type", name=op.f("pk_generation_types")),
    )
    op.create_table(
        "organizations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("timezone", sa.Text(), server_default=sa.text("'UTC'"), nullable=False),
        sa.Column("plan", sa.Text(), server_default=sa.text("'free'"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("btrim(name) <> ''", name=op.f("ck_organizations_name_not_blank")),
        sa.CheckConstraint(
            "plan IN ('free', 'starter', 'pro', 'enterprise')",
            name=op.f("ck_organizations_plan_known"),
        ),
        sa.CheckConstraint(
            "slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'", name=op.f("ck_organizations_slug_format")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("slug", name=op.f("uq_organizations_slug")),
    )
    op.create_table(
        "audit_log",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("btrim(actor) <> ''", name=op.f("ck_audit_log_actor_not_blank")),
        sa.CheckConstraint("btrim(reason) <> ''", name=op.f("ck_audit_log_reason_not_blank")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_audit_log_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_audit_log")),
    )
    op.create_index(
        op.f("ix_audit_log_organization_id_created_at"),
        "audit_log",
        ["organization_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "credit_balances",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_credit_balances_balance_not_negative")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_credit_balances_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", name=op.f("pk_credit_balances")),
    )
    op.create_table(
        "credit_ledger",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("reverses_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind IN ('grant', 'refund') AND amount > 0) OR (kind = 'deduct' AND amount < 0) OR (kind = 'reversal' AND reverses_id IS NOT NULL)",
            name=op.f("ck_credit_ledger_kind_sign"),
        ),
        sa.CheckConstraint("btrim(actor) <> ''", name=op.f("ck_credit_ledger_actor_not_blank")),
        sa.CheckConstraint(
            "btrim(idempotency_key) <> ''", name=op.f("ck_credit_ledger_idempotency_key_not_blank")
        ),
        sa.CheckConstraint("btrim(reason) <> ''", name=op.f("ck_credit_ledger_reason_not_blank")),
        sa.CheckConstraint(
            "kind IN ('grant', 'deduct', 'refund', 'reversal')",
            name=op.f("ck_credit_ledger_kind_known"),
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_credit_ledger_amount_not_zero")),
        sa.CheckConstraint(
            "balance_after >= 0", name=op.f("ck_credit_ledger_balance_after_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "reverses_id"],
            ["credit_ledger.organization_id", "credit_ledger.id"],
            name=op.f("fk_credit_ledger_organization_id_reverses_id_credit_ledger"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_credit_ledger_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_credit_ledger")),
        sa.UniqueConstraint(
            "organization_id",
            "idempotency_key",
            name=op.f("uq_credit_ledger_organization_id_idempotency_key"),
        ),
        sa.UniqueConstraint(
            "organization_id",
            "reverses_id",
            name=op.f("uq_credit_ledger_organization_id_reverses_id"),
        ),
    )
    op.create_index(
        op.f("ix_credit_ledger_organization_id_created_at"),
        "credit_ledger",
        ["organization_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "usage_limits",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("used", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("credits_used", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "credits_used >= 0", name=op.f("ck_usage_limits_credits_used_not_negative")
        ),
        sa.CheckConstraint(
            "daily_limit >= 0", name=op.f("ck_usage_limits_daily_limit_not_negative")
        ),
        sa.CheckConstraint("used >= 0", name=op.f("ck_usage_limits_used_not_negative")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_usage_limits_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["type"], ["generation_types.type"], name=op.f("fk_usage_limits_type_generation_types")
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_usage_limits")),
        sa.UniqueConstraint(
            "organization_id",
            "type",
            "date",
            name=op.f("uq_usage_limits_organization_id_type_date"),
        ),
    )
    op.create_index(
        op.f("ix_usage_limits_organization_id_date"),
        "usage_limits",
        ["organization_id", "date"],
        unique=False,
    )
    op.create_index(op.f("ix_usage_limits_type"), "usage_limits", ["type"], unique=False)
    op.create_table(
        "users",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("position('@' in email) > 1", name=op.f("ck_users_email_format")),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_users_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "generations",
        sa.Column("organization_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(collation="C"), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("credits >= 0", name=op.f("ck_generations_credits_not_negative")),
        sa.ForeignKeyConstraint(
            ["organization_id", "user_id"],
            ["users.organization_id", "users.id"],
            name=op.f("fk_generations_organization_id_user_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_generations_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["type"], ["generation_types.type"], name=op.f("fk_generations_type_generation_types")
        ),
        sa.PrimaryKeyConstraint("organization_id", "id", name=op.f("pk_generations")),
    )
    op.create_index(
        op.f("ix_generations_organization_id_created_at"),
        "generations",
        ["organization_id", "created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_generations_organization_id_idempotency_key"),
        "generations",
        ["organization_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_generations_organization_id_user_id_created_at"),
        "generations",
        ["organization_id", "user_id", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_generations_type"), "generations", ["type"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_generations_type"), table_name="generations")
    op.drop_index(
        op.f("ix_generations_organization_id_user_id_created_at"), table_name="generations"
    )
    op.drop_index(
        op.f("ix_generations_organization_id_idempotency_key"),
        table_name="generations",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index(op.f("ix_generations_organization_id_created_at"), table_name="generations")
    op.drop_table("generations")
    op.drop_table("users")
    op.drop_index(op.f("ix_usage_limits_type"), table_name="usage_limits")
    op.drop_index(op.f("ix_usage_limits_organization_id_date"), table_name="usage_limits")
    op.drop_table("usage_limits")
    op.drop_index(op.f("ix_credit_ledger_organization_id_created_at"), table_name="credit_ledger")
    op.drop_table("credit_ledger")
    op.drop_table("credit_balances")
    op.drop_index(op.f("ix_audit_log_organization_id_created_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("organizations")
    op.drop_table("generation_types")
