"""The first code cell of every notebook: it installs the package where it is missing (Colab).

Opened on Google Colab, a notebook has no ``dlcourse``; everywhere the course was set up
(``make lab``, Binder, conda, ``pip install``, nbgrader) it has. The cell :data:`CELL_SOURCE` does
nothing when ``dlcourse`` can be imported, and otherwise installs it with pip from the course's
repository (:data:`REPOSITORY`). It cannot import anything from this package (it runs before the
package is there), so its text stands alone; :func:`install_command` says, as tested code, what it
runs.

On Colab the install adds ``--no-deps``: Colab already has what the package needs at run time
(PyTorch with CUDA, NumPy, Matplotlib, ipywidgets, tqdm), and the package's other dependencies,
JupyterLab and nbgrader, would replace Jupyter packages that Colab's own runtime relies on. The
notebooks then run unchanged on Colab's GPU (``dlcourse.device`` picks CUDA).

The cell is a plain code cell, tagged :data:`TAG` in its metadata and never graded; nbgrader
copies it into the student version as it is, and when it autogrades, the cell finds ``dlcourse``
and does nothing. ``scripts/add_colab_cell.py`` puts it in every notebook.
"""

from __future__ import annotations

import sys

REPOSITORY = "https://github.com/dlcourse/dlcourse"     # the course's repository, as in pyproject.toml's urls
TAG = "install-dlcourse"                                # the cell's metadata tag, how the script finds it
REQUIREMENT = f"dlcourse @ git+{REPOSITORY}"

CELL_SOURCE = f'''# On Colab (or anywhere without the course's package) this installs it; where it is installed it does nothing.
import importlib, importlib.util, subprocess, sys
if importlib.util.find_spec("dlcourse") is None:
    print("Installing dlcourse from {REPOSITORY} ...")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet"]
                          + (["--no-deps"] if "google.colab" in sys.modules else [])
                          + ["{REQUIREMENT}"])
    importlib.invalidate_caches()'''


def install_command(dlcourse_found: bool, on_colab: bool, python: str = sys.executable) -> list[str] | None:
    """The command :data:`CELL_SOURCE` runs: None when ``dlcourse`` is there, else pip's arguments.

    Args:
        dlcourse_found: whether ``import dlcourse`` would work.
        on_colab: whether the kernel is Colab's (``google.colab`` imported).
        python: the kernel's interpreter.
    """
    if dlcourse_found:
        return None
    return [python, "-m", "pip", "install", "--quiet"] + (["--no-deps"] if on_colab else []) + [REQUIREMENT]


def is_install_cell(cell: dict) -> bool:
    """Whether a notebook cell (nbformat's dict) is the install cell, by its metadata tag."""
    return TAG in cell.get("metadata", {}).get("tags", [])


def install_cell() -> dict:
    """The install cell as a notebook cell (nbformat 4.5): a plain code cell with no nbgrader metadata."""
    return {"cell_type": "code", "execution_count": None, "id": TAG, "metadata": {"tags": [TAG]},
            "outputs": [], "source": CELL_SOURCE}


def with_install_cell(cells: list[dict]) -> list[dict]:
    """``cells`` with the install cell, as it is now, right before the first other code cell.

    Any earlier copy (found by its tag) is replaced, so applying this twice changes nothing.
    The cells before it (the notebook's introduction) are all Markdown: nothing runs before it.
    """
    others = [cell for cell in cells if not is_install_cell(cell)]
    first_code = next((i for i, cell in enumerate(others) if cell["cell_type"] == "code"), len(others))
    if any(cell.get("id") == TAG for cell in others):
        raise ValueError(f"cells: another cell already has the id {TAG!r}")
    return others[:first_code] + [install_cell()] + others[first_code:]
