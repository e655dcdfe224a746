"""The README documents every command, every setting and the layers of core as they are."""

import os
import re
import subprocess
import tomllib

from conftest import run_core

from core import artifacts
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


def test_readme_layers_are_the_enforced_layers():
    """The Layout table's rows under `core/`, in order, name exactly the modules of each layer of
    the import-linter contract that lint-imports enforces."""
    contracts = tomllib.loads((PROJ_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in contracts["contracts"] if c["type"] == "layers")["layers"]
    enforced = [sorted(m.strip() for m in layer.split(":")) for layer in layers]
    table = README.split("| `core/` |", 1)[1].split("| `core/store/` |", 1)[0].splitlines()[1:]
    documented = [sorted(m.rstrip("/") for m in re.findall(r"`([a-z_]+/?)`", row.split("|")[2]))
                  for row in table if row.startswith("|")]
    assert documented == enforced


def test_readme_shows_the_two_commands():
    assert "make run" in README and "make test" in README


def test_model_card_is_current_and_check_detects_staleness(tmp_path):
    def check(output):
        shipped = {**os.environ, "APP_MODELS": str(PROJ_ROOT / "model_artifacts")}  # the repo's
        return run_core("model-card", "--check", "--output", str(output), env=shipped)

    assert check(PROJ_ROOT / "MODEL_CARD.md").returncode == 0
    stale = tmp_path / "MODEL_CARD.md"
    stale.write_text((PROJ_ROOT / "MODEL_CARD.md").read_text().replace("## Model facts",
                                                                        "## Model facts, edited by hand"))
    proc = check(stale)
    assert proc.returncode == 1 and "stale" in proc.stdout


def test_model_card_covers_the_required_sections():
    card = (PROJ_ROOT / "MODEL_CARD.md").read_text()
    for heading in ("Model facts", "Intended use and users", "Out of scope", "Training data",
                    "Cleaning and preprocessing", "Outcome and horizon", "Features",
                    "Performance", "Action threshold and routing rule", "Out-of-distribution policy",
                    "Known limitations", "Retraining in short", "Version and hashes"):
        assert f"## {heading}" in card, heading
    default = artifacts.default_version(PROJ_ROOT / "model_artifacts")
    if artifacts.read_manifest(PROJ_ROOT / "model_artifacts" / default)["synthetic_data"]:
        assert "NOT FOR CLINICAL USE" in card


def test_env_example_lists_every_setting():
    example = (PROJ_ROOT / ".env.example").read_text()
    missing = [f"APP_{name.upper()}" for name in Settings.model_fields
               if not re.search(rf"^APP_{name.upper()}=", example, re.M)]
    assert missing == []


def spec_fields(model=None, prefix=""):
    """Every field path of the spec schema, nested ones with a dot and list items with []."""
    import typing

    from pydantic import BaseModel

    from core.spec import Spec

    for name, field in (model or Spec).model_fields.items():
        path = prefix + name
        yield path
        for arg in typing.get_args(field.annotation) or (field.annotation,):
            is_list = typing.get_origin(arg) is list
            for inner in typing.get_args(arg) or (arg,):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    yield from spec_fields(inner, path + ("[]." if is_list else "."))


def test_runbook_documents_every_spec_field():
    runbook = (PROJ_ROOT / "RUNBOOK.md").read_text()
    reference = runbook[runbook.index("### Spec reference"):]
    fields = list(spec_fields())
    assert len(fields) > 50 and "outcome.measurement.event_threshold" in fields
    assert [f for f in fields if f"| `{f}` |" not in reference] == []


DEMO_WORDS = re.compile(r"potassium|hyperkal|spironolactone|heart[ -]failure|42[- ]day|42 days",
                        re.IGNORECASE)
# The demonstration's own files may name it; so may the docs that describe it as the demo, and
# the tests.
DEMO_OWN = {"core/synthetic.py", "core/cleaning_hfref.py", "core/demo_history.py",
            "specs/hyperkalaemia.json"}
CODE = ("*.py", "*.sh", "*.toml", "*.yaml", "*.yml", "*.json", "*.example", "Dockerfile",
        "Caddyfile", "Makefile", ".env.example")


def test_no_code_outside_the_demo_names_the_demo_outcome():
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJ_ROOT, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    found = []
    for name in tracked:
        path = PROJ_ROOT / name
        if (name in DEMO_OWN or name.startswith(("tests/", "model_artifacts/", "data/"))
                or not any(path.match(pattern) for pattern in CODE) or not path.is_file()):
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1)
                  if DEMO_WORDS.search(line)]
    assert found == []
