"""The one table of who may do what (core.access): its shape, the refusals it records, and the
README's role table, which must say what the table says."""

import re
from pathlib import Path

import pytest
import store_oracle as oracle
from app_support import access_actions, store

from core import access, auth
from core.config import ROLES

README = Path(__file__).resolve().parent.parent / "README.md"
CLINICAL = ("score", "record_outcome", "review")  # actions about one patient's care


def test_every_action_is_held_and_every_role_holds_one():
    assert set(access.CAPABILITIES) >= {page.action for page in access.PAGES}
    for action, roles in access.CAPABILITIES.items():
        assert roles and set(roles) <= set(ROLES), action
    for role in ROLES:
        assert access.actions_for((role,)), role


def test_duties_are_separated():
    """The administrator runs the service and sees no patient's care; whoever scores a patient
    does not also sign off the review of that score; oversight is not clinical work."""
    for action in CLINICAL:
        assert not access.may(("admin",), action), action
        assert not access.may(("pi",), action), action
    assert not access.may(("clinician",), "review")
    assert not access.may(("reviewer",), "score")


def test_an_unknown_action_is_an_error_not_a_refusal():
    with pytest.raises(KeyError):
        access.may(ROLES, "delete_everything")


def test_two_roles_hold_the_union_of_their_actions():
    both = access.actions_for(("clinician", "pi"))
    assert set(both) == set(access.actions_for(("clinician",))) | set(access.actions_for(("pi",)))
    assert [p.action for p in access.pages_for(("clinician", "pi"))] == [
        p.action for p in access.PAGES if p.action in both]


def test_a_refusal_is_recorded_with_the_action_and_the_source(demo_app):
    user = auth.User("carol", "Carol", ("clinician",))
    assert access.authorise(user, "score", source="10.1.2.3")
    assert access_actions("carol") == []  # an allowed action leaves no denial
    assert not access.authorise(user, "administer", how="by URL", source="10.1.2.3")
    assert not access.authorise(None, "review")
    denials = oracle.rows(store(), "access_events", action="access_denied")
    assert denials[["user_name", "detail", "source"]].values.tolist() == [
        ["carol", "action administer, by URL", "10.1.2.3"], [auth.ANONYMOUS, "action review", ""]]


def _readme_rows() -> dict[frozenset[str], str]:
    """The Sign in section's table: the roles of each row -> what the row says they see."""
    section = README.read_text().split("## Sign in", 1)[1]
    table = section[section.index("| role |"):].split("\n\n", 1)[0]  # the section's first table
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("role", "---"):
            continue
        named = frozenset(re.findall(r"`([a-z]+)`", cells[0]))
        rows[frozenset(ROLES) if cells[0] == "every role" else named] = cells[1]
    return rows


def test_the_readme_role_table_says_what_the_access_table_says():
    rows = _readme_rows()
    expected = {frozenset(access.CAPABILITIES[p.action]) for p in access.PAGES}
    assert set(rows) == expected
    for page in access.PAGES:
        for roles, text in rows.items():
            listed = re.search(rf"(^|\. ){re.escape(page.title)}:", text) is not None
            assert listed == (roles == frozenset(access.CAPABILITIES[page.action])), (page.title, roles)
