"""Feedback pages leave the hidden tests out: their code (nbgrader's ClearHiddenTests) and their lines quoted
in a failed test's traceback (dlcourse.grading.ClearHiddenTestTracebacks); the failure's message stays.
The whole term through nbgrader's exchange, feedback pages included, is tests/test_exchange.py."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert.filters import strip_ansi
from nbformat.v4 import new_code_cell, new_notebook
from nbgrader.preprocessors import ClearHiddenTests

from dlcourse.grading import HIDDEN_LINES_LEFT_OUT, ClearHiddenTestTracebacks, hidden_test_lines

TEST_CELL = """\
x = 3
assert x > 0, "x must be positive"
### BEGIN HIDDEN TESTS
secret_bound = 2 + 1
assert x != secret_bound, f"x is not right yet (got {x})"
print("unreached")
### END HIDDEN TESTS
"""
HIDDEN = {"secret_bound = 2 + 1", 'assert x != secret_bound, f"x is not right yet (got {x})"', 'print("unreached")'}


def _graded(source):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "grade_id": "test_x",
                                 "points": 1, "schema_version": 3}
    return cell


def test_hidden_test_lines_are_the_lines_only_the_hidden_block_holds():
    source = "import torch\ncheck(1)\n### BEGIN HIDDEN TESTS\nimport torch\n  check(2)\n\n### END HIDDEN TESTS\n"
    assert hidden_test_lines(source) == {"check(2)", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"}
    assert hidden_test_lines("x = 1\n") == set()


@pytest.mark.notebooks   # starts a kernel
def test_a_failed_hidden_test_keeps_its_message_and_loses_its_lines():
    nb = new_notebook(cells=[_graded(TEST_CELL)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=60, allow_errors=True).execute()
    before = strip_ansi("\n".join(nb.cells[0].outputs[0].traceback))
    assert "secret_bound = 2 + 1" in before   # IPython quotes the lines around the failing one

    nb, _ = ClearHiddenTestTracebacks().preprocess(nb, {})
    nb, _ = ClearHiddenTests().preprocess(nb, {})
    cell = nb.cells[0]
    shown = cell.source + "\n" + strip_ansi("\n".join(cell.outputs[0].traceback))
    assert "BEGIN HIDDEN TESTS" not in shown
    leaked = [line for line in HIDDEN if line in shown]
    assert not leaked, f"hidden-test lines in the feedback: {leaked}"
    assert "x is not right yet (got 3)" in shown and HIDDEN_LINES_LEFT_OUT in shown
    assert 'assert x > 0, "x must be positive"' in shown   # the visible test stays


def test_tracebacks_of_cells_without_hidden_tests_are_left_alone():
    traceback = ["\x1b[32m---> 2\x1b[39m assert x > 0", "AssertionError: x must be positive"]
    cell = _graded("x = -1\nassert x > 0\n")
    cell.outputs = [nbformat.from_dict({"output_type": "error", "ename": "AssertionError",
                                        "evalue": "x must be positive", "traceback": list(traceback)})]
    nb, _ = ClearHiddenTestTracebacks().preprocess(new_notebook(cells=[cell]), {})
    assert nb.cells[0].outputs[0].traceback == traceback
    assert HIDDEN_LINES_LEFT_OUT not in "\n".join(nb.cells[0].outputs[0].traceback)
