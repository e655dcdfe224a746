"""Local accounts: argon2id hashes, account changes as new rows, lockout, demo accounts, CLI."""

import io
from datetime import timedelta

import pytest
import store_oracle as oracle
from app_support import access_actions, store

from core import auth, cli


@pytest.fixture
def accounts(request, monkeypatch):
    """An empty store outside demo mode."""
    request.getfixturevalue("demo_app")
    monkeypatch.setenv("APP_DEMO", "0")
    monkeypatch.setenv("APP_PATIENT_KEY", "test-only-patient-key-0123456789abcdefghij")


def test_add_user_stores_argon2id_hash_only(accounts, monkeypatch):
    monkeypatch.setattr(auth, "_hasher", auth.PasswordHasher())  # the real parameters
    auth.add_user("Alice", roles=["clinician"], password="correct horse battery", by="admin")
    row = store().user("alice")
    assert row["password_hash"].startswith("$argon2id$")
    assert "correct horse" not in row["password_hash"]
    assert auth.sign_in("alice", "correct horse battery") == auth.User("alice", "alice", ("clinician",))


@pytest.mark.parametrize("kwargs, message", [
    ({"roles": ["nurse"]}, "unknown: nurse"),
    ({"roles": []}, "roles must be"),
    ({"password": "short"}, "at least 12"),
    ({"username": "bad name"}, "a username is"),
    ({"username": "demo-admin"}, "reserved for demo accounts"),
    # an email is how single sign-on names a person: a local account must never share it
    ({"username": "ann@hospital.org"}, "no @: an email is a single sign-on identity"),
    ({"username": "sso:12345"}, "a username is"),
])
def test_add_user_rejects_bad_input(accounts, kwargs, message):
    args = {"username": "bob", "roles": ["pi"], "password": "long-enough-pass", **kwargs}
    with pytest.raises(auth.UserError, match=message):
        auth.add_user(args.pop("username"), by="admin", **args)


def test_add_user_twice_is_refused(accounts):
    auth.add_user("bob", roles=["pi"], password="long-enough-pass", by="admin")
    with pytest.raises(auth.UserError, match="already exists"):
        auth.add_user("bob", roles=["admin"], password="long-enough-pass", by="admin")


def test_disable_user_is_a_new_row_and_blocks_sign_in(accounts):
    auth.add_user("bob", roles=["pi"], password="long-enough-pass", by="admin")
    auth.disable_user("bob", by="admin")
    users = auth.list_users()
    assert users[["username", "active", "last_change"]].values.tolist() == [["bob", False, "disabled"]]
    assert store().count("user_events") == 2
    with pytest.raises(auth.SignInFailed):
        auth.sign_in("bob", "long-enough-pass")
    assert access_actions("bob") == ["sign_in_failed"]


def test_disable_own_account_is_refused(accounts):
    auth.add_user("root", roles=["admin"], password="long-enough-pass", by="setup")
    with pytest.raises(auth.UserError, match="your own"):
        auth.disable_user("root", by="root")


def test_sign_in_unknown_user_fails_like_wrong_password(accounts):
    with pytest.raises(auth.SignInFailed) as unknown:
        auth.sign_in("nobody", "whatever-password")
    assert not isinstance(unknown.value, auth.AccountLocked)
    assert access_actions(auth.unknown_name("nobody")) == ["sign_in_failed"]


def test_a_typed_name_that_is_no_account_is_kept_only_as_a_keyed_pseudonym(accounts):
    for _ in range(5):  # an MRN typed into the username box, again and again
        with pytest.raises(auth.SignInFailed):
            auth.sign_in("04172238", "whatever-password")
    entries = oracle.rows(store(), "audit_log")
    assert not any("04172238" in text for column in ("actor", "subject", "content_json")
                   for text in entries[column])
    assert not (oracle.rows(store(), "access_events")["user_name"] == "04172238").any()
    pseudonym = auth.unknown_name("04172238")
    assert pseudonym.startswith("(unknown user ") and auth.is_locked(pseudonym)  # still counted


def test_lockout_is_per_account_and_source(accounts):
    auth.add_user("admin1", roles=["admin"], password="long-enough-pass", by="setup")
    for _ in range(5):  # a stranger, from one address
        with pytest.raises(auth.SignInFailed):
            auth.sign_in("admin1", "guess", source="203.0.113.9")
    with pytest.raises(auth.AccountLocked):
        auth.sign_in("admin1", "long-enough-pass", source="203.0.113.9")
    # the admin at the ward PC is not locked out by it
    assert auth.sign_in("admin1", "long-enough-pass", source="10.1.2.3").username == "admin1"
    assert auth.is_locked("admin1", "203.0.113.9") and not auth.is_locked("admin1", "10.1.2.3")


def test_an_administrator_unlocks_an_account_and_it_is_recorded(accounts):
    auth.add_user("bob", roles=["pi"], password="long-enough-pass", by="admin")
    for _ in range(5):
        with pytest.raises(auth.SignInFailed):
            auth.sign_in("bob", "wrong")
    assert auth.is_locked("bob")
    assert cli.main(["users", "unlock", "bob", "--by", "ops"]) == 0
    assert not auth.is_locked("bob")
    assert auth.sign_in("bob", "long-enough-pass").username == "bob"
    assert access_actions("bob", detail=True)[-2] == ("unlocked", "by ops")
    with pytest.raises(auth.UserError, match="no user"):
        auth.unlock_user("nobody", by="ops")


def test_lockout_expires_after_the_lockout_minutes(accounts, monkeypatch):
    auth.add_user("bob", roles=["pi"], password="long-enough-pass", by="admin")
    for _ in range(4):
        with pytest.raises(auth.SignInFailed):
            auth.sign_in("bob", "wrong")
    with pytest.raises(auth.AccountLocked):
        auth.sign_in("bob", "wrong")
    assert auth.is_locked("bob")
    later = auth.now_utc() + timedelta(minutes=16)
    monkeypatch.setattr(auth, "now_utc", lambda: later)
    assert not auth.is_locked("bob")
    assert auth.sign_in("bob", "long-enough-pass").username == "bob"


def test_success_resets_the_failure_count(accounts, monkeypatch):
    monkeypatch.setenv("APP_LOCKOUT_FAILURES", "3")
    auth.add_user("bob", roles=["pi"], password="long-enough-pass", by="admin")
    for _ in range(2):
        with pytest.raises(auth.SignInFailed):
            auth.sign_in("bob", "wrong")
    auth.sign_in("bob", "long-enough-pass")
    with pytest.raises(auth.SignInFailed) as exc:
        auth.sign_in("bob", "wrong")
    assert not isinstance(exc.value, auth.AccountLocked)


def test_access_events_enter_the_audit_chain(accounts):
    auth.record_access("bob", "access_denied", "page admin")
    last = oracle.rows(store(), "audit_log").iloc[-1]
    assert (last["kind"], last["actor"]) == ("access_access_denied", "bob")


def test_demo_accounts_only_in_demo_mode(accounts, monkeypatch):
    assert auth.ensure_demo_accounts() == []
    assert auth.list_users().empty
    monkeypatch.setenv("APP_DEMO", "1")
    assert sorted(auth.ensure_demo_accounts()) == sorted(auth.DEMO_ACCOUNTS)
    assert auth.ensure_demo_accounts() == []  # idempotent
    for name, (role, _, password) in auth.DEMO_ACCOUNTS.items():
        assert auth.sign_in(name, password).roles == (role,)


def test_cli_users_add_reads_password_from_stdin(accounts, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-cli-password\n"))
    assert cli.main(["users", "add", "eve", "--role", "reviewer", "--role", "pi",
                     "--name", "Eve Example", "--by", "ops"]) == 0
    assert auth.sign_in("eve", "a-long-cli-password").roles == ("pi", "reviewer")
    assert cli.main(["users", "list"]) == 0
    out = capsys.readouterr().out
    assert "Eve Example" in out and "pi,reviewer" in out and "$argon2" not in out
    assert cli.main(["users", "disable", "eve", "--by", "ops"]) == 0
    assert not store().user("eve")["active"]


def test_cli_users_add_has_no_password_argument():
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["users", "add", "eve", "--role", "pi", "--password", "x"])


def test_cli_users_add_reports_refusal(accounts, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["users", "add", "eve", "--role", "pi"]) == 2
    assert "at least 12" in capsys.readouterr().err
