"""Administrator: accounts (add, disable), model versions (activate, with a reason), backup and
audit verification while the app runs."""

import json

import pandas as pd
import streamlit as st

from core import auth
from core.config import get_settings
from core.display import field_label
from core.errors import ArtefactMismatch, CoreError, StoreUnavailable
from core.maintenance import backup_now
from core.registry import ModelVersion, model_registry
from core.serving import activate
from core.text import md_text
from core.verification import verify_whole
from ui import session

user = session.guard("administer")

settings = get_settings()
st.title("Admin")
users_tab, models_tab, maintenance_tab = st.tabs(["Users", "Models", "Backup and audit"])

with users_tab:
    try:
        users = auth.list_users()
    except StoreUnavailable as exc:
        st.error(f"The store is unavailable: {exc}")
        st.stop()
    users["roles"] = users["roles_json"].map(lambda s: ", ".join(json.loads(s)))
    st.header("Accounts")
    st.dataframe(users[["username", "display_name", "roles", "active", "last_change", "changed_at",
                        "changed_by"]], hide_index=True, key="admin_users", column_config={
        "username": "Username", "display_name": "Printed name", "roles": "Roles", "active": "Active",
        "last_change": "Last change", "changed_at": st.column_config.DatetimeColumn("Changed (UTC)"),
        "changed_by": "Changed by"})

    with st.form("admin_add_user", clear_on_submit=True):
        st.subheader("Add a user")
        new_name = st.text_input(field_label("Username", required=True), key="admin_new_username")
        new_display = st.text_input(field_label("Printed name", required=False), key="admin_new_display")
        new_roles = st.multiselect(field_label("Roles", required=True), auth.ROLES,
                                   format_func=auth.ROLE_LABELS.get, key="admin_new_roles")
        new_pw = st.text_input(field_label(f"Initial password (at least {auth.MIN_PASSWORD_LENGTH} "
                                           "characters)", required=True),
                               type="password", key="admin_new_password")
        if st.form_submit_button("Add user"):
            try:
                auth.add_user(new_name, roles=new_roles, password=new_pw, display_name=new_display,
                              by=user.username)
                st.success(f"Added {new_name}.")
            except auth.UserError as exc:
                st.error(f"Not added: {exc}.")

    def _account_action(name: str, title: str, names: list[str], verbs: tuple[str, str],
                        action, detail: str = "") -> None:
        """One form: pick an account, apply `action` to it (recorded), say what happened."""
        verb, done = verbs
        with st.form(f"admin_{name}_user"):
            st.subheader(title)
            if detail:
                st.markdown(detail)
            target = st.selectbox(field_label("User", required=True), names, index=None,
                                  key=f"admin_{name}_username")
            if st.form_submit_button(verb):
                try:
                    action(target or "", by=user.username)
                    st.success(f"{done.capitalize()} {target}.")
                except auth.UserError as exc:
                    st.error(f"Not {done}: {exc}.")

    _account_action("disable", "Disable a user", users.loc[users["active"], "username"].tolist(),
                    ("Disable", "disabled"), auth.disable_user)
    _account_action("unlock", "Unlock a user", users["username"].tolist(), ("Unlock", "unlocked"),
                    auth.unlock_user, "A user locked out after failed sign-ins, from every address.")

def _version_row(v: ModelVersion) -> dict:
    if v.problem:
        return {"version": v.version, "problem": v.problem}
    return {"version": v.version, "created": v.created, "synthetic": v.synthetic, "AUROC": v.auroc,
            "serving": v.serving}


with models_tab:
    try:
        registry = model_registry(settings)
    except StoreUnavailable as exc:
        st.error(f"The store is unavailable: {exc}")
        st.stop()
    except ArtefactMismatch as exc:  # the models' bucket cannot be read
        st.error(f"The model versions cannot be listed: {exc}")
        st.stop()
    st.header("Model versions")
    st.dataframe([_version_row(v) for v in registry.versions], hide_index=True, key="admin_models",
                 column_config={"version": "Version", "problem": "Problem", "created": "Created",
                                "synthetic": "Synthetic data", "AUROC": "AUROC", "serving": "Serving"})
    st.subheader("Activation history")
    st.dataframe(pd.DataFrame([a.model_dump() for a in registry.activations],
                              columns=["created_at", "version", "model_sha256", "user_name", "reason"]),
                 hide_index=True, key="admin_activations", column_config={
                     "created_at": st.column_config.DatetimeColumn("Activated (UTC)"),
                     "version": "Version", "model_sha256": "Model file sha256", "user_name": "By",
                     "reason": "Reason"})

    with st.form("admin_activate"):
        st.subheader("Activate a version")
        st.markdown("Its files are verified first.")
        version = st.selectbox(field_label("Version", required=True), [v.version for v in registry.versions],
                               index=None, key="admin_activate_version")
        reason = st.text_input(field_label("Reason (recorded)", required=True), key="admin_activate_reason")
        if st.form_submit_button("Activate"):
            try:
                artefact = activate(version or "", by=user.username, reason=reason)
                st.success(f"Model {artefact.version} now serves.")
            except (ArtefactMismatch, ValueError) as exc:
                st.error(f"Not activated: {exc}")

with maintenance_tab:
    st.header("Backup and audit")
    st.markdown(f"Backups are written to `{settings.backup_dir}` while the app keeps running "
                "(writes wait a moment while the copy is taken). Copy them off this machine.")
    if st.button("Back up now", key="admin_backup"):
        try:
            path = backup_now(settings)
            st.success(f"Backup written: {path.name}")
        except (CoreError, OSError) as exc:
            st.error(f"No backup was written: {md_text(exc)}")
    if st.button("Verify the audit chain", key="admin_verify"):
        try:
            problems, (seq, digest) = verify_whole(by=user.username)
        except CoreError as exc:
            st.error(f"The audit chain could not be verified: {md_text(exc)}")
        else:
            if problems:
                st.error(f"Audit chain FAILED. First bad entry: {md_text(problems[0])}")
            else:
                st.success(f"Audit chain intact: {seq} entries. Head {seq}:{digest} (verification "
                           "recorded)")
