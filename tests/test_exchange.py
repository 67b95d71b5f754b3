"""A term through nbgrader's exchange, on one machine, as on a JupyterHub.

An instructor and two students, each with a home directory of their own (their own ``~/.jupyter`` config
and nbgrader cache), share an exchange directory; a shared config folder stands for the hub's
``/etc/jupyter/nbgrader_config.py`` (course id and exchange). The instructor's course directory holds the
repository's ``nbgrader_config.py`` and one source notebook. The term, with nbgrader's own commands:

generate_assignment -> release_assignment -> each student fetch_assignment, works and submits (alice hands
in the model answers before the due date, bob one wrong exercise and a weak written answer after it) ->
collect -> autograde -> the written answers graded by hand through the Gradebook API, as formgrader does ->
generate_feedback -> release_feedback -> each student fetch_feedback.

The gradebook must hold alice's full marks and bob's partial ones, bob's submission marked late, and each
student must find their own feedback page in their own folder, showing the visible tests and the scores but
none of the hidden tests' code, not even where a failed hidden test's traceback quotes it (bob's forward_step is
also off, on float64 images only: its visible test passes, a hidden test fails). These are the commands of
docs/instructors.md.
"""

from __future__ import annotations

import datetime
import html
import re
import shutil
import sys

import nbformat
import pytest
from nbgrader.api import Gradebook

from dlcourse.grading import HIDDEN_LINES_LEFT_OUT, hidden_test_lines
from nbtools import HIDDEN_RE, ROOT, exercises, filled, points, run, written_tasks

pytestmark = [pytest.mark.notebooks, pytest.mark.exchange]

NAME = "01_forward_diffusion"   # four exercises and a written task; autogrades in about 15 s in fast mode
COURSE = "dlcourse"
STUDENTS = ("alice", "bob")
# the marks the instructor gives the written task by hand (alice: the model answer; bob: a weak one)
WRITTEN_MARKS = {"alice": 1.0, "bob": 1 / 3}   # fraction of the task's points
WEAK_ANSWER = "Adding noise many times gives noise. I did not finish the derivation."
# bob's forward_step is right on float32 images (the visible test's) and off on float64 ones (a hidden test's)
SLIP = "forward_step"
SLIPPED = ("\n\n_exact_forward_step = forward_step\n\n\ndef forward_step(x_prev, beta_t, eps):\n"
           "    out = _exact_forward_step(x_prev, beta_t, eps)\n"
           "    return out * 1.1 if x_prev.dtype == torch.float64 else out\n")
HIDDEN_FAILURE = "forward_step at t=0 of the linear schedule is not right yet"   # the hidden check's message


def _config(path, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["c = get_config()  # noqa: F821"] + [f"c.{key} = {value!r}" for key, value in options.items()]
    path.write_text("\n".join(lines) + "\n")


class User:
    """One account on the hub: a home directory with its own Jupyter config, data and runtime folders."""

    def __init__(self, root, name, shared_config):
        self.name, self.home = name, root / name
        self.home.mkdir()
        self.env = {"HOME": str(self.home),
                    "JUPYTER_CONFIG_DIR": str(self.home / ".jupyter"),
                    "JUPYTER_DATA_DIR": str(self.home / ".local" / "share" / "jupyter"),
                    "JUPYTER_RUNTIME_DIR": str(self.home / ".local" / "share" / "jupyter" / "runtime"),
                    # stands for /etc/jupyter, where the hub's admin puts the config every account shares
                    "JUPYTER_CONFIG_PATH": str(shared_config),
                    "JUPYTERHUB_USER": name}

    def config(self, **options):
        _config(self.home / ".jupyter" / "nbgrader_config.py", **options)

    def nbgrader(self, *args):
        """``nbgrader ARGS`` run by this user, from their home directory; returns stdout and stderr."""
        result = run([sys.executable, "-m", "nbgrader", *args], cwd=self.home, timeout=600, env=self.env)
        return result.stdout + result.stderr


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    exchange = tmp / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)   # nbgrader's exchange: a folder every account can write to
    shared = tmp / "etc" / "jupyter"
    _config(shared / "nbgrader_config.py", **{"CourseDirectory.course_id": COURSE, "Exchange.root": str(exchange)})

    # the instructor: the course directory (this repository, here only what the term needs) in their home
    instructor = User(tmp, "instructor", shared)
    course = instructor.home / COURSE
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / NAME, course / "solutions" / NAME)
    instructor.config(**{"CourseDirectory.root": str(course)})

    # the students; on a hub each is a Unix account (or JUPYTERHUB_USER in a container) and nbgrader takes the
    # student id from it; here all run as one account, so each one's config names them
    students = {}
    for name in STUDENTS:
        students[name] = User(tmp, name, shared)
        students[name].config(**{"CourseDirectory.student_id": name})

    log = {}
    instructor.nbgrader("generate_assignment", NAME)
    for name in STUDENTS:
        instructor.nbgrader("db", "student", "add", name, f"--first-name={name.title()}", "--last-name=Learner")
    instructor.nbgrader("release_assignment", NAME)

    source = nbformat.read(course / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)
    fetched = {}
    for name, student in students.items():
        log[("list", name)] = student.nbgrader("list")
        student.nbgrader("fetch_assignment", NAME)
        fetched[name] = nbformat.read(student.home / NAME / f"{NAME}.ipynb", as_version=4)

    # the students work: alice writes the model answers, bob gets one exercise wrong and answers the written
    # task weakly; alice submits before the due date, bob after it (the due date is set in between)
    ids = [solution for solution, _ in exercises(source)]
    wrong = ids[2]
    written = list(written_tasks(source))
    slipped = next(sid for sid, _ in exercises(source) if f"def {SLIP}(" in _cell(source, sid).source)
    work = {"alice": filled(fetched["alice"], source),
            "bob": filled(fetched["bob"], source, wrong=wrong, replace={w: WEAK_ANSWER for w in written},
                          append={slipped: SLIPPED})}
    for name in STUDENTS:
        nbformat.write(work[name], students[name].home / NAME / f"{NAME}.ipynb")

    students["alice"].nbgrader("submit", NAME)
    due = _utc_now()
    instructor.nbgrader("db", "assignment", "add", NAME, f"--duedate={due}")
    students["bob"].nbgrader("submit", NAME)

    instructor.nbgrader("collect", NAME)
    log["autograde"] = instructor.nbgrader("autograde", NAME)

    # the written answers, graded by hand: what formgrader's grade and comment forms store in the gradebook
    db_url = f"sqlite:///{course}/gradebook.db"
    with Gradebook(db_url) as gb:
        for name in STUDENTS:
            for task in written:
                grade = gb.find_grade(task, NAME, NAME, name)
                assert grade.needs_manual_grade, f"{name}'s written answer {task} was not left for the instructor"
                grade.manual_score = WRITTEN_MARKS[name] * grade.max_score
                grade.needs_manual_grade = False
                gb.find_comment(task, NAME, NAME, name).manual_comment = f"Written task marked for {name}."
        gb.db.commit()

    instructor.nbgrader("generate_feedback", NAME)
    instructor.nbgrader("release_feedback", NAME)
    for name, student in students.items():
        log[("fetch_feedback", name)] = student.nbgrader("fetch_feedback", NAME)

    return {"course": course, "db_url": db_url, "source": source, "fetched": fetched, "students": students,
            "wrong": wrong, "slipped": slipped, "written": written, "due": due, "log": log}


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _normalise(nb):
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        cell.pop("id", None)
    return nb


def test_students_fetch_the_released_student_version(term):
    # what generate_assignment wrote into the course's notebooks/ (tests/test_nbgrader.py checks that it is the
    # committed student version) reaches each student unchanged, without solutions
    released = nbformat.read(term["course"] / "notebooks" / NAME / f"{NAME}.ipynb", as_version=4)
    for name in STUDENTS:
        assert NAME in term["log"][("list", name)], f"{name} does not see {NAME} released"
        assert _normalise(term["fetched"][name]) == _normalise(released), \
            f"{name} fetched something else than the release of {NAME}"
        assert "BEGIN SOLUTION" not in str(term["fetched"][name])


def _autograded(term, name):
    src = term["source"]
    with Gradebook(term["db_url"]) as gb:
        notebook = gb.find_submission_notebook(NAME, NAME, name)
        return {g.name: g.score for g in notebook.grades if g.name in points(src)}


def test_model_answers_get_full_auto_marks(term):
    assert _autograded(term, "alice") == points(term["source"])


def test_wrong_exercises_lose_exactly_their_points(term):
    got, full = _autograded(term, "bob"), points(term["source"])
    lost = {gid for gid in full if got[gid] != full[gid]}
    tests = dict(exercises(term["source"]))
    assert lost == set(tests[term["wrong"]]) | set(tests[term["slipped"]])
    assert all(got[gid] == 0 for gid in lost)


def test_totals_count_the_hand_marks(term):
    src = term["source"]
    auto_max, written_max = sum(points(src).values()), sum(written_tasks(src).values())
    with Gradebook(term["db_url"]) as gb:
        for name in STUDENTS:
            submission = gb.find_submission(NAME, name)
            expected = sum(_autograded(term, name).values()) + WRITTEN_MARKS[name] * written_max
            assert submission.max_score == auto_max + written_max
            assert submission.score == pytest.approx(expected), name
            assert not submission.needs_manual_grade, f"{name}'s submission still waits for manual grading"
        assert gb.find_submission(NAME, "alice").score == auto_max + written_max
        assert gb.find_submission(NAME, "bob").score < auto_max + written_max


def test_late_submission_is_recorded(term):
    with Gradebook(term["db_url"]) as gb:
        assert gb.find_assignment(NAME).duedate is not None
        alice, bob = gb.find_submission(NAME, "alice"), gb.find_submission(NAME, "bob")
        assert alice.total_seconds_late == 0
        assert bob.total_seconds_late > 0
        # the course keeps nbgrader's default late policy ("none"): lateness is recorded, no points are taken
        assert bob.late_submission_penalty == 0
        assert bob.score == pytest.approx(sum(_autograded(term, "bob").values())
                                          + WRITTEN_MARKS["bob"] * sum(written_tasks(term["source"]).values()))
    assert "seconds late" in term["log"]["autograde"]


def test_each_student_gets_their_own_feedback(term):
    pages = {}
    for name, student in term["students"].items():
        found = sorted((student.home / NAME / "feedback").glob(f"*/{NAME}.html"))
        assert len(found) == 1, f"{name}: expected one feedback page, found {found}"
        pages[name] = found[0].read_text()
    with Gradebook(term["db_url"]) as gb:
        for name, page in pages.items():
            submission = gb.find_submission(NAME, name)
            heading = f"{NAME} (Score: {submission.score:.1f} / {submission.max_score:.1f})"
            assert heading in page, f"{name}'s feedback does not say {heading!r}"
            assert f"Written task marked for {name}." in page
    assert "Written task marked for bob." not in pages["alice"]
    assert "Written task marked for alice." not in pages["bob"]
    assert WEAK_ANSWER in pages["bob"] and WEAK_ANSWER not in pages["alice"]


def _feedback_text(student) -> str:
    """What a browser shows of a student's feedback page: its text without the HTML tags."""
    page = next((student.home / NAME / "feedback").glob(f"*/{NAME}.html")).read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_feedback_shows_the_visible_tests_and_scores_but_not_the_hidden_tests(term):
    src = term["source"]
    # lines that only the hidden-test blocks hold (not the visible code or the prose of any cell)
    elsewhere = {line.strip() for c in src.cells for line in HIDDEN_RE.sub("", c.source).splitlines()}
    hidden = {line for line in set().union(*(hidden_test_lines(c.source) for c in src.cells))
              if not any(line in other for other in elsewhere)}   # nor part of a longer line elsewhere
    assert len(hidden) > 50, "the notebook's hidden tests hold too few lines of their own to check the pages"
    tests = [c for c in src.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    with Gradebook(term["db_url"]) as gb:
        notebook = {name: gb.find_submission_notebook(NAME, NAME, name) for name in STUDENTS}
        scores = {name: {g.name: (g.score, g.max_score) for g in notebook[name].grades} for name in STUDENTS}
    for name, student in term["students"].items():
        text = _feedback_text(student)
        assert "BEGIN HIDDEN TESTS" not in text and "END HIDDEN TESTS" not in text, name
        leaked = sorted(line for line in hidden if line in text)
        assert not leaked, f"{name}'s feedback shows {len(leaked)} lines of hidden tests, e.g. {leaked[:3]}"
        for cell in tests:   # every visible test, line by line
            missing = [line.strip() for line in HIDDEN_RE.sub("", cell.source).splitlines()
                       if line.strip() and line.strip() not in text]
            assert not missing, f"{name}'s feedback lacks visible test lines of {_grade_id(cell)}: {missing[:3]}"
        shown = re.findall(r"Test cell \(Score: ([\d.]+) / ([\d.]+)\)", text)
        expected = [scores[name][_grade_id(cell)] for cell in tests]
        assert [(float(a), float(b)) for a, b in shown] == expected, f"{name}'s feedback shows other test scores"
    bob = _feedback_text(term["students"]["bob"])
    # the hidden test that bob's forward_step fails: its message stays, the lines its traceback quoted do not
    assert scores["bob"][_grade_id(_test_after(src, term["slipped"]))][0] == 0
    assert HIDDEN_FAILURE in bob and HIDDEN_LINES_LEFT_OUT in bob
    assert HIDDEN_FAILURE not in _feedback_text(term["students"]["alice"])


def _grade_id(cell):
    return cell.metadata["nbgrader"]["grade_id"]


def _test_after(nb, solution_id):
    return _cell(nb, dict(exercises(nb))[solution_id][0])
