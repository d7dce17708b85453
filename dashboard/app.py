"""The dashboard's entrypoint (``streamlit run dashboard/app.py``, or ``uv run dashboard``).

Every run: who is this (``auth.current_user``), which pages their role may open
(``st.navigation``), the shared filters in the sidebar (kept in the URL), then the page.
Expected failures (database unreachable, a query refused, a bad input) end as a sentence
on the page, never a traceback.
"""

from __future__ import annotations

import streamlit as st

from dashboard import auth, data, navigation, state, ui

st.set_page_config(
    page_title="Usage dashboard",
    page_icon=":material/monitoring:",
    layout="wide",
    initial_sidebar_state="expanded",
)
data.begin_run()


def _sign_in() -> None:
    st.title("Usage dashboard")
    st.write("Sign in with your company account to see usage, quotas and credits.")
    if not auth.oidc_available():
        st.error(
            "Sign-in is configured ([auth] in secrets.toml) but the Authlib package is not "
            "installed. Install streamlit[auth] (Authlib >= 1.3.2) and restart the dashboard."
        )
        return
    provider = auth.login_provider()
    if provider is None:
        st.button("Sign in", type="primary", on_click=st.login)
    else:
        st.button("Sign in", type="primary", on_click=st.login, args=(provider,))


def _identity(user: auth.CurrentUser) -> None:
    with st.sidebar:
        # In backticks: Markdown would turn a bare address into a mailto link.
        st.caption(f"Signed in as `{user.email}` · {user.role or 'no role'}")
        if user.is_development:
            st.warning(
                "Development identity from DASHBOARD_USER / [dev] in secrets.toml. "
                "Configure [auth] (OIDC) before anyone else uses this dashboard.",
                icon=":material/construction:",
            )
        else:
            st.button("Sign out", on_click=st.logout, key="auth.logout")


user = auth.current_user()
if not user.signed_in:
    _sign_in()
    st.stop()
if user.role is None:
    st.title("Usage dashboard")
    st.error(
        f"You are signed in as `{user.email}`, but no role is configured for this address. "
        "Ask an admin to add it to [roles] in secrets.toml (or DASHBOARD_ROLES)."
    )
    st.button("Sign out", on_click=st.logout)
    st.stop()

specs = navigation.pages_for(user)
page = st.navigation([spec.page(default=i == 0) for i, spec in enumerate(specs)])
_identity(user)

try:
    organizations = state.organizations_from_frame(data.organizations())
except ui.EXPECTED_ERRORS as exc:
    st.title("Usage dashboard")
    st.error(ui.describe_error(exc), icon=":material/cloud_off:")
    st.button("Try again", on_click=data.clear, type="primary")
    st.stop()
if not organizations:
    st.title("Usage dashboard")
    st.info(
        "The database has no organizations yet, so there is nothing to show. Load demo data "
        "with `uv run dashboard seed`, or wait for the first customer to sign up."
    )
    st.stop()

state.sidebar_filters(organizations, uses=navigation.spec_for(page).uses)
try:
    page.run()
except ui.EXPECTED_ERRORS as exc:
    st.error(ui.describe_error(exc), icon=":material/error:")
ui.finish_page()
