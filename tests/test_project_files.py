"""The project's own files agree with each other."""

import re
import tomllib

from nbtools import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {_name(r) for r in pyproject["project"]["dependencies"]}
    wanted |= {_name(r) for r in pyproject["project"]["optional-dependencies"]["dev"]}
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    pip_lines = [line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- ")]
    listed = {_name(line) for line in pip_lines if not line.startswith("-")}     # not "-e ." nor pip's options
    assert wanted == listed, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_ci_calls_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_torch_is_pinned_where_it_is_installed():
    assert "torch==2.13.0" in (ROOT / "Makefile").read_text()
    assert "torch==2.13.0" in (ROOT / "environment.yml").read_text()


def test_the_package_index_lists_every_module_once():
    import pkgutil

    import dlcourse

    modules = {m.name for m in pkgutil.iter_modules(dlcourse.__path__)}
    listed = re.findall(r"^- ``dlcourse\.(\w+)``", dlcourse.__doc__, re.M)
    assert len(listed) == len(set(listed)), "a module is listed twice in dlcourse/__init__.py's docstring"
    assert set(listed) == modules, (f"dlcourse/__init__.py's index: missing {sorted(modules - set(listed))}, "
                                    f"no longer there {sorted(set(listed) - modules)}")


def test_the_package_imports_itself_relatively():
    # one import style inside the package: `from .x import y`, never `from dlcourse.x import y`
    offenders = [f"{path.relative_to(ROOT)}:{i}" for path in sorted((ROOT / "dlcourse").rglob("*.py"))
                 for i, line in enumerate(path.read_text().splitlines(), 1)
                 if re.match(r"\s*(from|import) dlcourse\b", line)]
    assert not offenders, f"absolute imports of dlcourse inside the package: {offenders}"
