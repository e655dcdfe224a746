"""Single sign-on: claims -> roles in core, the app's sign-in page, and a real OIDC round trip.

The browser tests run a mock OpenID Connect provider (oidc-provider-mock) on localhost and a real
server (`uvicorn serve:app`) whose [auth] secrets point at it, then sign in through the provider's form.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import authlib.deprecate  # noqa: F401 (see quiet_mock)
import pytest
import store_oracle as oracle
from app_support import APP, TIMEOUT, access_actions, store, texts
from browser_support import NEEDS_CHROMIUM, launch, streamlit_server, wait_idle
from streamlit.testing.v1 import AppTest

from core import auth, sso
from core import store as core_store
from core.config import PROJ_ROOT, Settings, get_settings
from core.errors import ConfigError

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "test-only-cookie-secret",
        "client_id": "hyperkalaemia-app", "client_secret": "test-only-client-secret",
        "server_metadata_url": "http://localhost:9400/.well-known/openid-configuration"}


@pytest.fixture(autouse=True)
def _no_sso_environment(monkeypatch):
    for name in ("LOCAL_ACCOUNTS", "SSO_ROLE_CLAIM", "SSO_EMAIL_ROLES"):
        monkeypatch.delenv(f"APP_{name}", raising=False)


def settings(**kwargs) -> Settings:
    return Settings(**{"sso_role_claim": "roles", **kwargs})


# ---- core: claims -> User --------------------------------------------------------------------


def test_roles_from_the_role_claim():
    user = sso.user_from_claims({"sub": "s-1", "email": "carol@example.org", "name": "Carol C",
                                 "roles": ["clinician", "reviewer"]}, settings())
    assert user == sso.User("carol@example.org", "Carol C", ("clinician", "reviewer"))


def test_roles_from_the_email_list_case_insensitive():
    config = settings(sso_role_claim="", sso_email_roles={"Rita@Example.org": ["reviewer"]})
    user = sso.user_from_claims({"sub": "s-2", "email": "RITA@example.ORG"}, config)
    assert user == sso.User("rita@example.org", "rita@example.org", ("reviewer",))


def test_claim_and_email_list_are_combined():
    config = settings(sso_email_roles={"pat@example.org": ["pi"]})
    user = sso.user_from_claims({"sub": "s-3", "email": "pat@example.org", "roles": ["admin"]}, config)
    assert user.roles == ("pi", "admin")


def test_unknown_role_names_are_ignored_and_case_does_not_matter():
    user = sso.user_from_claims({"sub": "s-4", "roles": ["nurse", "Clinician", 7]}, settings())
    # No email: the subject names the user, marked so that it cannot pass for a local account.
    assert user == sso.User("sso:s-4", "sso:s-4", ("clinician",))
    assert not auth.USERNAME_PATTERN.match(user.username)


@pytest.mark.parametrize("claims", [
    {"sub": "s-5", "email": "nobody@example.org"},
    {"sub": "s-5", "email": "nobody@example.org", "roles": ["nurse", "physician"]},
    {"sub": "s-5", "email": "nobody@example.org", "roles": "not-a-role"},
])
def test_no_role_is_refused(claims):
    with pytest.raises(sso.NoRole, match=r"no role for this account \(nobody@example.org\)"):
        sso.user_from_claims(claims, settings(sso_email_roles={"other@example.org": ["pi"]}))


def test_role_claim_as_text_and_nested():
    assert sso.roles_from_claims({"groups": "reviewer, pi"}, settings(sso_role_claim="groups")) == (
        "reviewer", "pi")
    nested = {"realm_access": {"roles": ["admin", "offline_access"]}}
    assert sso.roles_from_claims(nested, settings(sso_role_claim="realm_access.roles")) == ("admin",)


def test_unverified_email_gets_no_role_from_the_email_list():
    config = settings(sso_email_roles={"boss@example.org": ["admin"]})
    with pytest.raises(sso.NoRole):
        sso.user_from_claims({"sub": "s-6", "email": "boss@example.org", "email_verified": False}, config)
    user = sso.user_from_claims({"sub": "s-6", "email": "boss@example.org", "email_verified": False,
                                 "roles": ["clinician"]}, config)
    assert (user.username, user.roles) == ("sso:s-6", ("clinician",))  # not the unverified email


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "groups")
    monkeypatch.setenv("APP_SSO_EMAIL_ROLES", '{"A@Example.org": ["pi", "admin"]}')
    monkeypatch.setenv("APP_LOCAL_ACCOUNTS", "false")
    config = get_settings()
    assert (config.sso_role_claim, config.sso_email_roles, config.local_accounts) == (
        "groups", {"a@example.org": ["admin", "pi"]}, False)
    monkeypatch.setenv("APP_SSO_EMAIL_ROLES", '{"a@example.org": ["nurse"]}')
    with pytest.raises(ConfigError, match="APP_SSO_EMAIL_ROLES.*unknown role"):
        get_settings()


def test_sign_in_and_refusal_are_recorded(demo_app):
    sso.sign_in({"sub": "s-7", "email": "carol@example.org", "roles": ["clinician"]}, settings())
    with pytest.raises(sso.NoRole):
        sso.sign_in({"sub": "s-8", "email": "nobody@example.org"}, settings())
    events = oracle.rows(store(), "access_events")
    rows = events[["user_name", "action", "detail"]].values.tolist()
    assert ["carol@example.org", "sign_in", "single sign-on (clinician)"] in rows
    assert ["nobody@example.org", "access_denied", "single sign-on: no role for this account"] in rows
    assert oracle.rows(store(), "audit_log")["kind"].tolist()[-2:] == ["access_sign_in", "access_access_denied"]


def test_expired_identity_token_is_not_a_sign_in(demo_app):
    claims = {"sub": "s-7", "email": "carol@example.org", "roles": ["clinician"], "exp": 1_000_000}
    with pytest.raises(sso.SignInExpired):
        sso.sign_in(claims, settings(), now=1_000_000)
    assert sso.sign_in(claims, settings(), now=999_999).roles == ("clinician",)
    assert access_actions("carol@example.org") == ["sign_in"]  # the expired one left no record


def test_readme_documents_the_sign_in_settings():
    readme = (PROJ_ROOT / "README.md").read_text()
    assert "### Single sign-on" in readme
    missing = [f"APP_{name.upper()}" for name in ("local_accounts", "sso_role_claim", "sso_email_roles")
               if not re.search(rf"\| `APP_{name.upper()}` \|", readme)]
    assert missing == []


# ---- the app (AppTest): st.user seeded as the identity provider would fill it -----------------


def app_with(claims: dict | None, secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets = {"auth": AUTH} if secrets is None else secrets
    if claims is not None:
        at.user = {"is_logged_in": True, "iss": "http://localhost:9400", **claims}
    return at.run()


@pytest.mark.usefixtures("demo_app")
def test_app_offers_single_sign_on_beside_local_accounts():
    at = app_with(None)
    assert "Sign in with single sign-on" in [b.label for b in at.button]
    assert [f.key for f in at.text_input] == ["signin_username", "signin_password"]
    named = app_with(None, {"auth": {**{k: AUTH[k] for k in ("redirect_uri", "cookie_secret")},
                                     "okta": {k: AUTH[k] for k in ("client_id", "client_secret",
                                                                   "server_metadata_url")}}})
    assert [b.label for b in named.button if b.key.startswith("signin_sso")] == ["Sign in with Okta"]


@pytest.mark.usefixtures("demo_app")
def test_app_without_auth_section_shows_local_accounts_only():
    at = app_with(None, secrets={})
    assert not [b for b in at.button if (b.key or "").startswith("signin_sso")]
    assert [t.value for t in at.title] == ["Sign in"]


@pytest.mark.usefixtures("demo_app")
def test_app_local_accounts_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("APP_LOCAL_ACCOUNTS", "false")
    at = app_with(None)
    assert not at.text_input and "Sign in with single sign-on" in [b.label for b in at.button]
    at = app_with(None, secrets={})
    assert "No way to sign in is configured" in at.error[0].value


@pytest.mark.usefixtures("demo_app")
def test_app_signed_in_with_provider_lands_on_the_role_page(monkeypatch):
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "roles")
    at = app_with({"sub": "s-1", "email": "carol@example.org", "name": "Carol C", "roles": ["clinician"]})
    assert [t.value for t in at.title] == ["Score a patient"]
    assert "Carol C" in texts(at)
    assert access_actions("carol@example.org") == ["sign_in"]


@pytest.mark.usefixtures("demo_app")
def test_app_asks_again_when_the_provider_sign_in_has_expired(monkeypatch):
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "roles")
    at = app_with({"sub": "s-1", "email": "carol@example.org", "roles": ["clinician"],
                   "exp": int(time.time()) - 60})
    assert [t.value for t in at.title] == ["Sign in"]
    assert [i.value for i in at.info] == ["Your single sign-on has expired. Please sign in again."]
    assert access_actions("carol@example.org") == []


@pytest.mark.usefixtures("demo_app")
def test_app_refuses_a_provider_account_without_role(monkeypatch):
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "roles")
    at = app_with({"sub": "s-9", "email": "nobody@example.org", "roles": ["nurse"]})
    assert [t.value for t in at.title] == ["Sign in"]
    assert at.error[0].value == ("Access refused: no role for this account (nobody@example.org). "
                                 "Ask an administrator for a role.")
    assert "signin_sso_sign_out" in [b.key for b in at.button]
    at.run()  # the same session: the refusal is recorded once
    assert access_actions("nobody@example.org") == ["access_denied"]


@pytest.mark.usefixtures("demo_app")
def test_app_idle_provider_session_signs_out_of_the_provider_too(monkeypatch):
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "roles")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets = {"auth": AUTH}
    at.user = {"is_logged_in": True, "sub": "s-1", "email": "carol@example.org", "roles": ["clinician"]}
    at.session_state["user"] = sso.User("carol@example.org", "Carol C", ("clinician",))
    at.session_state["app_sso"] = True
    at.session_state["app_last_seen"] = time.time() - 16 * 60
    at.run()
    assert [t.value for t in at.title] == ["Sign in"]
    assert at.user["is_logged_in"] is False  # st.logout() ran: the identity cookie goes as well
    assert access_actions("carol@example.org") == ["idle_sign_out"]


# ---- a real round trip through a mock OpenID Connect provider, in Chromium --------------------


@pytest.fixture(scope="module")
def idp():
    """A mock OpenID Connect provider on a free localhost port with two known subjects."""
    oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
    users = [
        oidc_provider_mock.User(sub="carol-sub", claims={
            "email": "Carol.Clinician@Example.org", "name": "Carol Clinician",
            "roles": ["clinician", "nurse"]}),
        oidc_provider_mock.User(sub="nobody-sub", claims={
            "email": "nobody@example.org", "name": "No Body", "roles": ["nurse"]}),
    ]
    with oidc_provider_mock.run_server_in_thread(user_claims=users) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def sso_db(tmp_path: Path, monkeypatch, idp) -> Iterator[Path]:
    """Settings for the server (uvicorn serve:app) with an [auth] section for the mock provider, kept in
    a temporary secrets file; yields the store file the app will use."""
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(  # Streamlit puts its own port in place of {port}
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "test-only-cookie-secret-0123456789"\n'
        'client_id = "hyperkalaemia-app"\n'
        'client_secret = "test-only-client-secret"\n'
        f'server_metadata_url = "{idp}/.well-known/openid-configuration"\n')
    monkeypatch.setenv("STREAMLIT_SECRETS_FILES", str(secrets))  # instead of .streamlit/secrets.toml
    monkeypatch.setenv("APP_SSO_ROLE_CLAIM", "roles")
    try:
        yield tmp_path / "app.duckdb"
    finally:
        core_store.close_all()


def sign_in_at_provider(page, url: str, idp: str, subject: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Sign in with single sign-on", exact=True).wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Sign in with single sign-on", exact=True).click()
    page.wait_for_url(f"{idp}/oauth2/authorize**", timeout=20_000)
    page.get_by_placeholder("sub").fill(subject)
    page.get_by_role("button", name="Authorize", exact=True).click()


def provider_access(db: Path, username: str) -> list[tuple[str, str]]:
    """(action, detail) of a user's access events in the store file the app server used."""
    return access_actions(username, db=db, detail=True)


# The mock provider runs in this process on Authlib APIs that Authlib now marks as deprecated.
# Authlib adds an "always" filter for its warnings when first imported: import it here, before a
# test's own filters are in place, so that this mark can silence them.
quiet_mock = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@contextlib.contextmanager
def signed_in_at_provider(sso_db, idp, subject: str):
    """A browser page on the real app, after signing in at the mock provider as `subject`."""
    from playwright.sync_api import sync_playwright

    with streamlit_server(sso_db) as url, sync_playwright() as pw:
        chromium = launch(pw)
        try:
            page = chromium.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            sign_in_at_provider(page, url, idp, subject)
            yield page
        finally:
            chromium.close()


@pytest.mark.browser
@NEEDS_CHROMIUM
@quiet_mock
def test_browser_provider_sign_in_lands_on_clinician_page_and_signs_out(sso_db, idp):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    with signed_in_at_provider(sso_db, idp, "carol-sub") as page:
        page.get_by_role("heading", name="Score a patient").wait_for(timeout=20_000)
        wait_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "Carol Clinician" in sidebar and "carol.clinician@example.org" in sidebar
        end_session = page.get_by_role("button", name="End session", exact=True)
        signed_out = page.get_by_role("button", name="Sign in with single sign-on", exact=True)
        page.get_by_role("button", name="Sign out", exact=True).click()
        try:  # the provider's confirmation page, or straight back to sign-in
            end_session.or_(signed_out).first.wait_for(timeout=45_000)
        except PlaywrightTimeout:
            pytest.fail(f"no end-session page after sign-out: {page.url}\n"
                        f"{page.locator('body').inner_text()[:800]}")
        if end_session.is_visible():
            end_session.click()
        signed_out.wait_for(timeout=30_000)
        wait_idle(page)
        assert not page.get_by_role("heading", name="Score a patient").count()
    assert provider_access(sso_db, "carol.clinician@example.org") == [
        ("sign_in", "single sign-on (clinician)"), ("sign_out", "single sign-on")]


@pytest.mark.browser
@NEEDS_CHROMIUM
@quiet_mock
def test_browser_provider_account_without_role_is_refused(sso_db, idp):
    with signed_in_at_provider(sso_db, idp, "nobody-sub") as page:
        message = page.get_by_text("Access refused: no role for this account (nobody@example.org).")
        message.wait_for(timeout=20_000)
        wait_idle(page)
        assert page.get_by_role("heading", name="Sign in").is_visible()
        assert not page.get_by_role("heading", name="Score a patient").count()
    assert provider_access(sso_db, "nobody@example.org") == [
        ("access_denied", "single sign-on: no role for this account")]
