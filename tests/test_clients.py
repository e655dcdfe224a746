"""API clients: a token shown once and kept only as its hash, revocation, the commands, and the
README's curl example against the real server process, whose log never holds a token."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import httpx
import pytest
from browser_support import streamlit_server
from conftest import MODELS, REPO, run_core
from store_oracle import rows, sql

from core import clients
from core import store as core_store
from core.errors import UserError
from core.verification import verify_whole


def test_a_token_is_returned_once_and_only_its_hash_is_stored(any_store):
    token = clients.add_client("lab-system", roles=["clinician"], by="it")
    assert token.startswith(clients.TOKEN_PREFIX) and len(token) > 40
    row = rows(any_store, "client_events").iloc[0]
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    everything = json.dumps([list(map(str, r)) for r in sql(any_store, "SELECT * FROM audit_log")])
    assert token not in everything and row.token_sha256 not in everything  # the chain: its hash's hash
    assert clients.authenticate(token) == clients.ApiClient("lab-system", ("clinician",))
    assert clients.authenticate(token + "x") is None
    assert clients.authenticate("not-a-token") is None


@pytest.mark.parametrize(("name", "roles", "message"), [
    ("Bad Name", ["clinician"], "client name"), ("ok-name", ["surgeon"], "unknown: surgeon"),
    ("ok-name", [], "roles must be"), ("a@b", ["pi"], "client name")])
def test_a_bad_client_is_refused(any_store, name, roles, message):
    with pytest.raises(UserError, match=message):
        clients.add_client(name, roles=roles, by="it")
    assert any_store.count("client_events") == 0


def test_revoking_ends_the_token_at_once_and_the_name_is_not_reused(any_store):
    token = clients.add_client("ehr", roles=["clinician", "reviewer"], by="it")
    assert clients.authenticate(token) is not None  # now cached
    clients.revoke_client("ehr", by="it")
    assert clients.authenticate(token) is None
    with pytest.raises(UserError, match="already revoked"):
        clients.revoke_client("ehr", by="it")
    with pytest.raises(UserError, match="already exists"):
        clients.add_client("ehr", roles=["clinician"], by="it")
    states = clients.list_clients()
    assert [(c.name, c.roles, c.active, c.last_change) for c in states] == [
        ("ehr", ("clinician", "reviewer"), False, "revoked")]
    assert list(rows(any_store, "client_events").action) == ["created", "revoked"]
    assert verify_whole(any_store, by="it")[0] == []


def test_the_commands_print_the_token_once_and_never_list_it(any_store):
    core_store.close_all()
    added = run_core("clients", "add", "nightly-batch", "--role", "clinician", "--by", "it")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith(clients.TOKEN_PREFIX)
    listed = run_core("clients", "list")
    assert listed.returncode == 0 and "nightly-batch" in listed.stdout
    assert "score" in listed.stdout and "yes" in listed.stdout
    assert token not in listed.stdout and hashlib.sha256(token.encode()).hexdigest() not in listed.stdout
    revoked = run_core("clients", "revoke", "nightly-batch", "--by", "it")
    assert revoked.returncode == 0, revoked.stderr
    again = run_core("clients", "revoke", "nightly-batch", "--by", "it")
    assert again.returncode == 2 and "already revoked" in again.stderr
    assert token not in listed.stderr + added.stderr + revoked.stdout


def _readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(TOKEN=.*?)```", text, re.S)
    assert block, "the README's API example is gone"
    return block.group(1)


@pytest.mark.browser
def test_the_readme_example_scores_through_the_real_server_and_no_log_holds_the_token(tmp_path):
    db = tmp_path / "store.duckdb"
    with streamlit_server(db) as url:
        port = url.rsplit(":", 1)[1]
        # The server holds the store: `clients add` reaches it through its admin channel.
        example = _readme_example().replace("localhost:8501", f"127.0.0.1:{port}")
        example = example.replace(".venv/bin/python", sys.executable)
        script = tmp_path / "example.sh"
        script.write_text("set -euo pipefail\n" + example + '\necho\necho "TOKEN=$TOKEN"\n')
        done = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True,
                              timeout=120, env={"PATH": "/usr/bin:/bin", "APP_DB": str(db),
                                                "APP_MODELS": str(MODELS), "HOME": str(tmp_path)})
        assert done.returncode == 0, done.stderr
        out = done.stdout.splitlines()
        assert '"prediction_id"' in out[-2], done.stdout  # scored, not refused
        token = out[-1].removeprefix("TOKEN=")
        result = json.loads(out[-2])
        assert result["patient_ref"] == "SYN-000001" and 0 <= result["risk"] <= 1
        with httpx.Client(base_url=f"{url}/api/v1") as http:
            state = http.get(f"/predictions/{result['prediction_id']}",
                             headers={"Authorization": f"Bearer {token}"})
            assert state.status_code == 200 and state.json()["risk"] == result["risk"]
            refused = http.get("/model", headers={"Authorization": f"Bearer {token}0"})
            assert refused.status_code == 401
    log = (tmp_path / "streamlit.log").read_text()
    assert "/api/v1/predictions" in log  # the access log is there...
    assert token not in log and token[:12] not in log  # ...without the token
