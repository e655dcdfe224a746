"""Command line: `python -m core <command>`. Every command is listed in the README."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from core import admin_channel, cli_clients, cli_governance, cli_ops
from core.config import get_settings
from core.errors import BatchStopped, CoreError, InvalidInput


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a new model version from an extract")
    t.add_argument("--data", type=Path, required=True, help="the extract (CSV)")
    t.add_argument("--spec", type=Path, required=True, help="the spec (JSON)")
    t.add_argument("--version", required=True)
    t.add_argument("--by", default=getpass.getuser(), help="who trained it (recorded)")

    i = sub.add_parser("import-model", help="import a team's fitted model (not retrained)")
    i.add_argument("--pipeline", type=Path, required=True,
                   help="the fitted model: a pickle or joblib file you vouch for")
    i.add_argument("--data", type=Path, required=True,
                   help="held-out data (never used to fit it), in the spec's extract format")
    i.add_argument("--spec", type=Path, required=True, help="the spec (JSON)")
    i.add_argument("--version", required=True)
    i.add_argument("--recalibrate", action="store_true",
                   help="recalibrate its risks on the calibration half of the data (recorded)")
    i.add_argument("--by", default=getpass.getuser(),
                   help="who imports it and vouches for the file (recorded)")

    m = sub.add_parser("models", help="list, verify or activate model versions")
    msub = m.add_subparsers(dest="action", required=True)
    msub.add_parser("list", help="versions, data hash, AUROC, which is active")
    v = msub.add_parser("verify", help="exit 0 only if every file matches its recorded hash")
    v.add_argument("version", nargs="?")
    a = msub.add_parser("activate", help="make a version the serving one (recorded)")
    a.add_argument("version")
    a.add_argument("--by", required=True)
    a.add_argument("--reason", required=True)
    pb = msub.add_parser("publish", help="copy a verified version from a folder into APP_MODELS "
                                         "(a bucket: uploaded whole, manifest last)")
    pb.add_argument("version")
    pb.add_argument("--from", dest="source", type=Path, required=True,
                    help="the models folder that has it, e.g. model_artifacts")
    pb.add_argument("--default", action="store_true",
                    help="also make it the default version there (DEFAULT_VERSION)")

    b = sub.add_parser("score-batch", help="score a CSV file of patients")
    b.add_argument("--input", type=Path, required=True)
    b.add_argument("--output", type=Path, required=True)
    b.add_argument("--user", default=getpass.getuser(), help="who is scoring (recorded)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    u = sub.add_parser("users", help="add, disable or list local accounts")
    usub = u.add_subparsers(dest="action", required=True)
    ua = usub.add_parser("add", help="create an account (password from a prompt or stdin)")
    ua.add_argument("username")
    ua.add_argument("--role", action="append", required=True, dest="roles",
                    help="clinician, reviewer, pi or admin (repeat for several)")
    ua.add_argument("--name", default="", help="name printed in the app")
    ua.add_argument("--by", default=getpass.getuser(), help="who makes the change (recorded)")
    ud = usub.add_parser("disable", help="stop an account from signing in (recorded)")
    ud.add_argument("username")
    ud.add_argument("--by", default=getpass.getuser(), help="who makes the change (recorded)")
    uu = usub.add_parser("unlock", help="lift a lockout after failed sign-ins (recorded)")
    uu.add_argument("username")
    uu.add_argument("--by", default=getpass.getuser(), help="who makes the change (recorded)")
    usub.add_parser("list", help="accounts, roles and whether they are active")
    cli_ops.add_parsers(sub)
    cli_clients.add_parsers(sub)
    cli_governance.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command: inside the running service when it holds the store and the command opens
    it (core.admin_channel), else in this process."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    return _reporting(lambda: _forward_or_run(args, argv))


def parse_args(argv: list[str], *, user: str | None = None) -> argparse.Namespace:
    """A command line parsed as `main` parses it; `user`: who runs it, the default of every
    option that defaults to the OS user running the command (`--by`, `--user`), for a command
    that the service runs on someone's behalf."""
    parser = _parser()
    if user is not None:
        _default_user(parser, getpass.getuser(), user)
    return parser.parse_args(argv)


def _default_user(parser: argparse.ArgumentParser, me: str, user: str) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _default_user(sub, me, user)
        elif action.option_strings and action.default == me:
            action.default = user


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command in this process; its exit code (errors are printed, not raised)."""
    return _reporting(lambda: _run(args))


def asks_password(args: argparse.Namespace) -> bool:
    """Whether the command reads a password (at a prompt, or from stdin when piped)."""
    return args.command == "users" and args.action == "add"


def runs_here(args: argparse.Namespace) -> bool:
    """Commands that only read or write artefacts, never the store, run where they are typed."""
    return args.command in RUN_HERE or (args.command, getattr(args, "action", None)) in (
        ("models", "verify"), ("models", "publish"))


def _forward_or_run(args: argparse.Namespace, argv: list[str]) -> int:
    if not runs_here(args) and get_settings().db_is_file():  # a server: connect to it directly
        code = admin_channel.forward(argv, get_settings().db,
                                     read_password=_read_password if asks_password(args) else None,
                                     stops_at_a_chunk=args.command == "score-batch")
        if code is not None:
            return code
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    if args.command in WRITES_STORE or getattr(args, "action", None) == "activate":
        from core.maintenance import record_configuration
        from core.store import open_store

        settings = get_settings()
        record_configuration(open_store(settings.db), settings, by=f"command {args.command}")
    return {**COMMANDS, **cli_ops.COMMANDS, **cli_clients.COMMANDS,
            **cli_governance.COMMANDS}[args.command](args)


def _reporting(command) -> int:
    """The exit code of `command()`; an error core raises on purpose is printed, not raised."""
    try:
        return command()
    except InvalidInput as exc:  # every problem, one per line
        print("error: invalid input:\n" + "\n".join(f"  {e['field']}: {e['message']}"
                                                    for e in exc.errors), file=sys.stderr)
        return 2
    except BatchStopped as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 128 + exc.signum  # as if the signal had ended it
    except CoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from core.train import train  # loads scikit-learn: only in the commands that need it

    path = train(data=args.data, spec_path=args.spec, version=args.version,
                 models_dir=get_settings().models, trained_by=args.by)
    return _report(path)


def _import_model(args) -> int:
    from core.importer import import_model

    path = import_model(pipeline=args.pipeline, data=args.data, spec_path=args.spec,
                        version=args.version, models_dir=get_settings().models,
                        imported_by=args.by, recalibrate=args.recalibrate)
    return _report(path)


def _report(path: Path) -> int:
    """What a new version's maker needs before activating it: metrics, workload, warnings."""
    from core import artifacts

    manifest = artifacts.read_manifest(path)
    m, r = manifest["metrics"], manifest["routing"]
    print(f"wrote {path.name}: AUROC {m['auroc']} (95% CI {m['auroc_ci95'][0]}-{m['auroc_ci95'][1]}), "
          f"Brier {m['brier']}, calibration slope {m['calibration_slope']}, "
          f"calibration-in-the-large {m['calibration_in_the_large']}")
    print(f"expected review share {r['expected_review_share']:.0%}: {r['workload']}")
    for warning in r["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(f"not active yet: python -m core models activate {path.name} --by NAME --reason TEXT")
    return 0


def _models(args) -> int:
    from core import artifacts  # loads scikit-learn: only where needed

    settings = get_settings()
    if args.action == "verify":
        versions = [args.version] if args.version else artifacts.list_versions(settings.models)
        bad = 0
        for version in versions:
            problems = artifacts.verify(settings.models, version)
            print(f"{version}: " + ("OK" if not problems else "FAILED"))
            for problem in problems:
                print(f"  {problem}")
            bad += bool(problems)
        return 1 if bad or not versions else 0
    if args.action == "publish":
        return _publish(args, settings)
    if args.action == "activate":
        from core.serving import activate

        artefact = activate(args.version, by=args.by, reason=args.reason)
        print(f"active: {artefact.version} (sha256 {artefact.sha256[:12]}...)")
        return 0
    active = _active_version(settings)
    print(f"{'version':<12} {'created (UTC)':<21} {'origin':<9} {'data sha256':<14} {'AUROC':<7} "
          "active")
    for version in artifacts.list_versions(settings.models):
        mf = artifacts.manifest_of(settings.models, version)
        mark = "*" if version == active else ""
        print(f"{version:<12} {mf['created_at']:<21} {mf.get('origin', '?'):<9} "
              f"{mf['data']['sha256'][:12]:<14} {mf['metrics']['auroc']!s:<7} {mark}")
    return 0


def _publish(args, settings) -> int:
    """A version from a folder into APP_MODELS, checked first, assembled and published as train
    and import-model publish theirs."""
    from core import artifacts, build

    problems = artifacts.verify(args.source, args.version)
    if problems:
        print(f"error: {args.source}/{args.version} does not verify; nothing was published:\n"
              + "\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 1
    build.check_version(args.version, settings.models)
    artifacts.publish_copy(args.source, settings.models, args.version)
    print(f"published {args.version} to {settings.models}")
    problems = artifacts.verify(settings.models, args.version)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if args.default and not problems:
        artifacts.set_default(settings.models, args.version)
        print(f"default version in {settings.models}: {args.version}")
    return 1 if problems else 0


def _active_version(settings) -> str | None:
    from core import artifacts  # loads scikit-learn: only where needed
    from core.store import open_store

    try:
        activation = open_store(settings.db).active_activation()
    except CoreError:
        print("(the store is in use by another process; showing the shipped default)")
        activation = None
    return artifacts.serving_version(activation, settings.models)


def _score_batch(args) -> int:
    from core.batch import score_batch

    def started(n_rows: int) -> None:
        print(f"scoring {n_rows} rows; Ctrl-C stops before the next chunk", file=sys.stderr,
              flush=True)

    counts = score_batch(args.input, args.output, user=args.user, progress=not args.quiet,
                         on_start=started)
    print(f"{counts['rows']} rows: {counts['scored']} scored ({counts['review']} to review), "
          f"{counts['rejected']} rejected; results in {args.output}")
    return 0


def _read_password() -> str:
    from core.auth import UserError

    # Never from argv (it would show in the process list and shell history).
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat password: "):
            raise UserError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _users(args) -> int:
    from core import auth

    if args.action == "add":
        password = getattr(args, "password", None)  # sent with the command to the service
        auth.add_user(args.username, roles=args.roles,
                      password=_read_password() if password is None else password,
                      display_name=args.name, by=args.by)
        print(f"added {args.username.strip().lower()} ({', '.join(sorted(set(args.roles)))})")
    elif args.action == "disable":
        auth.disable_user(args.username, by=args.by)
        print(f"disabled {args.username}")
    elif args.action == "unlock":
        auth.unlock_user(args.username, by=args.by)
        print(f"unlocked {args.username}")
    else:
        users = auth.list_users()
        print(f"{'username':<24} {'name':<28} {'roles':<24} active")
        for row in users.itertuples():
            roles = ",".join(json.loads(row.roles_json))
            print(f"{row.username:<24} {row.display_name:<28} {roles:<24} "
                  f"{'yes' if row.active else 'no'}")
    return 0


# Commands that write the store record the effective configuration first, when it changed.
WRITES_STORE = {"score-batch", "users", "clients", "outcomes", "retention", "backup", "alerts"}
# Commands that never open the store (models verify too): they run where they are typed.
RUN_HERE = {"train", "import-model", "model-card"}
COMMANDS = {"train": _train, "import-model": _import_model, "models": _models,
            "score-batch": _score_batch, "users": _users}
