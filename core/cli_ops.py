"""Commands for operating the store: audit, retention, outcome import, backup and restore, and the
alert check."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from core.admin_channel import serving_command
from core.config import get_settings


def add_parsers(sub) -> None:
    a = sub.add_parser("audit", help="verify the audit chain or print its head")
    asub = a.add_subparsers(dest="action", required=True)
    v = asub.add_parser("verify", help="exit 0 on an intact chain; else name the first bad entry")
    v.add_argument("--head", help="SEQ:HASH published earlier; also detects a truncated tail")
    v.add_argument("--by", default=getpass.getuser(), help="who verifies (the verification is "
                                                           "recorded)")
    asub.add_parser("head", help="print the current head (SEQ:HASH) for publishing elsewhere")

    r = sub.add_parser("retention", help="apply the retention policy")
    rsub = r.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("purge", help="remove raw inputs and patient references past the period")
    p.add_argument("--days", type=int, help="override APP_RETENTION_DAYS for this run")
    p.add_argument("--by", default=getpass.getuser(), help="who runs the purge (recorded)")

    o = sub.add_parser("outcomes", help="record outcomes at the horizon")
    osub = o.add_subparsers(dest="action", required=True)
    oi = osub.add_parser("import", help="record outcomes from a lab-system CSV export; report "
                                        "every rejected row (exit 1 if any)")
    oi.add_argument("csv", type=Path)
    oi.add_argument("--user", default=getpass.getuser(), help="who imports (recorded)")

    mc = sub.add_parser("model-card", help="write MODEL_CARD.md from the artefact (or --check it)")
    mc.add_argument("--version", help="default: the shipped default version")
    mc.add_argument("--output", type=Path, help="default: MODEL_CARD.md in the repo")
    mc.add_argument("--check", action="store_true", help="exit 1 when the file is stale")

    st = sub.add_parser("store", help="the store's schema")
    stsub = st.add_subparsers(dest="action", required=True)
    stsub.add_parser("upgrade", help="bring the store's schema up to this release (on PostgreSQL, "
                                     "run with the schema owner's URL in APP_DB)")
    sm = stsub.add_parser("migrate", help="copy the whole store (every event, its chain, the raw "
                                          "inputs) into an empty PostgreSQL database, then verify it there")
    sm.add_argument("--to", required=True, metavar="URL",
                    help="postgresql://OWNER@HOST/DB (the password in PGPASSWORD)")

    al = sub.add_parser("alerts", help="send the alerts of the conditions in force")
    alsub = al.add_subparsers(dest="action", required=True)
    ac = alsub.add_parser("check", help="send each condition in force once by e-mail and webhook, "
                                        "retry failed ones, record clears (for cron); exit 1 if "
                                        "an alert failed")
    ac.add_argument("--by", default=getpass.getuser(), help="who runs the check (recorded)")

    b = sub.add_parser("backup", help="write a consistent copy of the store into DIR")
    b.add_argument("directory", type=Path)
    rs = sub.add_parser("restore", help="replace the store with a verified backup of this "
                                        "deployment; the replaced store is kept")
    rs.add_argument("backup_file", type=Path)


def run_audit(args) -> int:
    from core.maintenance import parse_head
    from core.store import open_store
    from core.verification import verify_whole

    store = open_store(get_settings().db)
    if args.action == "head":
        seq, digest = store.head()
        print(f"{seq}:{digest}")
        return 0
    head = parse_head(args.head) if args.head else None
    # The database's memory is held down for a command of its own, not in the running service,
    # where it would apply to every clinician's request meanwhile.
    problems, (seq, digest) = verify_whole(store, head=head, by=args.by,
                                           bound_memory=not serving_command())
    if problems:
        print(f"audit chain FAILED: first bad entry: {problems[0]}")
        for problem in problems[1:20]:
            print(f"  {problem}")
        return 1
    print(f"audit chain intact: {seq} entries, head {seq}:{digest}")
    return 0


def run_retention(args) -> int:
    from core.maintenance import purge_expired
    from core.store import open_store

    settings = get_settings()
    days = args.days if args.days is not None else settings.retention_days
    removed = purge_expired(open_store(settings.db), days=days, by=args.by)
    print(f"purged raw inputs and patient references older than {days} days: {removed} records")
    return 0


def run_alerts(args) -> int:
    from core.alerts import check, describe

    report = check(by=args.by)
    for line in describe(report):
        print(line)
    return 0 if report.ok else 1


def run_backup(args) -> int:
    from core.maintenance import backup
    from core.store import open_store

    print(f"backup written: {backup(open_store(get_settings().db), args.directory)}")
    return 0


def run_restore(args) -> int:
    from core.restore import restore

    settings = get_settings()
    done = restore(args.backup_file, settings.db, shared=serving_command())
    print(f"restored {args.backup_file} to {settings.db}; audit chain intact ({done.entries} "
          f"entries, head {done.head[0]}:{done.head[1]})")
    if done.replaced_copy:
        print(f"the store it replaced ({done.entries_replaced} entries) is kept as "
              f"{done.replaced_copy}")
    return 0


def run_model_card(args) -> int:
    from core import artifacts
    from core.config import PROJ_ROOT
    from core.model_card import figures_dir, is_current, write

    settings = get_settings()
    version = args.version or artifacts.default_version(settings.models)
    artefact = artifacts.load(settings.models, version)
    output = args.output or PROJ_ROOT / "MODEL_CARD.md"
    if not args.check:
        from core.file_guard import protected_reason

        reason = protected_reason(output, settings)
        if reason:
            print(f"error: --output {output} {reason}; choose another name", file=sys.stderr)
            return 2
    if args.check:
        if not is_current(output, artefact):
            print(f"{output} is stale: regenerate it with `python -m core model-card`")
            return 1
        print(f"{output} matches model {version}")
        return 0
    write(output, artefact)
    print(f"wrote {output} and {figures_dir(output).name}/ for model {version}")
    return 0


def run_outcomes(args) -> int:
    from core.outcomes import import_outcomes

    if not args.csv.is_file():
        print(f"error: {args.csv} is not a file")
        return 2
    try:
        report = import_outcomes(args.csv, user=args.user)
    except ValueError as exc:  # not a readable CSV (empty, malformed, wrong encoding)
        print(f"error: cannot read {args.csv}: {exc}")
        return 2
    rejected = report["rejected"]
    print(f"{args.csv}: {report['rows']} rows, {report['recorded']} recorded, {len(rejected)} rejected")
    for entry in rejected:  # row numbers count data rows from 1, after the header
        problems = "; ".join(e["message"] if e["field"].startswith("(") else f"{e['field']}: {e['message']}"
                             for e in entry["errors"])
        print(f"  row {entry['row']}: {problems}")
    return 1 if rejected else 0


def run_store(args) -> int:
    from core.store import open_store

    store = open_store(get_settings().db)  # opening migrates, or says why it cannot
    if args.action == "migrate":
        return _move_store(store, args.to)
    print(f"store {store.path}: schema up to date (chain head at seq {store.last_seq()})")
    return 0


def _move_store(source, url: str) -> int:
    from core.config import redacted_url
    from core.errors import CoreError
    from core.store import is_database_url
    from core.store.postgres import PostgresStore
    from core.store.transfer import copy_events, differences, identity
    from core.verification import verify_audit

    if not is_database_url(url):
        raise CoreError(f"--to must be a postgresql:// URL, not {url!r}")
    if serving_command():  # what the service records after the copy would not be moved
        raise CoreError("stop the service first: a store is moved while nothing writes to it "
                        "(RUNBOOK.md, Use the institution's PostgreSQL)")
    target = PostgresStore(url, identity=identity(source))
    try:
        counts = copy_events(source, target)
        problems, head = verify_audit(target)
        if head != source.head():
            problems.append(f"the destination's head {head[0]}:{head[1]} is not the source's")
        problems += differences(source, target)
    finally:
        target.close()
    print(f"copied into {redacted_url(url)}: " + ", ".join(f"{t} {n}" for t, n in counts.items() if n))
    if problems:
        print("error: the destination differs from the source:\n  " + "\n  ".join(problems),
              file=sys.stderr)
        return 1
    print(f"verified: head {head[0]}:{head[1]} equal, every row equal; now start the service with "
          "APP_DB set to the database's URL for its service role")
    return 0


COMMANDS = {"store": run_store, "model-card": run_model_card, "audit": run_audit, "retention": run_retention, "backup": run_backup,
            "restore": run_restore, "outcomes": run_outcomes, "alerts": run_alerts}
