"""The install cell: it installs dlcourse where it is missing (Colab) and only then, it stands alone,
the script puts it before every notebook's first code cell, and nbgrader hands it out unchanged."""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import subprocess
import sys
import tomllib
import types

import nbformat
import pytest

from dlcourse import colab
from nbtools import ROOT, nbgrader_meta

SOLUTIONS = sorted(ROOT.glob("solutions/*/*.ipynb"))
STUDENT = sorted(ROOT.glob("notebooks/*/*.ipynb"))


def run_cell(monkeypatch, *, dlcourse_found: bool, on_colab: bool) -> list[list[str]]:
    """Execute the cell's exact text with pip and the import system faked; the commands it ran."""
    calls = []
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "dlcourse" and not dlcourse_found:
            return None
        return real_find_spec(name, *args, **kwargs)

    def check_call(cmd, *args, **kwargs):
        calls.append(list(cmd))
        return 0

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(subprocess, "check_call", check_call)
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(colab.CELL_SOURCE, "<install cell>", "exec"), {"__name__": "__main__"})
    return calls


def test_the_cell_compiles_and_stands_alone():
    compile(colab.CELL_SOURCE, "<install cell>", "exec")
    tree = ast.parse(colab.CELL_SOURCE)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"importlib", "subprocess", "sys"}, f"the cell runs before dlcourse is there; it imports {imported}"


@pytest.mark.parametrize("on_colab", [False, True], ids=["elsewhere", "colab"])
def test_the_cell_does_nothing_where_dlcourse_imports(monkeypatch, capsys, on_colab):
    assert run_cell(monkeypatch, dlcourse_found=True, on_colab=on_colab) == []
    assert capsys.readouterr().out == ""
    assert colab.install_command(True, on_colab) is None


@pytest.mark.parametrize("on_colab", [False, True], ids=["elsewhere", "colab"])
def test_the_cell_installs_dlcourse_where_it_is_missing(monkeypatch, capsys, on_colab):
    calls = run_cell(monkeypatch, dlcourse_found=False, on_colab=on_colab)
    assert calls == [colab.install_command(False, on_colab)]
    cmd = calls[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and cmd[-1] == f"dlcourse @ git+{colab.REPOSITORY}"
    # on Colab only the package: Colab's PyTorch (CUDA), NumPy, ipywidgets and its Jupyter stay as they are
    assert ("--no-deps" in cmd) == on_colab
    assert colab.REPOSITORY in capsys.readouterr().out


def test_a_failed_install_stops_the_notebook(monkeypatch):
    def check_call(cmd, *args, **kwargs):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    monkeypatch.setattr(subprocess, "check_call", check_call)
    with pytest.raises(subprocess.CalledProcessError):
        exec(compile(colab.CELL_SOURCE, "<install cell>", "exec"), {})


def test_the_repository_is_the_one_pyproject_and_readme_name():
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == colab.REPOSITORY
    owner_repo = colab.REPOSITORY.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    assert f"https://mybinder.org/v2/gh/{owner_repo}/" in readme, "the README's Binder badge points at the repository"
    assert f"https://colab.research.google.com/github/{owner_repo}/" in readme


def markdown(text):
    return {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": text}


def code(text, **nbgrader):
    meta = {"nbgrader": nbgrader} if nbgrader else {}
    return {"cell_type": "code", "execution_count": None, "id": text[:8], "metadata": meta, "outputs": [], "source": text}


def test_with_install_cell_goes_before_the_first_code_cell_and_is_idempotent():
    cells = [markdown("# Title"), markdown("## Setup"), code("import dlcourse"), code("x = 1")]
    once = colab.with_install_cell(cells)
    assert [c["source"] for c in once] == ["# Title", "## Setup", colab.CELL_SOURCE, "import dlcourse", "x = 1"]
    assert colab.with_install_cell(once) == once
    stale = [dict(c, source="old text") if colab.is_install_cell(c) else c for c in once]
    moved = [stale[2]] + stale[:2] + stale[3:]                       # an old copy, in the wrong place
    assert colab.with_install_cell(moved) == once
    assert colab.with_install_cell([markdown("# only prose")])[-1]["source"] == colab.CELL_SOURCE
    with pytest.raises(ValueError, match="another cell already has the id"):
        colab.with_install_cell([dict(code("x"), id=colab.TAG)])
    cell = colab.install_cell()
    assert cell["cell_type"] == "code" and "nbgrader" not in cell["metadata"]      # never graded, never locked


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course directory with notebook 00, its install cell taken out, and the script applied twice (with the
    release)."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy2(ROOT / "nbgrader_config.py", root)
    name = "00_welcome"
    (root / "solutions" / name).mkdir(parents=True)
    raw = json.loads((ROOT / "solutions" / name / f"{name}.ipynb").read_text(encoding="utf-8"))
    raw["cells"] = [c for c in raw["cells"] if not colab.is_install_cell(c)]
    (root / "solutions" / name / f"{name}.ipynb").write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n",
                                                             encoding="utf-8")
    runs = []
    for _ in range(2):
        result = subprocess.run([sys.executable, str(ROOT / "scripts" / "add_colab_cell.py"), "--root", str(root)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        runs.append(({p.relative_to(root): p.read_bytes() for p in sorted(root.glob("*/*/*.ipynb"))}, result.stdout))
    return root, name, runs


def first_code_cell(nb):
    return next(cell for cell in nb.cells if cell.cell_type == "code")


def test_the_script_adds_the_cell_once_and_nbgrader_releases_it_unchanged(course):
    root, name, runs = course
    source = nbformat.read(root / "solutions" / name / f"{name}.ipynb", as_version=4)
    student = nbformat.read(root / "notebooks" / name / f"{name}.ipynb", as_version=4)
    original = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    for nb in (source, student):
        cell = first_code_cell(nb)
        assert colab.is_install_cell(cell) and cell.source == colab.CELL_SOURCE and not nbgrader_meta(cell)
        assert sum(colab.is_install_cell(c) for c in nb.cells) == 1
    assert ([c.source for c in source.cells if not colab.is_install_cell(c)]
            == [c.source for c in original.cells if not colab.is_install_cell(c)])
    assert "updated: solutions" in runs[0][1] and "already current: solutions" in runs[1][1]
    assert runs[0][0] == runs[1][0], "a second run changes nothing"
    raw = (root / "solutions" / name / f"{name}.ipynb").read_text()
    assert raw.endswith("}\n") and json.loads(raw)["cells"] and '\n "cells": [\n  {' in raw    # stored as the notebooks are


NOTEBOOKS_HAVE_THE_CELL = any(colab.is_install_cell(c) for p in SOLUTIONS for c in json.loads(p.read_text())["cells"])


@pytest.mark.skipif(not NOTEBOOKS_HAVE_THE_CELL,
                    reason="no notebook has the install cell yet: run scripts/add_colab_cell.py to add it to all")
@pytest.mark.parametrize("path", SOLUTIONS + STUDENT, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_every_notebook_starts_with_the_current_install_cell(path):
    nb = nbformat.read(path, as_version=4)
    cell = first_code_cell(nb)
    assert colab.is_install_cell(cell), f"{path.name}: the first code cell is not the install cell; run scripts/add_colab_cell.py"
    assert cell.source == colab.CELL_SOURCE, f"{path.name}: the install cell is out of date; run scripts/add_colab_cell.py"
    assert sum(colab.is_install_cell(c) for c in nb.cells) == 1 and not nbgrader_meta(cell)
