"""Generate the student notebooks (``notebooks/``) from the sources (``solutions/``).

Runs ``nbgrader generate_assignment`` for each assignment into a temporary folder
with a throwaway gradebook, then moves each notebook into place atomically, so a
failed run never leaves a half-written notebook behind::

    python -m dlcourse.release            # all assignments
    python -m dlcourse.release 01_forward_diffusion
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .files import atomic_write
from .validation import check_choice


def assignments(root: Path | str = ".") -> list[str]:
    """Names of the assignments: the folders of ``solutions/`` holding a notebook of the same name."""
    source = Path(root) / "solutions"
    if not source.is_dir():
        raise FileNotFoundError(f"root: expected a course directory with a solutions/ folder, got {Path(root).resolve()}")
    return sorted(d.name for d in source.iterdir() if (d / f"{d.name}.ipynb").is_file())


def nbgrader_env() -> dict:
    """The environment for running nbgrader from this Python: its ``bin`` first on PATH
    (nbgrader calls its ``alembic`` command from there)."""
    bin_dir = os.path.dirname(sys.executable)
    return dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))


def generate(root: Path | str = ".", names: list[str] | None = None, out: Path | str | None = None) -> list[Path]:
    """Generate student notebooks for ``names`` (default: all) into ``out`` (default: root/notebooks).

    Returns the paths of the notebooks written.
    """
    root = Path(root).resolve()
    out = Path(out).resolve() if out is not None else root / "notebooks"
    known = assignments(root)
    names = names or known
    for name in names:
        check_choice("names", name, known)
    written = []
    with tempfile.TemporaryDirectory(prefix="dlcourse-release-") as tmp:
        for name in names:
            cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force",
                   f"--CourseDirectory.root={root}",
                   f"--CourseDirectory.release_directory={tmp}/release",
                   f"--CourseDirectory.db_url=sqlite:///{tmp}/gradebook.db"]
            result = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=nbgrader_env())
            if result.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{result.stdout}\n{result.stderr}")
            generated = Path(tmp) / "release" / name
            for src in sorted(generated.rglob("*")):
                if src.is_dir():
                    continue
                with open(src, "rb") as f:
                    dest = atomic_write(out / name / src.relative_to(generated),
                                        lambda partial: shutil.copyfileobj(f, partial))
                written.append(dest)
    return written


def main(argv: list[str] | None = None) -> None:
    names = list(sys.argv[1:] if argv is None else argv)
    for path in generate(".", names or None):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
