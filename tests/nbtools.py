"""Helpers shared by the notebook and nbgrader tests."""

from __future__ import annotations

import ast
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from dlcourse.release import nbgrader_env

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted(ROOT.glob("solutions/*/*.ipynb"))
SOLUTION_RE = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?^[ \t]*### END SOLUTION[^\n]*\n?", re.S | re.M)
HIDDEN_RE = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.S | re.M)


def nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_solution(cell) -> bool:
    return cell.cell_type == "code" and nbgrader_meta(cell).get("solution", False)


def is_graded_test(cell) -> bool:
    meta = nbgrader_meta(cell)
    return cell.cell_type == "code" and meta.get("grade", False) and not meta.get("solution", False)


def exercises(nb) -> list[tuple[str, list[str]]]:
    """``[(solution grade_id, [test grade_ids that follow it]), ...]`` in notebook order."""
    out = []
    for cell in nb.cells:
        if is_solution(cell):
            out.append((nbgrader_meta(cell)["grade_id"], []))
        elif is_graded_test(cell) and out:
            out[-1][1].append(nbgrader_meta(cell)["grade_id"])
    return out


def points(nb) -> dict[str, float]:
    return {nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c)["points"]) for c in nb.cells if is_graded_test(c)}


def strip_markers(source: str) -> str:
    """The learner's answer: the solution text without nbgrader's marker lines."""
    return "\n".join(line for line in source.splitlines()
                     if not re.match(r"^\s*### (BEGIN|END) SOLUTION", line))


def function_name(source: str) -> str:
    """The name of the first function or class that a solution cell defines."""
    for node in ast.parse(strip_markers(source)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            return node.name
    raise ValueError("no function or class definition in the solution cell")


def filled(release_nb, source_nb, *, wrong: str | None = None, raising: str | None = None,
           looping: str | None = None, delete: set[str] = frozenset()):
    """A submission: the release notebook with the source's answers pasted into the solution cells.

    ``wrong``: the grade_id of one solution whose result is scaled by 1.1 (a plausible slip);
    ``raising``/``looping``: one whose function raises / never returns; ``delete``: cells to remove.
    """
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source_nb.cells if is_solution(c)}
    nb = copy.deepcopy(release_nb)
    cells = []
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in delete:
            continue
        if is_solution(cell):
            code = strip_markers(answers[grade_id])
            name = function_name(code) if grade_id in (wrong, raising, looping) else None
            if grade_id == wrong:
                code += (f"\n\n_right_{name} = {name}\n\ndef {name}(*args, **kwargs):\n"
                         f"    out = _right_{name}(*args, **kwargs)\n"
                         "    return tuple(o * 1.1 for o in out) if isinstance(out, tuple) else out * 1.1\n")
            if grade_id == raising:
                code += f"\n\ndef {name}(*args, **kwargs):\n    raise ValueError('something went wrong')\n"
            if grade_id == looping:
                code += f"\n\ndef {name}(*args, **kwargs):\n    while True:\n        pass\n"
            cell.source = code
        cells.append(cell)
    nb.cells = cells
    return nb


def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(nbgrader_env(), **(env or {}))
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def nbgrader(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, timeout=timeout)
