"""The files of a batch: checks made before any row is scored (the input is a regular UTF-8 CSV
file whose header fits the model; the output can be written), and the row-shape check.
InvalidInput names each problem."""

from __future__ import annotations

import contextlib
import csv
import os
import stat
from pathlib import Path

from core.errors import InvalidInput, problem
from core.file_guard import protected_reason
from core.spec import PATIENT_REF, WHOLE_ROW, Spec

EXTRA = "\0extra"  # DictReader's key for values beyond the header (never a column name)


def changed(path: Path, detail: str) -> InvalidInput:
    """The error for an input that differs, on the scoring pass, from what scan() checked."""
    return InvalidInput([problem("input file", f"changed while it was scored ({detail}); the rows "
                                 "read until then are recorded, but no output is written", str(path))])


def copy_mode(source: Path, target: str) -> None:
    """The output names the same patients as the input: readable by whom the input is (as far as
    the file system keeps permission bits)."""
    with contextlib.suppress(OSError):
        os.chmod(target, stat.S_IMODE(source.stat().st_mode) & 0o666 | stat.S_IWUSR)


def check_output(input_csv: Path, output_csv: Path) -> None:
    """Refuse, before scoring, an output that could not be written, would overwrite the input,
    or would replace the store, its WAL, a backup or a model artefact."""
    folder = output_csv.parent
    protected = protected_reason(output_csv)
    if protected:
        reason = f"{protected}; choose another name"
    elif output_csv.resolve() == input_csv.resolve():
        reason = "is the input file; choose another name"
    elif output_csv.is_symlink() or (output_csv.exists() and not output_csv.is_file()):
        reason = "is a folder, a link or a device; name a file"
    elif not folder.is_dir():
        reason = f"is in a folder that does not exist ({folder})"
    elif not os.access(folder, os.W_OK):  # the output is renamed into place: the folder counts
        reason = "cannot be written (permission denied)"
    elif output_csv.exists() and _sticky_and_not_ours(folder, output_csv):
        reason = "belongs to another user in a shared folder; choose another name"
    else:
        return
    raise InvalidInput([problem("output file", reason, str(output_csv))])


def _sticky_and_not_ours(folder: Path, existing: Path) -> bool:
    """In a sticky folder (/tmp, a shared drop folder) only the owner of a file, or of the
    folder, may replace it."""
    me = os.geteuid()
    return (me != 0 and bool(folder.stat().st_mode & stat.S_ISVTX)
            and me not in (folder.stat().st_uid, existing.stat().st_uid))


def scan(path: Path) -> tuple[list[str], int]:
    """A first pass over the file: its header and number of rows (blank lines are not rows).

    Reading it whole before scoring means a file that is not UTF-8 CSV is refused before any of
    its rows is recorded; InvalidInput names the problem. A pipe or device cannot be read twice,
    so only a regular file is accepted."""
    try:
        if path.exists() and not path.is_file():
            raise IsADirectoryError
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, strict=True)
            header = next(reader, None)
            n_rows = sum(1 for row in reader if row)
    except FileNotFoundError:
        reason = "does not exist"
    except IsADirectoryError:
        reason = "is a folder, a pipe or a device; save the rows to a file first"
    except PermissionError:
        reason = "cannot be read (permission denied)"
    except UnicodeDecodeError:
        reason = (f"is not UTF-8 text (line {_first_undecodable_line(path)}); "
                  "save it as 'CSV UTF-8'")
    except csv.Error as exc:
        reason = (f"is not a readable CSV file (line {reader.line_num}: {exc}; a quote that is "
                  "opened and never closed, perhaps)")
    else:
        if header is None:
            reason = "is empty (no header row)"
        elif not header:
            reason = "starts with a blank line; the first line must be the header row"
        else:
            return header, n_rows
    raise InvalidInput([problem("input file", reason, str(path))])


def _first_undecodable_line(path: Path) -> int:
    """The number of the first line that is not UTF-8 (a newline byte never occurs inside a
    UTF-8 character, so line by line is exact)."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


def header_problems(spec: Spec, header: list[str]) -> list[dict]:
    """What keeps a file's columns from being the model's inputs: missing required columns,
    unknown columns (often a misspelling) and repeated ones. Empty when the header fits."""
    known = {PATIENT_REF, *spec.names}
    if len(header) > 2 * len(known) + 10:  # not a misspelt header: some other file
        return [problem("input file", f"has {len(header)} columns, but the model has "
                        f"{len(known) - 1} inputs and {PATIENT_REF}; it is not the model's "
                        "input file", "")]
    required = [PATIENT_REF, *(f.name for f in spec.features if f.required)]
    problems = [problem(name, "is a required column; the file has no such column", "")
                for name in required if name not in header]
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name.strip():
            problems.append(problem(f"column {position}", "has no name in the header (a comma too "
                                    "many at the end of the header line, perhaps)", ""))
        elif name in seen:
            problems.append(problem(name, "appears more than once in the header", ""))
        elif name not in known:
            problems.append(problem(name, "is not an input of this model (unknown column)", ""))
        seen.add(name)
    return problems


def shape_errors(record: dict, header: list[str]) -> list[dict]:
    """A row with more or fewer values than the header is misaligned: refused, never guessed."""
    if EXTRA in record:
        n = len(header) + len(record[EXTRA])
    elif None in record.values():
        n = sum(v is not None for v in record.values())
    else:
        return []
    return [problem(WHOLE_ROW, f"has {n} values but the header has {len(header)} columns", "")]
