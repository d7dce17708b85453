"""The dashboard's entrypoint (``streamlit run dashboard/app.py``, or ``uv run dashboard``).

Every run, in this order, and each step can end the run with a sentence instead of data:

1. a database is configured (``DATABASE_URL``/``DIRECT_URL``); the app never makes one up;
2. the identity and role configuration may be used (``auth.current_problem``: unknown
   roles, no identity off the embedded database), the same check ``dashboard serve`` makes;
3. who is this (``auth.current_user``): signed in, verified, with a role;
4. the schema is the one this code needs (checked once per database and process);
5. which pages their role may open (``st.navigation``; a link to another page lands on
   the first page of their menu with a notice naming the roles that may open it), the
   shared filters in the sidebar (kept in the URL), then the page.

On the embedded demo database every page carries a "Demo data" badge. Elsewhere, an app
that logs in as a superuser or as the owner of the tables says so in the log and, on
every page, to admins (checked once per database and process). Expected failures
(database unreachable, a query refused, a bad input) end as a sentence on the page, never
a traceback.
"""

from __future__ import annotations

import logging
import sys

import streamlit as st

st.set_page_config(
    page_title="Usage dashboard",
    page_icon=":material/monitoring:",
    layout="wide",
    initial_sidebar_state="expanded",
)
# The first run after a start imports pandas, plotly, SQLAlchemy and the data layer:
# seconds on a busy machine, unless dashboard.warmup (started with the server) is done.
# Until then the browser shows this progress sign instead of a white page; later runs
# find the modules imported and draw nothing here.
_starting = st.empty()
if not {"dashboard.ui", "queries.schema_version"} <= sys.modules.keys():
    _starting.status("Starting the dashboard…", state="running")
from dashboard import auth, data, navigation, state, ui, url  # noqa: E402 (after the progress sign)
from dashboard.text import escape_markdown  # noqa: E402 (after the progress sign)
from queries.db import NOT_CONFIGURED, ConfigurationError, configured_urls, login_power  # noqa: E402 (after the progress sign)
from queries.schema_version import schema_problem  # noqa: E402 (after the progress sign)

_starting.empty()
data.begin_run()


def _literal(text: str) -> str:
    """``text`` shown as itself in Markdown: a code span (an address in plain Markdown
    would become a mailto link), or escaped when it holds a backtick."""
    return escape_markdown(text) if "`" in text else f"`{text}`"


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


def _refuse(sentence: str, *, icon: str, sign_out: bool = False, plain: bool = True) -> None:
    """Show only ``sentence`` and end the run: no filters, no data. ``plain`` text (from
    configuration or an identity provider) is escaped; our own constants may use Markdown."""
    st.title("Usage dashboard")
    st.error(escape_markdown(sentence) if plain else sentence, icon=icon)
    if sign_out:
        st.button("Sign out", on_click=st.logout, key="auth.logout")
    st.stop()


def _identity(user: auth.CurrentUser) -> None:
    with st.sidebar:
        st.caption(f"Signed in as {_literal(user.email)} · {user.role or 'no role'}")
        if user.is_development:
            st.warning(
                "Development identity from DASHBOARD_USER / [dev] in secrets.toml. "
                "Configure [auth] (OIDC) before anyone else uses this dashboard.",
                icon=":material/construction:",
            )
        else:
            st.button("Sign out", on_click=st.logout, key="auth.logout")


@st.cache_resource(show_spinner=False, max_entries=8)
def _schema_problem(database_url: str) -> str | None:
    """Whether the schema is behind (one read of alembic_version per database and
    process; "Try again" forgets it). Read where the pages read: with the primary down,
    a replica still has the schema and the pages keep working."""
    return schema_problem(data.read_engine())


_log = logging.getLogger(__name__)
K_POWER_UNKNOWN = "app.login_power_unknown"
K_REFUSED = "app.refused_page"  # why the person landed here: a page their role may not open


@st.cache_resource(show_spinner=False, max_entries=8)
def _owner_login(database_url: str) -> str | None:
    """A sentence when the app's login (``DATABASE_URL``, where it writes) is a
    superuser or the tables' owner, logged once per database and process; else None."""
    with data.engine().connect() as conn:
        power = login_power(conn)
    if not power.too_powerful:
        return None
    what = "a superuser" if power.superuser else "the owner of the tables"
    sentence = (
        f"The dashboard logs in to the database as {power.login}, {what}: the database's "
        "own guards (least-privilege grants, the reconciler's checkpoints) do not hold it "
        "back. Give DATABASE_URL a login that is only a member of dashboard_app "
        '(README, "Deploying safely").'
    )
    _log.warning(sentence)
    return sentence


def _owner_login_banner(user: auth.CurrentUser, database_url: str) -> None:
    """The owner-login warning, to admins only. A failed check (the primary down) is not
    cached: the session skips it and a later session checks again."""
    if st.session_state.get(K_POWER_UNKNOWN):
        return
    try:
        sentence = _owner_login(database_url)
    except ui.EXPECTED_ERRORS:
        st.session_state[K_POWER_UNKNOWN] = True
        return
    if sentence is not None and user.role == "admin":
        st.warning(escape_markdown(sentence), icon=":material/admin_panel_settings:")


def _try_again() -> None:
    _schema_problem.clear()
    data.refresh()


def _demo_badge() -> None:
    st.badge(
        "Demo data",
        icon=":material/science:",
        color="orange",
        help="This is the embedded demo database with generated data: none of these "
        "numbers are real customers'.",
    )


# 1. A database is configured; a malformed URL is reported by the first read below.
database_url: str | None = None
try:
    database_url = configured_urls().runtime
except ConfigurationError as exc:
    if str(exc) == NOT_CONFIGURED:
        _refuse(NOT_CONFIGURED, icon=":material/database_off:", plain=False)

# 2. The configuration may be used at all (the check `dashboard serve` makes too).
problem = auth.current_problem()
if problem is not None:
    _refuse(problem, icon=":material/block:")

# 3. Who is this.
user = auth.current_user()
if not user.signed_in:
    _sign_in()
    st.stop()
if user.refusal is not None:
    _refuse(user.refusal, icon=":material/block:", sign_out=not user.is_development)
if user.role is None:
    st.title("Usage dashboard")
    st.error(
        f"You are signed in as {_literal(user.email)}, but no role is configured for this "
        "address. Ask an admin to add it to [roles] in secrets.toml (or DASHBOARD_ROLES)."
    )
    if not user.is_development:
        st.button("Sign out", on_click=st.logout, key="auth.logout")
    st.stop()

if auth.on_embedded_database(database_url):
    _demo_badge()

# 4. The schema is the one this code needs.
try:
    behind = _schema_problem(database_url or "")
except ui.EXPECTED_ERRORS as exc:
    behind = ui.describe_error(exc)
if behind is not None:
    st.title("Usage dashboard")
    st.error(behind, icon=":material/cloud_off:")
    st.button("Try again", on_click=_try_again, type="primary")
    st.stop()

# 4b. Not as a superuser or the tables' owner, off the embedded database.
if not auth.on_embedded_database(database_url):
    _owner_login_banner(user, database_url or "")

# 5. The pages this role may open, the filters, the page.
specs = navigation.pages_for(user)
if not specs:
    _refuse(
        f"Your role ({user.role}) may open no page of the dashboard. Ask an admin for "
        "another role.",
        icon=":material/block:",
    )
# Every page is known to st.navigation, those this role may not open hidden from the
# menu: a link to one is refused here with a sentence, before the page runs.
registered = {
    spec: spec.page(default=spec == specs[0], hidden=spec not in specs) for spec in navigation.PAGES
}
page = st.navigation(list(registered.values()))
_identity(user)
spec = navigation.spec_for(page)
if spec not in specs:
    st.session_state[K_REFUSED] = navigation.refusal(spec, user)
    # The shared filters of the link go along; the refused page's own keys do not.
    st.switch_page(
        registered[specs[0]],
        query_params={
            key: st.query_params.get_all(key) for key in state.URL_KEYS if key in st.query_params
        },
    )
refused = st.session_state.pop(K_REFUSED, None)
if isinstance(refused, str):
    st.warning(escape_markdown(refused), icon=":material/lock:")
# A name clicked in a table of the last run opens its view here, before this page runs.
url.follow()

try:
    has_organizations = data.any_organizations()
except ui.EXPECTED_ERRORS as exc:
    st.title("Usage dashboard")
    st.error(ui.describe_error(exc), icon=":material/cloud_off:")
    st.button("Try again", on_click=data.refresh, type="primary")
    st.stop()
if not has_organizations:
    st.title("Usage dashboard")
    st.info(
        "The database has no organizations yet, so there is nothing to show. Load demo data "
        "with `uv run dashboard seed`, or wait for the first customer to sign up."
    )
    st.stop()

try:
    filters = state.sidebar_filters(uses=spec.uses)
    # The tab names the page and the organization (plain text: a browser shows a title
    # as it is).
    st.set_page_config(page_title=navigation.tab_title(spec, filters.organization.name))
except ui.EXPECTED_ERRORS as exc:
    st.title("Usage dashboard")
    st.error(ui.describe_error(exc), icon=":material/cloud_off:")
    st.button("Try again", on_click=data.refresh, type="primary")
    st.stop()
try:
    page.run()
except ui.EXPECTED_ERRORS as exc:
    st.error(ui.describe_error(exc), icon=":material/error:")
ui.finish_page()
