"""The wheel carries the student notebooks: ``notebooks/`` is copied into ``dlcourse/notebooks/``
when the package is built, so ``python -m dlcourse notebooks DIR`` works without the repository.

``notebooks/`` stays the one source (generated from ``solutions/`` by ``make notebooks``); nothing
is copied in the source tree, and an editable install reads ``notebooks/`` where it is
(``dlcourse.workspace.course_notebooks``). Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class build_py_with_notebooks(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = HERE / "notebooks"
        files = sorted(p for p in source.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts)
        if not any(p.suffix == ".ipynb" for p in files):
            raise SystemExit(f"no student notebooks in {source}: the package would ship without them")
        target = Path(self.build_lib) / "dlcourse" / "notebooks"
        if target.exists():
            shutil.rmtree(target)           # a notebook removed from the course leaves no stale copy
        for path in files:
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)


setup(cmdclass={"build_py": build_py_with_notebooks})
