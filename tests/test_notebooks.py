"""Every solution notebook runs top to bottom in fast mode, and every test cell in it passes."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from nbtools import (ROOT, SOLUTIONS, HIDDEN_RE, SOLUTION_RE, exercises, is_graded_test, is_solution,
                     is_written_task, nbgrader_meta, reports_success, time_budget, written_tasks)

pytestmark = pytest.mark.notebooks

GRADED_MINIMUM = {"00_welcome": 1, "01_forward_diffusion": 3, "02_noise_schedules": 3, "03_learning_to_denoise": 5,
                  "04_samplers": 6, "05_classifier_free_guidance": 3, "06_latent_diffusion": 5,
                  "07a_text_conditioning": 2, "08_few_step_generation": 6, "09_score_view": 3,
                  "07b_control_and_image_prompts": 4, "10a_stable_diffusion": 2}
GRADED_MINIMUM["10b_imagen_and_flux"] = 3
GRADED_MINIMUM["10d_sd3_mmdit"] = 2
GRADED_MINIMUM["10e_dalle3_recaptioning"] = 1
GRADED_MINIMUM["10c_sdxl"] = 2


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
            grade_id = nbgrader_meta(cell)["grade_id"]
            assert HIDDEN_RE.search(cell.source), f"{grade_id} has no hidden tests"
            assert reports_success(cell.source), \
                f"{grade_id}: the visible part should check something and end with passed(...)"
        if is_solution(cell):
            assert "### BEGIN SOLUTION" in cell.source
        assert not cell.get("outputs"), "source notebooks are stored without outputs"


# notebooks with a written task graded by hand (a Markdown answer cell with points, its rubric in the solution only)
WRITTEN_MINIMUM = {"01_forward_diffusion": 1, "03_learning_to_denoise": 1, "04_samplers": 1,
                   "05_classifier_free_guidance": 1}


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_written_task_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert len(written_tasks(nb)) >= WRITTEN_MINIMUM.get(path.stem, 0), "too few written tasks"
    for i, cell in enumerate(nb.cells):
        if not is_written_task(cell):
            continue
        grade_id = nbgrader_meta(cell)["grade_id"]
        assert nbgrader_meta(cell)["points"] > 0, f"{grade_id} has no points"
        blocks = SOLUTION_RE.findall(cell.source)
        assert len(blocks) == 1 and SOLUTION_RE.sub("", cell.source).strip() == "", \
            f"{grade_id}: the whole answer, model answer and rubric, goes in one BEGIN/END SOLUTION block"
        assert "**Rubric" in blocks[0] and "**Model answer" in blocks[0], f"{grade_id}: a model answer and a rubric"
        prompt = nb.cells[i - 1]
        assert prompt.cell_type == "markdown" and "graded by hand" in prompt.source, \
            f"{grade_id}: the cell before states the task and that it is graded by hand"
        assert f"({nbgrader_meta(cell)['points']} points" in prompt.source, f"{grade_id}: the task states its points"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_first_cell_states_the_goals_and_the_time_it_takes(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown", "the notebook opens with its introduction"
    assert "you will" in first.source.lower(), "the first cell says what the learner will be able to do"
    learner, cpu = time_budget(first.source)
    assert 5 <= learner <= 120, f"the learner's time should be 5 minutes to 2 hours, got {learner:g} minutes"
    assert 0 < cpu <= learner, f"running every cell ({cpu:g} min) should fit in the learner's time ({learner:g} min)"


def test_the_structure_checks_reject_what_they_should():
    # the checks above must be able to fail: each of these is a plausible slip
    good = "**Time:** about 45 minutes of reading and exercises. Running every cell takes 2 minutes on a 2-core CPU."
    assert time_budget(good) == (45, 2)
    assert time_budget("**Time:** about an hour of reading. The code runs in 10–20 seconds on a CPU.") == (60, 1 / 3)
    for bad in ("Train a 3-minute model, then read for a minute.",                       # no Time paragraph
                "**Time:** about 45 minutes of reading and exercises.",                 # no CPU time
                "**Time:** running takes 2 minutes on a CPU, then 45 minutes of reading.",  # in the wrong order
                "**Time:** about 45 minutes of reading. Running takes 2 minutes on a GPU."):  # not on a CPU
        with pytest.raises(AssertionError):
            time_budget(bad)
    check = "check_close('f', f(1), 2)\n"
    hidden = "### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS\n"
    assert reports_success(check + "passed('f')\n" + hidden)
    assert not reports_success(check + hidden + "# print(f(1))\n")              # a comment reports nothing
    assert not reports_success(check + "### BEGIN HIDDEN TESTS\npassed('f')\n### END HIDDEN TESTS\n")
    assert not reports_success("passed('f')\n")                                   # checks nothing
    assert not reports_success(check + "if f(1) == 2:\n    passed('f')\n")       # not always reached
    assert not reports_success(check + "passed('f')\nassert f(3) == 6\n")        # reports before it has checked


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
