"""The nbgrader round trip, in a temporary course directory.

Regenerated student notebooks equal the committed ones and carry no solution or
hidden test; the solutions autograde to full marks; untouched releases to zero;
one wrong, raising, looping or deleted exercise costs exactly its own points, and
so does a hostile one: a cell that exits or kills its kernel, an answer full of
NaN, an edited locked test, a replaced checker, a call to the package's own answer.
Written tasks are released blank and left for the instructor to grade by hand.
"""

import shutil
import sys

import nbformat
import pytest
from nbgrader.api import Gradebook

from dlcourse.release import generate
from nbtools import (HIDDEN_RE, ROOT, SOLUTION_RE, SOLUTIONS, exercises, filled, function_name, nbgrader,
                     nbgrader_meta, points, strip_markers, written_tasks)
from nbtools import run

pytestmark = pytest.mark.notebooks

NAMES = [p.stem for p in SOLUTIONS]
CELL_TIMEOUT = 30  # seconds; a looping cell is interrupted after this


def _normalise(nb):
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        cell.pop("id", None)
    return nb


def test_committed_notebooks_are_in_sync(tmp_path):
    generate(ROOT, out=tmp_path)
    for name in NAMES:
        fresh = nbformat.read(tmp_path / name / f"{name}.ipynb", as_version=4)
        committed_path = ROOT / "notebooks" / name / f"{name}.ipynb"
        assert committed_path.exists(), f"{committed_path} is missing: run `make notebooks`"
        committed = nbformat.read(committed_path, as_version=4)
        assert _normalise(fresh) == _normalise(committed), (
            f"notebooks/{name} is out of date with solutions/{name}: run `make notebooks` and commit")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_student_notebooks_hold_no_solutions_or_hidden_tests(path):
    source = nbformat.read(path, as_version=4)
    student = nbformat.read(ROOT / "notebooks" / path.stem / path.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    # lines that exist only inside solution or hidden-test blocks of the source
    public = {line.strip() for c in source.cells
              for line in HIDDEN_RE.sub("", SOLUTION_RE.sub("", c.source)).splitlines()}
    secrets = []
    for cell in source.cells:
        for block in SOLUTION_RE.findall(cell.source) + HIDDEN_RE.findall(cell.source):
            secrets += [line.strip() for line in block.splitlines()
                        if len(line.strip()) > 25 and "###" not in line and line.strip() not in public]
    student_lines = {line.strip() for line in text.splitlines()}
    leaked = [line for line in secrets if line in student_lines]
    assert not leaked, f"solution or hidden-test lines in notebooks/{path.stem}: {leaked[:3]}"
    solution_blocks = sum(len(SOLUTION_RE.findall(c.source)) for c in source.cells if c.cell_type == "code")
    assert code.count("raise NotImplementedError()") == solution_blocks


# how a submission can hand in the package's own answer instead of writing it (the last exercise of a notebook)
DELEGATES = {"01_forward_diffusion": (
    "\n\nfrom dlcourse.forward import q_posterior as _q_posterior\nfrom dlcourse.schedules import linear_schedule\n\n"
    "_schedule = linear_schedule(1000)\n\n\n"
    "def posterior_mean_variance(x_t, x_0, t, betas, alphas_cumprod):\n"
    "    return _q_posterior(x_t, x_0, t, _schedule)\n")}


def _answer(nb, grade_id):
    return next(c.source for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Autograde a set of submissions; returns ``{(student, assignment): {grade_id: score}}``."""
    course = tmp_path_factory.mktemp("course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for path in SOLUTIONS:
        shutil.copytree(path.parent, course / "solutions" / path.stem)
        nbgrader("generate_assignment", path.stem, "--force", cwd=course)
    src = {p.stem: nbformat.read(p, as_version=4) for p in SOLUTIONS}
    rel = {n: nbformat.read(course / "notebooks" / n / f"{n}.ipynb", as_version=4) for n in NAMES}

    submissions = {}
    for n in NAMES:
        submissions[("solutions", n)] = filled(rel[n], src[n])
        submissions[("blank", n)] = rel[n]
    # the partial-credit cases, on the first notebook with at least three exercises
    target = next(n for n in NAMES if len(exercises(src[n])) >= 3)
    ids = [sol for sol, _ in exercises(src[target])]
    test_of = dict(exercises(src[target]))
    submissions[("one_wrong", target)] = filled(rel[target], src[target], wrong=ids[0])
    submissions[("raises", target)] = filled(rel[target], src[target], raising=ids[1])
    submissions[("loops", target)] = filled(rel[target], src[target], looping=ids[2])
    # deleting a test cell or a solution cell costs that exercise's points, and grading still finishes
    submissions[("deleted", target)] = filled(rel[target], src[target], delete={test_of[ids[0]][0], ids[1]})
    # exercise 1 calls sys.exit(), exercise 2 is wrong and its locked test cell was edited to pass (nbgrader puts the
    # test back), exercise 3 defines its function and then ends the kernel's process; exercise 4 is right
    submissions[("exits", target)] = filled(
        rel[target], src[target], wrong=ids[1], append={ids[2]: "\n\nimport os\nos._exit(0)\n"},
        replace={ids[0]: "import sys\nsys.exit()\n", test_of[ids[1]][0]: "print('all good')\n"})
    # exercise 1 replaces the checkers with ones that never fail, exercise 2 is wrong, exercise 3 answers NaN,
    # exercise 4 calls the package's own answer (the hidden tests' fresh checkers and own_work catch them)
    name3 = function_name(strip_markers(_answer(src[target], ids[2])))
    submissions[("tampers", target)] = filled(
        rel[target], src[target], wrong=ids[1],
        append={ids[0]: "\n\nimport dlcourse.checks\nfor _name in ('check_close', 'check_shape', 'check_true'):\n"
                        "    setattr(dlcourse.checks, _name, lambda *a, **k: None)\n",
                ids[2]: f"\n\ndef {name3}(*args, **kwargs):\n    return torch.full_like(args[0], float('nan'))\n",
                ids[3]: DELEGATES.get(target, "")})
    for (student, n), nb in submissions.items():
        folder = course / "submitted" / student / n
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{n}.ipynb")

    for n in NAMES:
        nbgrader("autograde", n, "--force", f"--Execute.timeout={CELL_TIMEOUT}", cwd=course)
    scores, flagged, written = {}, {}, {}
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        for (student, n) in submissions:
            notebook = gb.find_submission_notebook(n, n, student)
            scores[(student, n)] = {g.name: g.score for g in notebook.grades if g.name in points(src[n])}
            flagged[(student, n)] = {g.name for g in notebook.grades if g.needs_manual_grade}
            written[(student, n)] = {g.name: (g.auto_score, g.needs_manual_grade, g.max_score)
                                     for g in notebook.grades if g.name in written_tasks(src[n])}
    return scores, src, target, ids, test_of, flagged, {"course": course, "rel": rel, "written": written}


@pytest.mark.parametrize("name", NAMES)
def test_solutions_get_full_marks(graded, name):
    scores, src, *_ = graded
    assert scores[("solutions", name)] == points(src[name])


@pytest.mark.parametrize("name", NAMES)
def test_blank_notebooks_get_zero(graded, name):
    scores, *_ = graded
    assert scores[("blank", name)], "no autograded cells found"
    assert all(score == 0 for score in scores[("blank", name)].values()), scores[("blank", name)]


def _lost(scores, src, student, target):
    full = points(src[target])
    got = scores[(student, target)]
    return {gid for gid in full if got.get(gid, 0) != full[gid]}


def test_one_wrong_exercise_loses_exactly_its_points(graded):
    scores, src, target, ids, test_of, *_ = graded
    assert _lost(scores, src, "one_wrong", target) == set(test_of[ids[0]])


def test_raising_code_still_grades(graded):
    scores, src, target, ids, test_of, *_ = graded
    assert _lost(scores, src, "raises", target) == set(test_of[ids[1]])


def test_looping_code_is_interrupted_and_grading_finishes(graded):
    scores, src, target, ids, test_of, *_ = graded
    assert _lost(scores, src, "loops", target) == set(test_of[ids[2]])


def test_deleted_cells(graded):
    scores, src, target, ids, test_of, flagged, _ = graded
    # the deleted test cell of exercise 1 scores zero and is flagged for the instructor;
    # the deleted solution of exercise 2 makes its test fail
    assert _lost(scores, src, "deleted", target) == {test_of[ids[0]][0]} | set(test_of[ids[1]])
    assert test_of[ids[0]][0] in flagged[("deleted", target)]


def _outputs(graded, name, student, grade_id):
    nb = nbformat.read(graded[-1]["course"] / "autograded" / student / name / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if nbgrader_meta(c).get("grade_id") == grade_id)
    return "\n".join(str(o.get("evalue", "")) + str(o.get("text", "")) for o in cell.get("outputs", []))


def test_exiting_and_killed_kernels_and_edited_tests_cost_exactly_their_points(graded):
    scores, src, target, ids, test_of, *_ = graded
    # sys.exit() ends nothing but its cell; os._exit(0) kills the kernel, which is replaced, and the cells before run
    # again (exercise 4 still passes); the edited test of exercise 2 is restored from the gradebook and fails
    assert _lost(scores, src, "exits", target) == set(test_of[ids[0]]) | set(test_of[ids[1]]) | set(test_of[ids[2]])
    assert "kernel stopped" in _outputs(graded, target, "exits", ids[2])


def test_replaced_checkers_nan_answers_and_the_package_answer_score_zero(graded):
    scores, src, target, ids, test_of, *_ = graded
    assert _lost(scores, src, "tampers", target) == set(test_of[ids[1]]) | set(test_of[ids[2]]) | set(test_of[ids[3]])
    assert "NaN" in _outputs(graded, target, "tampers", test_of[ids[2]][0])
    message = _outputs(graded, target, "tampers", test_of[ids[3]][0])
    assert "calls dlcourse.forward.q_posterior" in message and "does not count" in message


@pytest.mark.parametrize("name", [n for n in NAMES if written_tasks(nbformat.read(ROOT / "solutions" / n / f"{n}.ipynb",
                                                                                  as_version=4))])
def test_written_tasks_are_released_blank_and_left_for_manual_grading(graded, name):
    scores, src, *_, run = graded
    tasks = written_tasks(src[name])
    for cell in run["rel"][name].cells:
        if nbgrader_meta(cell).get("grade_id") in tasks:
            assert cell.source.strip() == "YOUR ANSWER HERE", "a written task is released with text in it"
    for grade_id, max_points in tasks.items():
        # answered: collected, not scored, flagged for the instructor; blank: zero, nothing to grade
        assert run["written"][("solutions", name)][grade_id] == (None, True, max_points)
        assert run["written"][("blank", name)][grade_id] == (0, False, max_points)
    # the autograded total counts the exercises only
    assert sum(scores[("solutions", name)].values()) == sum(points(src[name]).values())


# Hostile submissions on one small notebook (three exercises worth 2, 3 and 1 points), so that they grade in seconds:
# nbgrader metadata stripped (as editors other than Jupyter do) or edited, and a huge allocation in a solution cell.
SMALL = "99_small"
SMALL_POINTS = {"test_double": 2.0, "test_square": 3.0, "test_halve": 1.0}


def _small_notebook():
    def meta(**kw):
        return {"nbgrader": dict({"grade": False, "locked": False, "schema_version": 3, "solution": False,
                                  "task": False}, **kw)}
    cells = [nbformat.v4.new_markdown_cell("# A small assignment"), nbformat.v4.new_code_cell("import torch")]
    for name, body, x3, x5 in [("double", "2 * x", 6.0, 10.0), ("square", "x * x", 9.0, 25.0), ("halve", "x / 2", 1.5, 2.5)]:
        cells.append(nbformat.v4.new_code_cell(
            f"def {name}(x):\n    ### BEGIN SOLUTION\n    return {body}\n    ### END SOLUTION",
            metadata=meta(grade_id=f"ex_{name}", solution=True)))
        cells.append(nbformat.v4.new_code_cell(
            f"assert float({name}(torch.tensor(3.0))) == {x3}\n### BEGIN HIDDEN TESTS\n"
            f"assert float({name}(torch.tensor(5.0))) == {x5}\n### END HIDDEN TESTS",
            metadata=meta(grade_id=f"test_{name}", grade=True, locked=True, points=SMALL_POINTS[f"test_{name}"])))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _edit_meta(nb, edits):
    """``edits``: ``{grade_id: function(cell)}`` applied to the cells with that grade_id."""
    for cell in nb.cells:
        grade_id = nbgrader_meta(cell).get("grade_id")
        if grade_id in edits:
            edits[grade_id](cell)
    return nb


@pytest.fixture(scope="module")
def small_graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("small_course")
    shutil.copy(ROOT / "nbgrader_config.py", course)
    (course / "solutions" / SMALL).mkdir(parents=True)
    nbformat.write(_small_notebook(), course / "solutions" / SMALL / f"{SMALL}.ipynb")
    env = {"PYTHONPATH": str(ROOT)}                 # the kernel and nbgrader's config import this checkout's dlcourse
    run([sys.executable, "-m", "nbgrader", "generate_assignment", SMALL, "--force"], cwd=course, timeout=300, env=env)
    src = nbformat.read(course / "solutions" / SMALL / f"{SMALL}.ipynb", as_version=4)
    rel = nbformat.read(course / "notebooks" / SMALL / f"{SMALL}.ipynb", as_version=4)

    def strip(cell):
        cell.metadata.pop("nbgrader", None)

    def unlock_and_pass(cell):                      # the test unlocked, ungraded and rewritten to pass
        cell.metadata.nbgrader.update(locked=False, grade=False)
        cell.source = "print('all good')"

    submissions = {
        "solutions": filled(rel, src),
        # every cell's nbgrader metadata gone, answers right
        "stripped": _edit_meta(filled(rel, src), {g: strip for g in [*SMALL_POINTS, "ex_double", "ex_square",
                                                                        "ex_halve"]}),
        # points raised, a test unlocked and rewritten, a solution cell given another cell's grade_id; answers right
        "edited": _edit_meta(filled(rel, src), {
            "test_double": lambda c: c.metadata.nbgrader.update(points=100),
            "test_square": unlock_and_pass,
            "ex_halve": lambda c: c.metadata.nbgrader.update(grade_id="test_double")}),
        # square wrong, and its test stripped of its metadata and rewritten to pass
        "stripped_wrong": _edit_meta(filled(rel, src, wrong="ex_square"), {
            "test_square": lambda c: (strip(c), setattr(c, "source", "print('all good')"))}),
        # a solution cell that asks for 4 TB
        "huge": filled(rel, src, replace={"ex_square": "big = torch.empty(10**12)\n\n\ndef square(x):\n"
                                                       "    return x * x\n"}),
    }
    for student, nb in submissions.items():
        folder = course / "submitted" / student / SMALL
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{SMALL}.ipynb")
    result = run([sys.executable, "-m", "nbgrader", "autograde", SMALL, "--force", f"--Execute.timeout={CELL_TIMEOUT}"],
                 cwd=course, timeout=600, env=env)
    with Gradebook(f"sqlite:///{course}/gradebook.db") as gb:
        return {student: {g.name: g.score for g in gb.find_submission_notebook(SMALL, SMALL, student).grades}
                for student in submissions}, result.stderr


def test_stripped_or_edited_metadata_and_a_huge_allocation_grade_to_the_right_score(small_graded):
    scores, log = small_graded
    assert scores["solutions"] == SMALL_POINTS
    # the metadata comes back from the source notebook: right answers keep their points, and nothing more
    assert scores["stripped"] == SMALL_POINTS
    assert scores["edited"] == SMALL_POINTS
    assert "metadata restored" in log
    # a stripped and rewritten test is restored too, and the wrong answer loses exactly its points
    assert scores["stripped_wrong"] == dict(SMALL_POINTS, test_square=0.0)
    # the allocation fails in its own cell; grading finishes and only that exercise is lost
    assert scores["huge"] == dict(SMALL_POINTS, test_square=0.0)
