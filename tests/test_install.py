"""``pip install .`` and a built wheel carry the whole course: the checkpoints, every subpackage,
everything a notebook imports and the student notebooks, which a learner gets without the
repository with ``python -m dlcourse notebooks DIR``.

The wheel is built from a copy of the working tree (so a build never writes into the checkout),
installed with ``pip install --no-deps --target`` and used from a folder outside the repository.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nbtools import ROOT

NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts)
PACKAGE_FILES = sorted(p for p in (ROOT / "dlcourse").rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "dlcourse", "notebooks"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """``{"wheel": ..., "sdist_wheel": ...}``: a wheel built from the tree, and one built from its sdist."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        else:
            shutil.copy2(path, src / name)
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "wheel"), cwd=src)
    result = subprocess.run([sys.executable, "-c", "from setuptools import build_meta; "
                             f"print(build_meta.build_sdist({str(tmp / 'sdist')!r}))"],
                            cwd=src, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    sdist = tmp / "sdist" / result.stdout.split()[-1]
    _pip("wheel", str(sdist), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "sdist_wheel"), cwd=tmp)
    return {"wheel": next((tmp / "wheel").glob("*.whl")), "sdist_wheel": next((tmp / "sdist_wheel").glob("*.whl"))}


def notebook_imports() -> set[str]:
    """Every ``dlcourse`` module a solution or student notebook imports."""
    modules = set()
    for path in sorted(ROOT.glob("solutions/*/*.ipynb")) + sorted(ROOT.glob("notebooks/*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
            try:
                tree = ast.parse(code)
            except SyntaxError:             # a learner's stub, e.g. "raise NotImplementedError()" after a bare name
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules |= {a.name for a in node.names if a.name.split(".")[0] == "dlcourse"}
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dlcourse":
                    modules.add(node.module)
                    modules |= {f"{node.module}.{a.name}" for a in node.names}   # a submodule imported by name
    return modules


@pytest.mark.parametrize("kind", ["wheel", "sdist_wheel"])
def test_the_wheel_holds_every_package_file_and_every_notebook(built, kind):
    names = set(zipfile.ZipFile(built[kind]).namelist())
    package = {p.relative_to(ROOT).as_posix() for p in PACKAGE_FILES}
    assert package - names == set(), f"missing from the wheel: {sorted(package - names)}"
    assets = {p for p in package if p.startswith("dlcourse/assets/")}
    assert any(p.endswith(".pt") for p in assets) and all(f"{p}.sha256" in names for p in assets if p.endswith(".pt"))
    for sub in ("conditioning", "widgets", "metrics", "samplers", "models", "data"):
        assert f"dlcourse/{sub}/__init__.py" in names, f"subpackage dlcourse.{sub} is missing"
    shipped = {n for n in names if n.startswith("dlcourse/notebooks/")}
    expected = {"dlcourse/notebooks/" + p.relative_to(ROOT / "notebooks").as_posix() for p in NOTEBOOKS}
    assert NOTEBOOKS and shipped == expected, f"notebooks: missing {sorted(expected - shipped)}, extra {sorted(shipped - expected)}"
    with zipfile.ZipFile(built[kind]) as wheel:     # notebooks/ is the one source: the shipped copies are its bytes
        for path in NOTEBOOKS:
            assert wheel.read("dlcourse/notebooks/" + path.relative_to(ROOT / "notebooks").as_posix()) == path.read_bytes()
    for module in notebook_imports():
        as_path = module.replace(".", "/")
        assert (f"{as_path}.py" in names or f"{as_path}/__init__.py" in names
                or f"{as_path.rsplit('/', 1)[0]}.py" in names or f"{as_path.rsplit('/', 1)[0]}/__init__.py" in names), \
            f"a notebook imports {module}, which is not in the wheel"


def test_notebook_imports_are_found():
    # the check above must see the notebooks' imports, or it checks nothing
    modules = notebook_imports()
    assert "dlcourse.pretrained" in modules or any(m.startswith("dlcourse.widgets") for m in modules), sorted(modules)


def _installed(built, tmp_path) -> tuple[Path, dict]:
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(built["wheel"]), cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DLCOURSE_CACHE")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return target, env


def test_the_installed_package_works_without_the_repository(built, tmp_path):
    target, env = _installed(built, tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()
    script = f"""
import importlib, pkgutil, sys
import dlcourse
assert dlcourse.__file__.startswith({str(target)!r}), dlcourse.__file__
for module in pkgutil.walk_packages(dlcourse.__path__, "dlcourse."):
    if module.name != "dlcourse.__main__":
        importlib.import_module(module.name)
from dlcourse.pretrained import list_pretrained, load_pretrained
for name in list_pretrained():
    load_pretrained(name, device="cpu")
print("loaded", len(list_pretrained()))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=away, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"loaded ([1-9]\d*)", result.stdout), result.stdout


def test_python_m_dlcourse_notebooks_gives_the_notebooks_and_keeps_yours(built, tmp_path):
    target, env = _installed(built, tmp_path)
    away = tmp_path / "elsewhere"
    away.mkdir()

    def run(*args):
        return subprocess.run([sys.executable, "-m", "dlcourse", *args], cwd=away, env=env,
                              capture_output=True, text=True, timeout=120)

    first = run("notebooks", "course")
    assert first.returncode == 0, first.stderr
    got = sorted(p.relative_to(away / "course").as_posix() for p in (away / "course").rglob("*.ipynb"))
    assert got == sorted(p.relative_to(ROOT / "notebooks").as_posix() for p in NOTEBOOKS if p.suffix == ".ipynb")
    mine = away / "course" / NOTEBOOKS[0].relative_to(ROOT / "notebooks")
    mine.write_text("my answers")
    again = run("notebooks", "course")
    assert again.returncode == 0 and mine.read_text() == "my answers"
    assert "0 notebook file(s) copied" in again.stdout and f"{len(NOTEBOOKS)} of yours kept" in again.stdout
    wrong = run("notebook", "course")
    assert wrong.returncode == 2 and "usage: python -m dlcourse notebooks" in wrong.stderr and "got: notebook course" in wrong.stderr


def test_course_notebooks_in_a_checkout_is_the_repositorys_folder():
    from dlcourse.workspace import course_notebooks

    assert course_notebooks() == ROOT / "notebooks"


CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def test_environment_yml_builds_the_course_as_pyproject_and_the_makefile_do():
    import tomllib

    import yaml
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {Requirement(r).name: Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert SpecifierSet(project["requires-python"]).contains(python.split("=", 1)[1] + ".0")
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[-1] == "-e .", "the course's own package is installed from the repository, last"
    options = [line for line in pip if line.startswith("--")]
    assert options == [CPU_INDEX], "PyTorch's CPU build comes from PyTorch's CPU index (PyPI's Linux torch is the CUDA one)"
    listed = {Requirement(line).name: Requirement(line) for line in pip if not line.startswith("-")}
    assert listed.keys() == wanted.keys()
    for name, requirement in listed.items():
        if name == "torch":             # pinned: the one version the course is tested with, within pyproject's range
            assert str(requirement.specifier) == "==2.13.0" and wanted[name].specifier.contains("2.13.0")
        else:
            assert requirement == wanted[name], f"environment.yml has {requirement}, pyproject.toml {wanted[name]}"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install torch==2\.13\.0 \$\(TORCH_INDEX\)", makefile)
    assert f"TORCH_INDEX ?= {CPU_INDEX}" in makefile


def test_the_makefile_lab_target_uses_the_workspace_copy():
    # tests/test_workspace.py's update test runs this same command
    assert "$(BIN)/python -m dlcourse.workspace notebooks work" in (ROOT / "Makefile").read_text()
