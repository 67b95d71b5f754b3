"""Copy the course notebooks into a working folder without ever overwriting your work.

``make lab`` runs ``python -m dlcourse.workspace notebooks work``; a learner who installed the
package with pip runs ``python -m dlcourse notebooks DIR`` (the notebooks ship inside the package).
Each file of the course is copied into the working folder only if no file of that name is there
yet, so updating the course (``git pull``, then ``make lab``) brings new notebooks and keeps your
answers.

When the course has changed a notebook you already have, yours stays exactly as it is and the
new version is put beside it as ``NAME.updated.ipynb`` (only if that name is free), and the run
says so. To know whether the course changed a notebook since you got it, the working folder keeps
a record of the version it was given (``.dlcourse-workspace.json``: each file's SHA-256). A folder
made before that record existed starts it on its next update: changes made to the course before
then are not offered (get them with ``python -m dlcourse notebooks OTHER_DIR``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from .files import atomic_create, atomic_write_bytes, sha256_file

RECORD = ".dlcourse-workspace.json"        # in the working folder: {relative path: SHA-256 of the course's version}
UPDATED = ".updated"                       # NAME.ipynb -> NAME.updated.ipynb, the course's newer version


class Workspace(NamedTuple):
    """What :func:`prepare_workspace` did, as paths in the working folder.

    ``copied``: files newly written; ``kept``: files of yours left as they were; ``offered``:
    ``{your file: the course's new version written beside it}``; ``waiting``: ``{your file: the
    name the new version needs}`` where the course changed a file but that name is taken.
    """
    copied: list[Path]
    kept: list[Path]
    offered: dict[Path, Path]
    waiting: dict[Path, Path]


def updated_name(path: Path) -> Path:
    """Where the course's newer version of ``path`` goes: ``NAME.ipynb`` -> ``NAME.updated.ipynb``."""
    return path.with_name(path.stem + UPDATED + path.suffix)


def course_notebooks() -> Path:
    """The folder of student notebooks that came with the package.

    An installed wheel carries them inside the package (``dlcourse/notebooks/``, copied from the
    repository's ``notebooks/`` when the wheel is built); a checkout or an editable install reads
    the repository's ``notebooks/`` beside the package.
    """
    package = Path(__file__).resolve().parent
    for folder in (package / "notebooks", package.parent / "notebooks"):
        if any(folder.glob("*/*.ipynb")):
            return folder
    raise FileNotFoundError(f"no course notebooks in {package / 'notebooks'} (an installed package) "
                            f"or {package.parent / 'notebooks'} (a checkout); reinstall the package")


def _read_record(dest: Path) -> dict[str, str]:
    try:
        record = json.loads((dest / RECORD).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        print(f"warning: {dest / RECORD} is unreadable; starting a new record", file=sys.stderr)
        return {}
    return record if isinstance(record, dict) else {}


def _copy(src: Path, target: Path) -> bool:
    with open(src, "rb") as f:             # never replaces: a file that is there always wins
        return atomic_create(target, lambda partial: shutil.copyfileobj(f, partial))


def prepare_workspace(src: Path | str = "notebooks", dest: Path | str = "work") -> Workspace:
    """Copy every file under ``src`` to ``dest`` unless it already exists there.

    A file you already have is never touched. If the course's version changed since it was
    copied to you (per ``dest``'s record), the new version is written beside yours under
    :func:`updated_name` when that name is free.

    Returns:
        a :class:`Workspace` ``(copied, kept, offered, waiting)`` of paths under ``dest``.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise FileNotFoundError(f"src: expected a folder of notebooks, got {src.resolve()} (missing)")
    record = _read_record(dest)
    copied, kept, offered, waiting = [], [], {}, {}
    for path in sorted(src.rglob("*")):
        if path.is_dir() or ".ipynb_checkpoints" in path.parts:
            continue
        rel = path.relative_to(src).as_posix()
        target = dest / rel
        course = sha256_file(path)
        if _copy(path, target):
            copied.append(target)
            record[rel] = course
            continue
        kept.append(target)
        given = record.get(rel)
        if given is None or given == course or sha256_file(target) == course:
            record[rel] = course           # first record of this file, the course unchanged, or yours is the course's
            continue
        side = updated_name(target)        # the course changed it since you got it
        if _copy(path, side) or sha256_file(side) == course:
            offered[target] = side
            record[rel] = course
        else:
            waiting[target] = side         # that name is taken: offered again next time
    if record:
        dest.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dest / RECORD, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return Workspace(copied, kept, offered, waiting)


def describe(result: Workspace, dest: Path | str) -> str:
    """What a run did, in a few lines for the learner."""
    dest = Path(dest)
    lines = [f"{len(result.copied)} notebook file(s) copied to {dest}/, {len(result.kept)} of yours kept as they are."]
    for mine, side in result.offered.items():
        lines.append(f"The course has a new version of {mine.relative_to(dest)}: yours is unchanged, "
                     f"the new one is beside it as {side.relative_to(dest)}.")
    for mine, side in result.waiting.items():
        lines.append(f"The course has a new version of {mine.relative_to(dest)}, but {side.relative_to(dest)} "
                     f"is taken: rename or remove it and run this again to get the new version beside yours.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    src, dest = (args + ["notebooks", "work"][len(args):])[:2]
    print(describe(prepare_workspace(src, dest), dest))


if __name__ == "__main__":
    main()
