"""``python -m dlcourse notebooks [DIR]``: get the student notebooks without the repository.

Copies the notebooks that ship inside the installed package into ``DIR`` (default ``work``),
never over a file you have there (see :mod:`dlcourse.workspace`); then ``jupyter lab DIR``.
"""

from __future__ import annotations

import sys

from .workspace import course_notebooks, describe, prepare_workspace

USAGE = """usage: python -m dlcourse notebooks [DIR]

  notebooks [DIR]   copy the course's student notebooks into DIR (default: work), never over a file
                    you have there; a notebook the course has changed since is put beside yours
                    as NAME.updated.ipynb"""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not args or args[0] != "notebooks" or len(args) > 2:
        print(f"{USAGE}\n\ngot: {' '.join(args) or '(nothing)'}", file=sys.stderr)
        return 2
    dest = args[1] if len(args) == 2 else "work"
    print(describe(prepare_workspace(course_notebooks(), dest), dest))
    print(f"Open them with: jupyter lab {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
