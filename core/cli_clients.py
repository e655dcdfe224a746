"""The `python -m core clients` commands: API clients and their bearer tokens."""

from __future__ import annotations

import getpass


def add_parsers(sub) -> None:
    c = sub.add_parser("clients", help="add, revoke or list API clients (bearer tokens)")
    csub = c.add_subparsers(dest="action", required=True)
    ca = csub.add_parser("add", help="create an API client and print its token, once")
    ca.add_argument("name")
    ca.add_argument("--role", dest="roles", action="append", required=True,
                    help="a role the client acts with (repeatable); its scopes follow from it")
    ca.add_argument("--by", default=getpass.getuser(), help="who makes the change (recorded)")
    cr = csub.add_parser("revoke", help="revoke a client's token at once (recorded)")
    cr.add_argument("name")
    cr.add_argument("--by", default=getpass.getuser(), help="who makes the change (recorded)")
    csub.add_parser("list", help="clients, roles, scopes and whether they are active")


def run_clients(args) -> int:
    from core import access, clients

    if args.action == "add":
        token = clients.add_client(args.name, roles=args.roles, by=args.by)
        name = args.name.strip().lower()
        print(f"added API client {name} ({', '.join(sorted(set(args.roles)))}); its token, "
              "shown only now (the store keeps only its hash):")
        print(token)
    elif args.action == "revoke":
        clients.revoke_client(args.name, by=args.by)
        print(f"revoked {args.name}")
    else:
        print(f"{'client':<24} {'roles':<20} {'active':<7} scopes")
        for c in clients.list_clients():
            print(f"{c.name:<24} {','.join(c.roles):<20} {'yes' if c.active else 'no':<7} "
                  f"{' '.join(access.actions_for(c.roles))}")
    return 0


COMMANDS = {"clients": run_clients}
