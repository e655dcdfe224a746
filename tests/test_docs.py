"""The README documents every command and every setting."""

import re

from core.cli import _parser
from core.config import PROJ_ROOT, Settings

README = (PROJ_ROOT / "README.md").read_text()


def subcommands(parser, prefix="python -m core"):
    for action in parser._subparsers._group_actions:
        for name, sub in action.choices.items():
            if sub._subparsers is not None:
                yield from subcommands(sub, f"{prefix} {name}")
            else:
                yield f"{prefix} {name}"


def test_readme_lists_every_cli_command():
    missing = [c for c in subcommands(_parser()) if c not in README]
    assert missing == []


def test_readme_lists_every_setting():
    missing = [f"APP_{name.upper()}" for name in Settings.model_fields
               if not re.search(rf"`APP_{name.upper()}`", README)]
    assert missing == []


def test_readme_shows_the_two_commands():
    assert "make run" in README and "make test" in README
