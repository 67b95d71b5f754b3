"""Every solution notebook runs top to bottom in fast mode, and every test cell in it passes."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from nbtools import ROOT, SOLUTIONS, HIDDEN_RE, exercises, is_graded_test, is_solution, nbgrader_meta

pytestmark = pytest.mark.notebooks

GRADED_MINIMUM = {"00_welcome": 1, "01_forward_diffusion": 3, "02_noise_schedules": 3, "03_learning_to_denoise": 4,
                  "04_samplers": 4, "05_classifier_free_guidance": 3, "09_score_view": 3}


def test_there_are_notebooks():
    names = [p.stem for p in SOLUTIONS]
    for expected in GRADED_MINIMUM:
        assert expected in names


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_exercise_structure(path):
    nb = nbformat.read(path, as_version=4)
    ex = exercises(nb)
    assert len(ex) >= GRADED_MINIMUM.get(path.stem, 0), "too few graded exercises"
    grade_ids = [nbgrader_meta(c)["grade_id"] for c in nb.cells if nbgrader_meta(c)]
    assert len(grade_ids) == len(set(grade_ids)), "grade_ids must be unique"
    for solution_id, tests in ex:
        assert tests, f"exercise {solution_id} has no graded test cell after it"
    for cell in nb.cells:
        if is_graded_test(cell):
            assert HIDDEN_RE.search(cell.source), f"{nbgrader_meta(cell)['grade_id']} has no hidden tests"
            assert "passed(" in cell.source or "print(" in cell.source, "a visible test should report success"
        if is_solution(cell):
            assert "### BEGIN SOLUTION" in cell.source
        assert not cell.get("outputs"), "source notebooks are stored without outputs"
    first = nb.cells[0].source.lower()
    assert "minute" in first, "the first cell says how long the notebook takes"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebook_executes_in_fast_mode(path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"{nbgrader_meta(cell).get('grade_id', cell.source[:60])!r}: {out.ename}: {out.evalue}")
    assert not errors, "cells raised:\n" + "\n".join(errors)
