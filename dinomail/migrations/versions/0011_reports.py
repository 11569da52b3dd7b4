"""MTA-STS policies served by DinoMail, and the DMARC aggregate and SMTP TLS reports it receives.

Not mail tables: no change-log trigger (the lookup daemons never read them).

Revision ID: 0011_reports
Revises: 0008_changelog_search_path
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_reports"
down_revision: str | None = "0008_changelog_search_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOW = sa.text("CURRENT_TIMESTAMP")


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], ondelete="CASCADE",
        name=f"fk_{table}_{column}_{target}",
    )


def _time(name: str, *, default: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False,
                     server_default=NOW if default else None)


def upgrade() -> None:
    op.create_table(
        "dinomail_mtastspolicy",
        sa.Column("domain_id", sa.Integer, nullable=False),
        sa.Column("mode", sa.String(8), nullable=False, server_default="testing"),
        sa.Column("mx", sa.Text, nullable=False, server_default=""),
        sa.Column("max_age", sa.Integer, nullable=False, server_default="604800"),
        _time("updated_at", default=True),
        sa.PrimaryKeyConstraint("domain_id", name="pk_dinomail_mtastspolicy"),
        _fk("dinomail_mtastspolicy", "domain_id", "core_virtualdomain"),
    )
    for kind in ("dmarc", "tls"):
        table = f"dinomail_{kind}report"
        extra = (
            [sa.Column("email", sa.String(320), nullable=False, server_default="")]
            if kind == "dmarc" else
            [sa.Column("contact", sa.String(320), nullable=False, server_default="")]
        )
        policy = ([sa.Column("policy", sa.String(16), nullable=False, server_default="")]
                  if kind == "dmarc" else [])
        op.create_table(
            table,
            sa.Column("id", sa.Integer, nullable=False),
            sa.Column("domain_id", sa.Integer, nullable=False),
            sa.Column("report_domain", sa.String(253), nullable=False, server_default=""),
            sa.Column("org_name", sa.String(255), nullable=False),
            sa.Column("report_id", sa.String(255), nullable=False),
            *extra,
            _time("date_begin"),
            _time("date_end"),
            *policy,
            _time("received_at", default=True),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            _fk(table, "domain_id", "core_virtualdomain"),
            sa.UniqueConstraint("org_name", "report_id", name=f"uq_{table}_org_name_report_id"),
        )
        op.create_index(f"ix_{table}_domain_id_date_begin", table, ["domain_id", "date_begin"])
        op.create_index(f"ix_{table}_received_at", table, ["received_at"])
    op.create_table(
        "dinomail_dmarcrecord",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("report_id", sa.Integer, nullable=False),
        sa.Column("source_ip", sa.String(45), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False, server_default="none"),
        sa.Column("dkim", sa.String(8), nullable=False, server_default="fail"),
        sa.Column("spf", sa.String(8), nullable=False, server_default="fail"),
        sa.Column("header_from", sa.String(253), nullable=False, server_default=""),
        sa.Column("auth_results", sa.Text, nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_dmarcrecord"),
        _fk("dinomail_dmarcrecord", "report_id", "dinomail_dmarcreport"),
    )
    op.create_index("ix_dinomail_dmarcrecord_report_id", "dinomail_dmarcrecord", ["report_id"])
    op.create_table(
        "dinomail_tlspolicy",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("report_id", sa.Integer, nullable=False),
        sa.Column("policy_type", sa.String(32), nullable=False),
        sa.Column("policy_domain", sa.String(253), nullable=False, server_default=""),
        sa.Column("success_count", sa.Integer, nullable=False),
        sa.Column("failure_count", sa.Integer, nullable=False),
        sa.Column("failures", sa.Text, nullable=False, server_default="[]"),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_tlspolicy"),
        _fk("dinomail_tlspolicy", "report_id", "dinomail_tlsreport"),
    )
    op.create_index("ix_dinomail_tlspolicy_report_id", "dinomail_tlspolicy", ["report_id"])
    op.create_table(
        "dinomail_reportreject",
        sa.Column("id", sa.Integer, nullable=False),
        _time("received_at", default=True),
        sa.Column("sender", sa.String(320), nullable=False, server_default=""),
        sa.Column("recipient", sa.String(320), nullable=False, server_default=""),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dinomail_reportreject"),
    )
    op.create_index("ix_dinomail_reportreject_received_at", "dinomail_reportreject",
                    ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_dinomail_reportreject_received_at", table_name="dinomail_reportreject")
    op.drop_table("dinomail_reportreject")
    op.drop_index("ix_dinomail_tlspolicy_report_id", table_name="dinomail_tlspolicy")
    op.drop_table("dinomail_tlspolicy")
    op.drop_index("ix_dinomail_dmarcrecord_report_id", table_name="dinomail_dmarcrecord")
    op.drop_table("dinomail_dmarcrecord")
    for kind in ("tls", "dmarc"):
        table = f"dinomail_{kind}report"
        op.drop_index(f"ix_{table}_received_at", table_name=table)
        op.drop_index(f"ix_{table}_domain_id_date_begin", table_name=table)
        op.drop_table(table)
    op.drop_table("dinomail_mtastspolicy")
