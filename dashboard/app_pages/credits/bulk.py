"""Bulk adjustments from a CSV: every row checked and shown with its balance before
and after, then applied all or nothing."""

from __future__ import annotations

import math
from typing import Final

import pandas as pd
import streamlit as st

from dashboard import actions
from dashboard.app_pages.credits import FLASH
from dashboard.confirm import WriteFlow
from dashboard.text import md
from queries.bulk import MAX_FILE_BYTES, BulkPlan, BulkRow
from queries.credits import approval_threshold
from queries.words import counted

K_BULK: Final = "credits.bulk_pending"
K_BULK_RETRY: Final = "credits.bulk_retry"
K_BULK_FILE: Final = "credits.bulk_file"
BULK_STATUS: Final = {
    "apply": "will be applied",
    "request": "approval request",
    "exists": "already there",
    "applied": "applied",
    "requested": "requested",
    "error": "error",
}


def bulk_table(rows: tuple[BulkRow, ...]) -> pd.DataFrame:
    """A bulk file's rows for a table: customer text stays data (a dataframe cell)."""
    return pd.DataFrame(
        {
            "Line": [r.line for r in rows],
            "Organization": [r.slug or "" for r in rows],
            "Amount": pd.array([r.amount for r in rows], dtype="Int64"),
            "Reason": [r.reason or "" for r in rows],
            # A grant's terms as the file gave them: UTC, the column's own zone.
            "Expires (UTC)": [
                "" if r.expires_at is None else f"{r.expires_at:%Y-%m-%d %H:%M}" for r in rows
            ],
            "Priority": pd.array([r.priority for r in rows], dtype="Int64"),
            "Status": [BULK_STATUS[r.status] for r in rows],
            "Balance before": pd.array([r.balance_before for r in rows], dtype="Int64"),
            "Balance after": pd.array([r.balance_after for r in rows], dtype="Int64"),
            "Problems": [" ".join(r.errors) for r in rows],
        }
    )


def _bulk_applied(request: actions.BulkRequest, done: BulkPlan) -> str:
    return (
        f"Applied {md(request.file_name)}: {counted(done.count('applied'), 'row')} applied, "
        f"{done.count('requested'):,} recorded as approval requests, "
        f"{done.count('exists'):,} already there (nothing changed for those)."
    )


BULK: Final = WriteFlow(
    what="bulk adjustment",
    request_type=actions.BulkRequest,
    flash=FLASH,
    pending=K_BULK,
    retry=K_BULK_RETRY,
    apply=actions.apply_bulk,
    succeeded=_bulk_applied,
    # The file's hash: the keys of its rows, so confirming again applies it once.
    token=lambda request: request.plan.digest,
)
_SHOWN_BULK: Final = (actions.BULK_ORGANIZATION, actions.BULK_ORGANIZATIONS)


def _bulk_review(request: actions.BulkRequest) -> None:
    plan = request.plan
    with st.container(border=True):
        st.markdown(f"**{md(request.file_name)}**: {counted(len(plan.rows), 'row')}")
        st.dataframe(bulk_table(plan.rows), hide_index=True, key="credits.bulk_table")
        if not plan.ok:
            st.error(
                f"{counted(len(plan.errors), 'problem')}; nothing of this file can be applied. "
                "Fix them and upload the file again.",
                icon=":material/block:",
            )
            for line, message in plan.errors[:50]:
                st.markdown(f"- Line {line}: {md(message)}")
            st.button("Discard", key="credits.bulk_discard", on_click=BULK.discard)
            return
        st.info(
            f"{counted(plan.count('apply'), 'row')} will be applied, {plan.count('request'):,} "
            f"become approval requests (above {approval_threshold():,} credits), "
            f"{plan.count('exists'):,} are already there. All or nothing: if anything "
            "changed since this check, nothing is applied.",
            icon=":material/fact_check:",
        )
        BULK.buttons(
            request,
            shown=_SHOWN_BULK,
            label=f"Confirm: apply {counted(len(plan.rows), 'row')}",
            again_label=f"Confirm again: apply {counted(len(plan.rows), 'row')}",
            key="credits.bulk_confirm",
            back=None,
            discard=("Discard", "credits.bulk_discard"),
        )


def render() -> None:
    """The upload, or the file's rows waiting for confirmation."""
    st.subheader("Bulk adjustments from a CSV")
    request = BULK.request()
    if request is not None:
        _bulk_review(request)
        return
    uploaded = st.file_uploader(
        "CSV file",
        type=["csv"],
        key=K_BULK_FILE,
        # The widget's own limit, in whole megabytes: it says "1MB per file" however the
        # server was started (.streamlit/config.toml is read only from the project folder);
        # the check in queries.bulk still refuses a file over MAX_FILE_BYTES.
        max_upload_size=math.ceil(MAX_FILE_BYTES / 2**20),
        help="UTF-8, a header row, columns organization (slug), amount (negative to "
        "deduct), reason, and optionally note, key, expires_at and priority. expires_at: "
        "ISO 8601 with Z or an offset (2027-01-06T00:00:00+05:45), or a date alone "
        "(00:00 UTC that day); priority: 0-255, lower is drawn first (default 10). Both "
        "for grants only.",
    )
    if uploaded is None:
        st.caption(
            "Columns: organization (slug), amount, reason; optionally note, key, and for "
            "grants expires_at (with Z or an offset, or a date: 00:00 UTC) and priority "
            "(0-255, lower first). You see every row with its balance before and after before anything is applied."
        )
        return
    if not st.button("Check the file", type="primary", key="credits.bulk_check"):
        return
    BULK.check(lambda: actions.check_bulk(file_name=uploaded.name, content=uploaded.getvalue()))
