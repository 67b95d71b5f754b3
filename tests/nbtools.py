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


def is_written_task(cell) -> bool:
    """A manually graded written answer: a Markdown cell that is both a solution and graded."""
    meta = nbgrader_meta(cell)
    return cell.cell_type == "markdown" and meta.get("grade", False) and meta.get("solution", False)


def written_tasks(nb) -> dict[str, float]:
    """``{grade_id: points}`` of the written tasks, which the instructor grades by hand."""
    return {nbgrader_meta(c)["grade_id"]: float(nbgrader_meta(c)["points"]) for c in nb.cells if is_written_task(c)}


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
    """``{grade_id: points}`` of the autograded test cells."""
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
           looping: str | None = None, delete: set[str] = frozenset(), replace: dict | None = None,
           append: dict | None = None):
    """A submission: the release notebook with the source's answers pasted into the solution cells
    (the code exercises and the written tasks).

    ``wrong``: the grade_id of one solution whose result is scaled by 1.1 (a plausible slip);
    ``raising``/``looping``: one whose function raises / never returns; ``delete``: cells to remove;
    ``replace``: ``{grade_id: source}`` for cells whose whole text the student rewrote (a locked test
    cell too); ``append``: ``{grade_id: code}`` added after a solution's answer.
    """
    answers = {nbgrader_meta(c)["grade_id"]: c.source for c in source_nb.cells
               if is_solution(c) or is_written_task(c)}
    replace, append = replace or {}, append or {}
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
            cell.source = code + append.get(grade_id, "")
        elif is_written_task(cell):
            cell.source = strip_markers(answers[grade_id])
        if grade_id in replace:
            cell.source = replace[grade_id]
        cells.append(cell)
    nb.cells = cells
    return nb


# "about 45 minutes", "10–20 seconds", "4 to 4.5 minutes", "an hour", "a few seconds", "20 s"
DURATION_RE = re.compile(r"\b(\d+(?:\.\d+)?|an?|a few)(?:\s*(?:–|-|to)\s*(\d+(?:\.\d+)?))?"
                         r"\s*(seconds?|s|min(?:utes?)?|hours?)\b")
TIME_RE = re.compile(r"\*\*Time:\*\*(.*?)(?:\n\s*\n|$)", re.S)


def minutes(match: re.Match) -> float:
    """A ``DURATION_RE`` match in minutes, the upper end of a range ("10–20 seconds" -> 1/3)."""
    low, high, unit = match.groups()
    value = float(high or {"a": 1, "an": 1, "a few": 3}.get(low, low))
    return value / 60 if unit.startswith("s") else value * 60 if unit.startswith("h") else value


def time_budget(markdown: str) -> tuple[float, float]:
    """``(learner's minutes, CPU minutes)`` from a first cell's "**Time:**" paragraph.

    The paragraph gives first the learner's time (reading and exercises), then how long running
    every cell takes on a CPU, e.g. "**Time:** about 45 minutes of reading and exercises. Running
    every cell takes about 2 minutes on a 2-core CPU". Raises AssertionError saying what is missing.
    """
    found = TIME_RE.search(markdown)
    assert found, 'no "**Time:**" paragraph saying how long the notebook takes'
    text = " ".join(found.group(1).split())
    durations = list(DURATION_RE.finditer(text))
    assert len(durations) >= 2, f"the time paragraph should give the learner's time and the CPU's, got: {text!r}"
    assert "reading" in text[durations[0].end():durations[1].start()], \
        f"the first time given should be the learner's (reading and exercises), got: {text!r}"
    assert "CPU" in text[durations[1].start():], f"the second time given should be on a CPU, got: {text!r}"
    return minutes(durations[0]), minutes(durations[1])


def reports_success(test_source: str) -> bool:
    """True if the visible part of a graded test cell checks something and then ends with ``passed(...)``.

    The visible part is what a learner sees: the cell without its hidden tests. Its last
    top-level statement must call ``passed``, after at least one ``assert`` or ``check_...`` call.
    """
    body = ast.parse(HIDDEN_RE.sub("", test_source)).body
    if not body:
        return False
    last = body[-1]
    ends_with_passed = (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
                        and isinstance(last.value.func, ast.Name) and last.value.func.id == "passed")
    checks = any(isinstance(node, ast.Assert)
                 or (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                     .startswith("check"))
                 for stmt in body[:-1] for node in ast.walk(stmt))
    return ends_with_passed and checks


def run(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(nbgrader_env(), **(env or {}))
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def nbgrader(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, timeout=timeout)
