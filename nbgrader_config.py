"""nbgrader configuration for the course (the repository is the course directory).

- ``solutions/NN_topic/NN_topic.ipynb``: source notebooks (solutions and hidden tests)
- ``notebooks/NN_topic/NN_topic.ipynb``: student versions, made by ``make notebooks``
- ``submitted/``, ``autograded/``, ``feedback/``, ``gradebook.db``: created while grading
"""

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "dlcourse"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Grading must finish whatever the submission does. nbgrader runs notebooks in
# fast mode (it sets NBGRADER_EXECUTION, which dlcourse reads), so a cell that
# takes longer than this is stuck: it is interrupted and grading goes on.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
# A test cell the student deleted scores zero and is flagged for manual grading.
# (nbgrader can put deleted test cells back, OverwriteCells.add_missing_cells, but
# in 0.9 that crashes the submission's grading when the solution cell before the
# test was deleted too, so it stays off.)

# A cell that ends the kernel's process (os._exit, a crash, too much memory) would stop nbgrader grading the whole
# submission: RecoveringExecute counts that cell as failed, starts a new kernel, runs the cells before it again
# and goes on (dlcourse/grading.py).
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, IgnorePattern,  # noqa: E402
                                    LimitOutput, SaveAutoGrades)

from dlcourse.grading import RecoveringExecute  # noqa: E402

c.Autograde.autograde_preprocessors = [RecoveringExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]

# before nbgrader's checks: cells that lost their nbgrader metadata (another editor) or had it edited get it back
from nbgrader.preprocessors import ClearOutput, DeduplicateIds, OverwriteCells, OverwriteKernelspec  # noqa: E402
from dlcourse.grading import RestoreCellMetadata  # noqa: E402
c.Autograde.sanitize_preprocessors = [ClearOutput, RestoreCellMetadata, DeduplicateIds, OverwriteKernelspec,
                                      OverwriteCells, CheckCellMetadata]

# Feedback pages leave the hidden tests out, so that they can grade the next term too: the student sees the
# visible tests, the scores and what each test cell printed (a failed check's message), not the hidden code.
# nbgrader's generate_feedback keeps them by default (its preprocessors are GetGrades and
# CSSHTMLHeaderPreprocessor): ClearHiddenTests removes them from the cells, as generate_assignment does, and
# ClearHiddenTestTracebacks, before it, removes the hidden lines that a failed test's traceback quotes.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402
from dlcourse.grading import ClearHiddenTestTracebacks  # noqa: E402
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTestTracebacks, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
