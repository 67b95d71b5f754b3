"""Copy the course notebooks into a working folder without ever overwriting your work.

``make lab`` runs ``python -m dlcourse.workspace notebooks work``: each notebook in
``notebooks/`` is copied to ``work/`` only if ``work/`` has no file of that name yet,
so updating the course (``git pull``) brings new notebooks and keeps your answers.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .files import atomic_create


def prepare_workspace(src: Path | str = "notebooks", dest: Path | str = "work") -> tuple[list[Path], list[Path]]:
    """Copy every file under ``src`` to ``dest`` unless it already exists there.

    Returns ``(copied, kept)``: the destination paths newly written and those left as they were.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise FileNotFoundError(f"src: expected a folder of notebooks, got {src.resolve()} (missing)")
    copied, kept = [], []
    for path in sorted(src.rglob("*")):
        if path.is_dir() or ".ipynb_checkpoints" in path.parts:
            continue
        target = dest / path.relative_to(src)
        if target.exists():
            kept.append(target)
            continue
        with open(path, "rb") as f:            # never replaces: the learner's file always wins
            created = atomic_create(target, lambda partial: shutil.copyfileobj(f, partial))
        (copied if created else kept).append(target)
    return copied, kept


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    src, dest = (args + ["notebooks", "work"][len(args):])[:2]
    copied, kept = prepare_workspace(src, dest)
    print(f"{len(copied)} notebook file(s) copied to {dest}/, {len(kept)} of yours kept as they are.")


if __name__ == "__main__":
    main()
