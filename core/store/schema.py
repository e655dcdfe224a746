"""The store's schema: numbered migrations (applied in order, each in a transaction and
recorded in schema_migrations), the event tables' columns, and which tables are append-only.

A migration that has run is history: existing stores were made by it, so its text is never
edited; a later migration changes what it made."""

from core.store.records import RECORDS

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "m001_events", """
        CREATE TABLE audit_log (
            seq BIGINT PRIMARY KEY, recorded_at TIMESTAMP NOT NULL, kind TEXT NOT NULL,
            actor TEXT NOT NULL, subject TEXT, event_table TEXT NOT NULL, content_json TEXT NOT NULL,
            content_sha256 TEXT NOT NULL, prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL);
        CREATE TABLE predictions (
            prediction_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, source TEXT NOT NULL, patient_key TEXT NOT NULL,
            input_sha256 TEXT NOT NULL, risk DOUBLE NOT NULL,
            risk_low DOUBLE NOT NULL, risk_high DOUBLE NOT NULL, risk_class TEXT NOT NULL,
            confidence DOUBLE NOT NULL, routing TEXT NOT NULL, reasons_json TEXT NOT NULL,
            reason_codes VARCHAR[] NOT NULL,
            factors_json TEXT NOT NULL, model_version TEXT NOT NULL, model_sha256 TEXT NOT NULL);
        -- Raw inputs and patient references: the only PHI, the only rows a retention purge removes.
        CREATE TABLE phi_inputs (
            prediction_id TEXT PRIMARY KEY, created_at TIMESTAMP NOT NULL, patient_ref TEXT NOT NULL,
            input_json TEXT NOT NULL);
        CREATE TABLE rejected_inputs (
            rejection_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, source TEXT NOT NULL, fields_json TEXT NOT NULL,
            payload_sha256 TEXT NOT NULL, model_version TEXT);
        CREATE TABLE model_activations (
            activation_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, version TEXT NOT NULL, model_sha256 TEXT NOT NULL,
            reason TEXT NOT NULL);
    """),
    (2, "m002_users_and_access", """
        CREATE TABLE user_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, username TEXT NOT NULL, action TEXT NOT NULL,
            display_name TEXT NOT NULL, roles_json TEXT NOT NULL, active BOOLEAN NOT NULL,
            password_hash TEXT NOT NULL);
        CREATE TABLE access_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
    """),
    (3, "m003_retention_and_configuration", """
        CREATE TABLE retention_purges (
            purge_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, cutoff TIMESTAMP NOT NULL, retention_days INTEGER NOT NULL,
            rows_removed BIGINT NOT NULL);
        CREATE TABLE config_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, settings_json TEXT NOT NULL);
    """),
    (4, "m004_review_decisions", """
        CREATE TABLE review_decisions (
            decision_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, reviewer_name TEXT NOT NULL, prediction_id TEXT NOT NULL,
            decision TEXT NOT NULL, model_class TEXT NOT NULL, reviewer_class TEXT NOT NULL,
            direction TEXT NOT NULL, reason_code TEXT NOT NULL, comment TEXT NOT NULL,
            meaning TEXT NOT NULL, supersedes TEXT);
    """),
    (5, "m005_outcomes", """
        CREATE TABLE outcomes (
            outcome_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, prediction_id TEXT NOT NULL, event BOOLEAN NOT NULL,
            event_date DATE, measured_value DOUBLE, source TEXT NOT NULL, supersedes TEXT);
    """),
    (6, "m006_governance", """
        CREATE TABLE service_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, action TEXT NOT NULL, reason TEXT NOT NULL);
        CREATE TABLE signoffs (
            signoff_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, signer_name TEXT NOT NULL, signer_role TEXT NOT NULL,
            signed_on DATE NOT NULL, scope TEXT NOT NULL, model_version TEXT NOT NULL);
    """),
    # Which deployment a store (and so each backup of it) belongs to: written once, when the
    # store is created (or first opened by a version that has this table), never changed. A
    # restore refuses a backup of another deployment. IF NOT EXISTS: a restore may seed it.
    (7, "m007_store_identity", """
        CREATE TABLE IF NOT EXISTS store_identity (
            deployment_id TEXT PRIMARY KEY, created_at TIMESTAMP NOT NULL);
        INSERT INTO store_identity SELECT uuid()::TEXT, now()::TIMESTAMP
            WHERE NOT EXISTS (SELECT 1 FROM store_identity);
    """),
    # Where a sign-in came from (lockout is per account and source), and each verification of
    # the whole audit chain (the governance page checks only what was added since the last one).
    (8, "m008_access_source_and_verifications", """
        ALTER TABLE access_events ADD COLUMN source TEXT NOT NULL DEFAULT '';
        CREATE TABLE audit_verifications (
            verification_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL, user_name TEXT NOT NULL, through_seq BIGINT NOT NULL,
            through_hash TEXT NOT NULL, intact BOOLEAN NOT NULL, problems INTEGER NOT NULL,
            first_problem TEXT NOT NULL);
    """),
    # The measured value that defines an outcome is named by each model's spec, not the store.
    # A store made by an earlier release named the column after that release's one outcome:
    # legacy_measured_column() renames it, and the rename is kept in renamed_columns, because
    # the audit entries recorded before it still name the old column.
    (9, "m009_generic_outcome_value", """
        CREATE TABLE IF NOT EXISTS renamed_columns (
            table_name TEXT NOT NULL, old_name TEXT NOT NULL, new_name TEXT NOT NULL);
    """),
    (10, "m010_api_clients", """
        CREATE TABLE client_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, client_name TEXT NOT NULL, action TEXT NOT NULL,
            roles_json TEXT NOT NULL, active BOOLEAN NOT NULL, token_sha256 TEXT NOT NULL);
    """),
    # What clinicians did with the cards a hospital system showed them (CDS Hooks feedback).
    (11, "m011_cds_feedback", """
        CREATE TABLE cds_feedback (
            feedback_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, prediction_id TEXT NOT NULL, outcome TEXT NOT NULL,
            override_reason_system TEXT NOT NULL, override_reason_code TEXT NOT NULL,
            override_reason_display TEXT NOT NULL, user_comment TEXT NOT NULL,
            outcome_timestamp TIMESTAMP NOT NULL);
    """),
    # A store migrated by an earlier m009 (which renamed the measured column without keeping the
    # rename) has no renamed_columns table: made here, and the rename recovered from the chain.
    (12, "m012_renamed_columns_kept", """
        CREATE TABLE IF NOT EXISTS renamed_columns (
            table_name TEXT NOT NULL, old_name TEXT NOT NULL, new_name TEXT NOT NULL);
    """),
    # The deploy-or-stay-a-research-artefact assessment: each answer set, who gave it and when.
    (13, "m013_deployment_assessments", """
        CREATE TABLE deployment_assessments (
            assessment_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL, user_name TEXT NOT NULL, respondent_name TEXT NOT NULL,
            model_version TEXT NOT NULL, informs_decision BOOLEAN NOT NULL,
            recurring_use BOOLEAN NOT NULL, non_research_consumer BOOLEAN NOT NULL,
            service_requested BOOLEAN NOT NULL, capacity_to_run BOOLEAN NOT NULL,
            notes TEXT NOT NULL, recommendation TEXT NOT NULL);
    """),
    # Alerts sent by e-mail or webhook, alerts that failed to go out, and conditions cleared.
    (14, "m014_alert_notifications", """
        CREATE TABLE alert_notifications (
            notification_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL,
            created_at TIMESTAMP NOT NULL, user_name TEXT NOT NULL, condition_key TEXT NOT NULL,
            kind TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL,
            destination TEXT NOT NULL, title TEXT NOT NULL, message TEXT NOT NULL,
            error TEXT NOT NULL);
    """),
    # The stop rules' recommendations: raised, acknowledged by the PI, cleared (core.stop_rules).
    (15, "m015_stop_rule_events", """
        CREATE TABLE stop_rule_events (
            event_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, rule TEXT NOT NULL, model_version TEXT NOT NULL,
            action TEXT NOT NULL, evidence TEXT NOT NULL, note TEXT NOT NULL);
    """),
    # A synthetic history seeded into a demo-mode store: its range and counts (core.demo_history).
    (16, "m016_demo_history", """
        CREATE TABLE demo_history (
            seeding_id TEXT PRIMARY KEY, audit_seq BIGINT NOT NULL, created_at TIMESTAMP NOT NULL,
            user_name TEXT NOT NULL, first_at TIMESTAMP NOT NULL, last_at TIMESTAMP NOT NULL,
            predictions INTEGER NOT NULL, rejected_inputs INTEGER NOT NULL,
            review_decisions INTEGER NOT NULL, outcomes INTEGER NOT NULL,
            description TEXT NOT NULL);
    """),
]
RENAMES_KEPT = 12  # the migration that makes sure renamed_columns exists
GENERIC_OUTCOME = 9  # the migration after which the outcomes table has MEASURED
MEASURED = "measured_value"


def legacy_measured_column(columns: list[str]) -> str | None:
    """The measured-value column of an outcomes table made before m009 (the one column that
    is not an OutcomeRecord field), or None when the table already has `measured_value`."""
    if MEASURED in columns:
        return None
    legacy = [c for c in columns if c not in TABLES["outcomes"]]
    if len(legacy) != 1:
        raise ValueError(f"cannot tell the outcomes table's measured column among {legacy}")
    return legacy[0]

# Event tables and their columns, in insert order, from their records (core/store/records.py).
# Table names never come from input.
TABLES = {table: record.columns() for table, record in RECORDS.items()}
PHI_COLUMNS = ["prediction_id", "created_at", "patient_ref", "input_json"]
AUDIT_COLUMNS = ["seq", "recorded_at", "kind", "actor", "subject", "event_table", "content_json",
                 "content_sha256", "prev_hash", "entry_hash"]
# Tables that refuse UPDATE and DELETE (and so TRUNCATE) in the database itself; phi_inputs
# refuses UPDATE only, because the retention purge deletes from it.
# The identity table as m007 makes it (a restore's copy, and a store moved to a database, make
# it first, with the deployment's own row).
IDENTITY_TABLE = "store_identity (deployment_id TEXT PRIMARY KEY, created_at TIMESTAMP NOT NULL)"
APPEND_ONLY = ["audit_log", "schema_migrations", "store_identity", "renamed_columns"]
