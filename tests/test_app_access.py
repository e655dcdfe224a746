"""Role x page matrix: each role is offered exactly the pages of its actions (core.access) and
sees nothing of the others."""

import pytest
import store_oracle as oracle
from app_support import (
    DENIED,
    PAGE_ACTION,
    PAGE_OWNERS,
    PAGE_TITLE,
    REPO,
    TIMEOUT,
    access_actions,
    sign_in,
    signed_in,
    start,
    store,
)
from streamlit.testing.v1 import AppTest

from core import auth

pytestmark = pytest.mark.usefixtures("demo_app")

ROLES = ["anonymous", "clinician", "reviewer", "pi", "admin"]


@pytest.mark.parametrize("role", ROLES)
def test_navigation_offers_only_the_roles_pages(role):
    at = signed_in(role)
    assert not at.exception
    owned = [p for p, owners in PAGE_OWNERS.items() if role in owners]
    assert [t.value for t in at.title] == ([PAGE_TITLE[owned[0]]] if owned else ["Sign in"])
    for page in set(PAGE_OWNERS) - set(owned):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(page)
    for page in owned:
        at.switch_page(page).run()
        assert [t.value for t in at.title] == [PAGE_TITLE[page]]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGE_OWNERS))
def test_page_opened_directly_shows_only_to_its_role(role, page):
    at = AppTest.from_file(str(REPO / page), default_timeout=TIMEOUT)
    username = f"demo-{role}"
    if role != "anonymous":
        at.session_state["user"] = auth.User(username, username, (role,))
    at.run()
    assert not at.exception
    if role in PAGE_OWNERS[page]:
        assert [t.value for t in at.title] == [PAGE_TITLE[page]]
        assert "access_denied" not in access_actions(username)
        return
    assert [e.value for e in at.error] == [DENIED]
    shown = (list(at.title) + list(at.dataframe) + list(at.metric) + list(at.text_input)
             + list(at.number_input) + list(at.tabs) + list(at.markdown) + list(at.caption))
    assert shown == []
    recorded = "(anonymous)" if role == "anonymous" else username
    events = oracle.rows(store(), "access_events")
    denial = events[(events["user_name"] == recorded) & (events["action"] == "access_denied")]
    assert denial["detail"].tolist() == [f"action {PAGE_ACTION[page]}"]


def test_user_with_two_roles_gets_both_pages():
    auth.add_user("carol", roles=["clinician", "pi"], password="carol-long-password", by="test")
    at = sign_in(start(), "carol", "carol-long-password")
    for page in ("views/review_queue.py", "views/admin.py"):
        with pytest.raises(ValueError):
            at.switch_page(page)
    for page in ("views/score.py", "views/outcomes.py", "views/monitoring.py", "views/governance.py"):
        at.switch_page(page).run()
        assert [t.value for t in at.title] == [PAGE_TITLE[page]]
