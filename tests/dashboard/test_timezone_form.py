"""Admins move an organization to another time zone from the Quotas page: reviewed, then
confirmed, audited with the reason, and the page shows the new zone at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from streamlit.testing.v1 import AppTest

from dashboard import actions, auth, timezone_form
from tests.dashboard.apptest import make_app, open_page, plain_texts, scalar, texts

NEW_ZONE = "Asia/Kathmandu"  # UTC+5:45


@pytest.fixture
def org(fresh_url: str, fresh_engine: Engine, use_database: Callable[[str], None]) -> int:
    use_database(fresh_url)
    return int(
        scalar(
            fresh_engine,
            "SELECT id FROM organizations WHERE timezone <> :z ORDER BY name, id LIMIT 1",
            z=NEW_ZONE,
        )
    )


def quotas_page(org: int, *, role: str = "admin") -> AppTest:
    at = make_app(role=role, email=f"{role}@example.com", query={"org": str(org)})
    return open_page(at, "quotas")


def review(
    at: AppTest, *, zone: str | None = NEW_ZONE, reason: str | None = "Customer moved"
) -> AppTest:
    if zone is not None:
        at.selectbox(key=timezone_form.K_ZONE).set_value(zone)
    if reason is not None:
        at.selectbox(key=timezone_form.K_REASON).set_value(reason)
    at.text_input(key=timezone_form.K_NOTE).input("ticket 12")
    next(b for b in at.button if b.label == "Review time zone change").click()
    return at.run()


def zone_changes(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM audit_log WHERE action = 'set_timezone'"))


def test_an_admin_moves_an_organization_to_another_zone_and_it_is_audited(
    org: int, fresh_engine: Engine
) -> None:
    before = scalar(fresh_engine, "SELECT timezone FROM organizations WHERE id = :o", o=org)
    at = review(quotas_page(org))
    assert not at.exception
    assert any(f"to {NEW_ZONE}?" in m for m in plain_texts(at, "markdown"))
    assert zone_changes(fresh_engine) == 0, "reviewing must not write"

    next(b for b in at.button if b.label == "Confirm time zone").click()
    at.run()
    assert not at.exception
    (success,) = plain_texts(at, "success")
    assert f"is now in {NEW_ZONE} (was {before})" in success and "audit trail" in success
    with fresh_engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT a.actor, a.reason, o.timezone FROM audit_log a "
                "JOIN organizations o ON o.id = a.organization_id "
                "WHERE a.action = 'set_timezone' AND a.organization_id = :o"
            ),
            {"o": org},
        ).one()
    assert tuple(row) == ("admin@example.com", "Customer moved: ticket 12", NEW_ZONE)
    # The page reads the organization again (its cached read was invalidated).
    assert any(f"Now {NEW_ZONE}." in c for c in plain_texts(at, "caption"))
    at.run()  # a rerun does not apply it again
    assert zone_changes(fresh_engine) == 1


def test_a_zone_change_without_a_zone_or_reason_writes_nothing(
    org: int, fresh_engine: Engine
) -> None:
    at = review(quotas_page(org), zone=None)
    assert any("Choose a time zone" in e and "Nothing was changed" in e for e in texts(at, "error"))
    at = review(quotas_page(org), reason=None)
    assert any("Choose a reason" in e for e in texts(at, "error"))
    assert timezone_form.K_PENDING not in at.session_state
    assert zone_changes(fresh_engine) == 0


def test_only_admins_see_the_zone_form_and_a_forged_request_is_refused(
    org: int, fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = quotas_page(org, role="support")
    assert not [b for b in at.button if b.label == "Review time zone change"]
    request = actions.TimezoneRequest(
        organization_id=org,
        organization_name="forged",
        previous="UTC",
        timezone=NEW_ZONE,
        reason="forged",
        idempotency_key="forged",
    )
    at.session_state[timezone_form.K_PENDING] = request
    at.run()
    assert any("may not change an organization" in e for e in texts(at, "error"))

    monkeypatch.setattr(auth, "_secrets", dict)
    monkeypatch.setenv("DASHBOARD_ROLE", "support")
    with pytest.raises(auth.AccessDenied, match="may not change an organization's time zone"):
        actions.apply_timezone_change(request)
    assert zone_changes(fresh_engine) == 0
