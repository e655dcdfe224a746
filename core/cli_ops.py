"""Commands for operating the store: audit, retention, backup and restore."""

from __future__ import annotations

import getpass
from pathlib import Path

from core.config import get_settings
from core.store import open_store


def add_parsers(sub) -> None:
    a = sub.add_parser("audit", help="verify the audit chain or print its head")
    asub = a.add_subparsers(dest="action", required=True)
    v = asub.add_parser("verify", help="exit 0 on an intact chain; else name the first bad entry")
    v.add_argument("--head", help="SEQ:HASH published earlier; also detects a truncated tail")
    asub.add_parser("head", help="print the current head (SEQ:HASH) for publishing elsewhere")

    r = sub.add_parser("retention", help="apply the retention policy")
    rsub = r.add_subparsers(dest="action", required=True)
    p = rsub.add_parser("purge", help="remove raw inputs and patient references past the period")
    p.add_argument("--days", type=int, help="override APP_RETENTION_DAYS for this run")
    p.add_argument("--by", default=getpass.getuser(), help="who runs the purge (recorded)")

    b = sub.add_parser("backup", help="write a consistent copy of the store into DIR")
    b.add_argument("directory", type=Path)
    rs = sub.add_parser("restore", help="replace the store with a backup (app stopped)")
    rs.add_argument("backup_file", type=Path)


def run_audit(args) -> int:
    from core.maintenance import parse_head, verify_audit

    store = open_store(get_settings().db)
    if args.action == "head":
        seq, digest = store.head()
        print(f"{seq}:{digest}")
        return 0
    head = parse_head(args.head) if args.head else None
    problems, (seq, digest) = verify_audit(store, head=head)
    if problems:
        print(f"audit chain FAILED: first bad entry: {problems[0]}")
        for problem in problems[1:20]:
            print(f"  {problem}")
        return 1
    print(f"audit chain intact: {seq} entries, head {seq}:{digest}")
    return 0


def run_retention(args) -> int:
    from core.maintenance import purge_expired

    settings = get_settings()
    days = args.days if args.days is not None else settings.retention_days
    removed = purge_expired(open_store(settings.db), days=days, by=args.by)
    print(f"purged raw inputs and patient references older than {days} days: {removed} records")
    return 0


def run_backup(args) -> int:
    from core.maintenance import backup

    print(f"backup written: {backup(open_store(get_settings().db), args.directory)}")
    return 0


def run_restore(args) -> int:
    from core.maintenance import restore, verify_audit

    settings = get_settings()
    restore(args.backup_file, settings.db)
    problems, (seq, _) = verify_audit(open_store(settings.db))
    print(f"restored {args.backup_file} to {settings.db}; audit chain "
          + ("intact" if not problems else f"FAILED: {problems[0]}") + f" ({seq} entries)")
    return 1 if problems else 0


COMMANDS = {"audit": run_audit, "retention": run_retention, "backup": run_backup,
            "restore": run_restore}
