"""Put the install cell in every source notebook, then regenerate the student versions.

    python scripts/add_colab_cell.py                 # solutions/*/*.ipynb, then notebooks/ (make notebooks)
    python scripts/add_colab_cell.py --no-release    # the sources only
    python scripts/add_colab_cell.py --root DIR      # another course directory

The cell (``dlcourse.colab.CELL_SOURCE``) installs the package when it is missing, so a notebook
opened on Colab runs; elsewhere it does nothing. It goes right before a notebook's first code
cell, after the introduction; a copy already there (found by its metadata tag) is replaced by
the current text, so running this again changes nothing unless the cell's text changed. A
notebook is rewritten only when it changes. Run it after editing ``dlcourse/colab.py``;
``tests/test_colab.py`` checks that every notebook carries the current cell.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import nbformat

from dlcourse.colab import with_install_cell
from dlcourse.files import atomic_write_bytes
from dlcourse.release import assignments, generate

ROOT = Path(__file__).resolve().parent.parent


def add_to_notebook(path: Path) -> bool:
    """Insert or update the install cell in one notebook; True if the file changed."""
    nb = nbformat.read(path, as_version=4)
    cells = [nbformat.from_dict(cell) for cell in with_install_cell(nb.cells)]
    if cells == nb.cells:
        return False
    nb.cells = cells
    text = io.StringIO()
    nbformat.write(nb, text)               # indent 1, sorted keys, ensure_ascii False, as the notebooks are stored
    atomic_write_bytes(path, text.getvalue().encode("utf-8"))
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the course directory (default: this repository)")
    parser.add_argument("--no-release", action="store_true", help="do not regenerate the student notebooks")
    args = parser.parse_args(argv)
    names = assignments(args.root)
    for name in names:
        path = args.root / "solutions" / name / f"{name}.ipynb"
        print(f"{'updated' if add_to_notebook(path) else 'already current'}: {path.relative_to(args.root)}")
    if not args.no_release:
        for path in generate(args.root, names):
            print(f"wrote {path.relative_to(args.root.resolve())}")


if __name__ == "__main__":
    main()
