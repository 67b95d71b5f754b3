"""Autograding that survives a submission which kills its own kernel.

nbgrader runs each submission in a Jupyter kernel. A cell that raises, or runs too long, fails on its own and
grading goes on; but a cell that ends the kernel's process (``os._exit(0)``, a crash in native code, the
operating system stopping a process that asked for too much memory) makes nbgrader give up on the whole
submission. :class:`RecoveringExecute`, nbgrader's ``Execute`` step with one addition, treats such a cell
like one that raised: it records the error in that cell, starts a new kernel, runs the cells before it
again (their outputs are kept as they were) and goes on. The submission then loses the points that this
cell's failure costs, as it would for an exception, and grading finishes. ``nbgrader_config.py`` puts it in
place of ``Execute``. :class:`RestoreCellMetadata` puts back the nbgrader metadata of cells whose metadata a
submission lost or edited, before nbgrader checks the cells. :class:`ClearHiddenTestTracebacks` takes the lines
of the hidden tests out of the tracebacks that the feedback pages show.
"""

from __future__ import annotations

import copy
import os
import re

import nbformat
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor

KERNEL_DIED = ("The kernel stopped while running this cell (os._exit, a crash, or too much memory). The cell "
               "counts as failed; the notebook went on in a new kernel, with the cells before this one run again.")


class RecoveringExecute(Execute):
    """nbgrader's ``Execute``, going on in a new kernel when a cell ends the kernel's process."""

    def preprocess(self, nb, resources=None, km=None):
        self._fatal = set()                      # cells that ended a kernel: never run again
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.log.warning("The kernel died in cell %d; going on in a new kernel", index)
            self._fail(cell)
            self._fatal.add(index)
            self._restart(index)
            return cell, self.resources

    @staticmethod
    def _fail(cell) -> None:
        cell.setdefault("outputs", []).append(NotebookNode(
            output_type="error", ename="DeadKernelError", evalue=KERNEL_DIED, traceback=[KERNEL_DIED]))

    def _restart(self, index: int) -> None:
        """A new kernel with the state the cells before ``index`` leave (a cell that kills it again is skipped)."""
        while True:
            self._cleanup_kernel()
            self.km = self.create_kernel_manager()
            self.start_new_kernel()
            self.start_new_kernel_client()
            try:
                for i, cell in enumerate(self.nb.cells[:index]):
                    if cell.cell_type == "code" and i not in self._fatal:
                        died_in = i
                        self.execute_cell(copy.deepcopy(cell), i, store_history=False)
                return
            except DeadKernelError:
                self.log.warning("The kernel died again, in cell %d; skipping that cell too", died_in)
                self._fail(self.nb.cells[died_in])
                self._fatal.add(died_in)


class RestoreCellMetadata(NbGraderPreprocessor):
    """Puts back the nbgrader metadata of a submission's cells that lost it or had it edited.

    nbgrader finds a submission's exercises and tests by the ``nbgrader`` metadata of its cells. Editors other
    than Jupyter can drop that metadata, and a student can edit it (unlock a test, set its ``grade`` flag off,
    raise its points). Without it nbgrader scores every test zero and asks for manual grading; with edited flags
    it can stop on the whole submission ("Inconsistent checksums"). This step runs before nbgrader's own
    checks: every submitted cell whose cell id, or else whose ``grade_id``, is one of the source notebook's
    (``solutions/NAME/NAME.ipynb``; the student's copy keeps the cell ids of the release) gets that cell's
    metadata back. nbgrader's ``OverwriteCells`` then restores the locked cells' text and the points from the
    gradebook as usual, so the submission is graded on its answers. Cells the student added are left alone.
    """

    def preprocess(self, nb, resources):
        from nbgrader.coursedir import CourseDirectory

        info = resources.get("nbgrader", {})
        coursedir = CourseDirectory(config=self.config)
        path = os.path.join(coursedir.format_path(coursedir.source_directory, ".", info.get("assignment", "")),
                            f"{info.get('notebook', '')}.ipynb")
        if not os.path.exists(path):
            self.log.warning("no source notebook at %s: cell metadata left as submitted", path)
            return nb, resources
        source = nbformat.read(path, as_version=4)
        by_id = {c.get("id"): c for c in source.cells if "nbgrader" in c.get("metadata", {}) and c.get("id")}
        by_grade_id = {c.metadata.nbgrader.get("grade_id"): c for c in source.cells if "nbgrader" in c.metadata}
        for cell in nb.cells:
            own = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            original = by_id.get(cell.get("id")) or by_grade_id.get(own)
            if original is None:
                continue
            submitted = dict(cell.metadata.get("nbgrader", {}))
            restored = dict(submitted, **copy.deepcopy(dict(original.metadata.nbgrader)))
            if submitted != restored:
                self.log.warning("cell %s: nbgrader metadata restored from the source notebook",
                                 restored.get("grade_id"))
                cell.metadata["nbgrader"] = NotebookNode(restored)
        return nb, resources


HIDDEN_LINES_LEFT_OUT = "      (lines of the hidden tests left out)"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NUMBERED = re.compile(r"^\s*(?:-*>\s*)?\d+(?: (.*))?$")   # "     26 code" or "---> 30 code" in a traceback


def hidden_test_lines(source: str, begin: str = "BEGIN HIDDEN TESTS", end: str = "END HIDDEN TESTS") -> set[str]:
    """The lines (stripped) that a test cell's source holds only between its hidden-test delimiters, and the
    delimiter lines themselves."""
    hidden, visible, inside = set(), set(), False
    for line in source.splitlines():
        if begin in line or end in line:
            inside = begin in line
            hidden.add(line.strip())
        elif line.strip():
            (hidden if inside else visible).add(line.strip())
    return hidden - visible


class ClearHiddenTestTracebacks(NbGraderPreprocessor):
    """Takes the hidden tests' lines out of the tracebacks a grade cell printed, for the feedback pages.

    nbgrader's ``ClearHiddenTests`` removes the hidden tests from a cell's code, but a test that failed printed
    a traceback, and IPython's traceback quotes the failing line with a few lines around it: when a hidden
    test fails, those are lines of the hidden tests. This step, which must run before ``ClearHiddenTests`` (it
    reads the hidden lines from the cell), drops every quoted line that is one of the cell's hidden-test lines
    and puts one line saying so in the place of each run of them. The failure's message (the exception's
    text, which ``dlcourse.checks`` writes for the learner) and everything else the cell printed stay.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            return cell, resources
        hidden = hidden_test_lines(cell.source)
        if not hidden:
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [self._scrub(entry, hidden) for entry in output.get("traceback", [])]
        return cell, resources

    @staticmethod
    def _scrub(entry: str, hidden: set[str]) -> str:
        kept, dropped = [], False
        for line in entry.split("\n"):
            numbered = _NUMBERED.match(_ANSI.sub("", line))
            if numbered and (numbered.group(1) or "").strip() in hidden:
                if not dropped:
                    kept.append(HIDDEN_LINES_LEFT_OUT)
                dropped = True
                continue
            kept.append(line)
            dropped = False
        return "\n".join(kept)
