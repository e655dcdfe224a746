"""Importing a module that fits no model does not load scikit-learn (about a second, and memory):
the CLI's account and audit commands, the pages that do not score, the store, all start fast.
Loading a model artefact is what imports scikit-learn, when it is needed."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import core

REPO = Path(__file__).resolve().parent.parent
FITTING = {"core.estimators", "core.importer", "core.train"}  # they build a version: they fit
HEAVY = ("sklearn", "joblib", "skops")


def _loaded(modules: list[str]) -> list[str]:
    """The heavy libraries present in sys.modules after importing `modules` in a fresh interpreter."""
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(','.join(h for h in {HEAVY!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    return [name for name in out.split(",") if name]


def test_modules_that_fit_nothing_do_not_load_scikit_learn():
    modules = sorted(m.name for m in pkgutil.walk_packages(core.__path__, "core.")
                     if m.name not in FITTING and m.name != "core.__main__")
    assert len(modules) > 40  # the walk found the package
    if _loaded(modules):  # name the culprits, one interpreter each
        culprits = {m: loaded for m in modules if (loaded := _loaded([m]))}
        raise AssertionError(f"these import scikit-learn, joblib or skops: {culprits}")


def test_the_check_sees_a_module_that_does_load_it():
    assert "sklearn" in _loaded(["core.train"])


def test_every_exception_core_raises_is_defined_in_core_errors():
    import importlib
    import inspect

    defined_elsewhere = []
    for info in pkgutil.walk_packages(core.__path__, "core."):
        if info.name == "core.__main__":
            continue
        module = importlib.import_module(info.name)
        defined_elsewhere += [f"{info.name}.{name}" for name, obj in vars(module).items()
                              if inspect.isclass(obj) and issubclass(obj, BaseException)
                              and obj.__module__ == info.name and info.name != "core.errors"]
    assert defined_elsewhere == []
