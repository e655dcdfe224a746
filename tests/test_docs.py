"""The README documents every command and every setting."""

import re

from conftest import run_core

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


def test_model_card_is_current_and_check_detects_staleness(tmp_path):
    def check(output):
        return run_core("model-card", "--check", "--output", str(output))

    assert check(PROJ_ROOT / "MODEL_CARD.md").returncode == 0
    stale = tmp_path / "MODEL_CARD.md"
    stale.write_text((PROJ_ROOT / "MODEL_CARD.md").read_text().replace("0.791", "0.912"))
    proc = check(stale)
    assert proc.returncode == 1 and "stale" in proc.stdout


def test_model_card_covers_the_required_sections():
    card = (PROJ_ROOT / "MODEL_CARD.md").read_text()
    for heading in ("Model facts", "Intended use and users", "Out of scope", "Training data",
                    "Cleaning and preprocessing", "Outcome and horizon", "Features",
                    "Performance", "Action threshold and routing rule", "Out-of-distribution policy",
                    "Known limitations", "Retraining in short", "Version and hashes"):
        assert f"## {heading}" in card, heading
    assert "NOT FOR CLINICAL USE" in card


def test_env_example_lists_every_setting():
    example = (PROJ_ROOT / ".env.example").read_text()
    missing = [f"APP_{name.upper()}" for name in Settings.model_fields
               if not re.search(rf"^APP_{name.upper()}=", example, re.M)]
    assert missing == []
