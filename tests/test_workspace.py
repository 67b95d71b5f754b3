"""The learner's workspace: copies new notebooks, never overwrites existing ones, and offers the
course's new version of a notebook the learner already has beside it."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from dlcourse.files import sha256_file
from dlcourse.workspace import RECORD, describe, prepare_workspace
from nbtools import ROOT


def test_copies_new_keeps_existing_and_offers_updates_beside(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "work"
    (src / "01_a").mkdir(parents=True)
    (src / "01_a" / "01_a.ipynb").write_text("release v1")
    (src / "02_b").mkdir()
    (src / "02_b" / "02_b.ipynb").write_text("release v1")
    copied, kept, offered, waiting = prepare_workspace(src, dest)
    assert len(copied) == 2 and kept == [] and offered == waiting == {}
    (dest / "01_a" / "01_a.ipynb").write_text("my answers")
    (src / "01_a" / "01_a.ipynb").write_text("release v2")
    (src / "03_c").mkdir()
    (src / "03_c" / "03_c.ipynb").write_text("new lesson")
    result = prepare_workspace(src, dest)
    assert (dest / "01_a" / "01_a.ipynb").read_text() == "my answers"
    assert (dest / "01_a" / "01_a.updated.ipynb").read_text() == "release v2"
    assert (dest / "03_c" / "03_c.ipynb").read_text() == "new lesson"
    assert [p.name for p in result.copied] == ["03_c.ipynb"]
    assert sorted(p.name for p in result.kept) == ["01_a.ipynb", "02_b.ipynb"]
    assert result.offered == {dest / "01_a" / "01_a.ipynb": dest / "01_a" / "01_a.updated.ipynb"}
    assert "new version of 01_a/01_a.ipynb" in describe(result, dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == [RECORD, "01_a/01_a.ipynb", "01_a/01_a.updated.ipynb", "02_b/02_b.ipynb", "03_c/03_c.ipynb"]  # no temporary file left
    again = prepare_workspace(src, dest)                          # offered once, not again
    assert again.copied == [] and again.offered == again.waiting == {}


def test_a_taken_name_is_never_overwritten_and_the_update_waits(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "work"
    src.mkdir()
    (src / "a.ipynb").write_text("v1")
    prepare_workspace(src, dest)
    (dest / "a.ipynb").write_text("mine")
    (dest / "a.updated.ipynb").write_text("also mine")
    (src / "a.ipynb").write_text("v2")
    result = prepare_workspace(src, dest)
    assert result.waiting == {dest / "a.ipynb": dest / "a.updated.ipynb"} and result.offered == {}
    assert (dest / "a.ipynb").read_text() == "mine" and (dest / "a.updated.ipynb").read_text() == "also mine"
    assert "rename or remove it" in describe(result, dest)
    (dest / "a.updated.ipynb").rename(dest / "a.kept.ipynb")      # the learner makes room: offered next time
    assert prepare_workspace(src, dest).offered == {dest / "a.ipynb": dest / "a.updated.ipynb"}
    assert (dest / "a.updated.ipynb").read_text() == "v2"


def test_a_workspace_without_a_record_starts_one_and_offers_later_changes(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "work"
    src.mkdir()
    dest.mkdir()
    (src / "a.ipynb").write_text("v1")
    (dest / "a.ipynb").write_text("mine, from before the record")
    assert prepare_workspace(src, dest).offered == {}                 # cannot tell your edits from a course change
    assert json.loads((dest / RECORD).read_text()) == {"a.ipynb": sha256_file(src / "a.ipynb")}
    (src / "a.ipynb").write_text("v2")
    assert prepare_workspace(src, dest).offered == {dest / "a.ipynb": dest / "a.updated.ipynb"}
    (dest / RECORD).write_text("not json")                            # a damaged record: starts again, touches nothing
    assert prepare_workspace(src, dest).offered == {} and (dest / "a.ipynb").read_text() == "mine, from before the record"


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="src: expected a folder of notebooks"):
        prepare_workspace(tmp_path / "nope", tmp_path / "work")


def _git(*args, cwd):
    env = dict(os.environ, GIT_AUTHOR_NAME="course", GIT_AUTHOR_EMAIL="course@example.org",
               GIT_COMMITTER_NAME="course", GIT_COMMITTER_EMAIL="course@example.org", GIT_CONFIG_GLOBAL=os.devnull)
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_pull_then_make_labs_copy_step_keeps_the_learners_work(tmp_path):
    # the course's repository, and a learner's clone of it
    origin = tmp_path / "origin"
    (origin / "notebooks" / "01_a").mkdir(parents=True)
    shutil.copy2(ROOT / ".gitignore", origin / ".gitignore")         # work/ is ignored, as in the course
    (origin / "notebooks" / "01_a" / "01_a.ipynb").write_text('{"version": 1}\n')
    _git("init", "-q", "-b", "main", cwd=origin)
    _git("add", ".", cwd=origin)
    _git("commit", "-q", "-m", "first release", cwd=origin)
    learner = tmp_path / "learner"
    _git("clone", "-q", str(origin), str(learner), cwd=tmp_path)

    def lab_copy_step():                  # what `make lab` runs before opening JupyterLab
        result = subprocess.run([sys.executable, "-m", "dlcourse.workspace", "notebooks", "work"], cwd=learner,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "1 notebook file(s) copied to work/" in lab_copy_step()
    mine = learner / "work" / "01_a" / "01_a.ipynb"
    mine.write_text('{"version": 1, "answers": "mine"}\n')
    # the course changes the notebook and adds one
    (origin / "notebooks" / "01_a" / "01_a.ipynb").write_text('{"version": 2}\n')
    (origin / "notebooks" / "02_b").mkdir()
    (origin / "notebooks" / "02_b" / "02_b.ipynb").write_text('{"new": true}\n')
    _git("add", ".", cwd=origin)
    _git("commit", "-q", "-m", "second release", cwd=origin)
    _git("pull", "-q", "--ff-only", cwd=learner)                     # work/ is not in git's way
    assert _git("status", "--porcelain", cwd=learner) == ""
    out = lab_copy_step()
    assert mine.read_text() == '{"version": 1, "answers": "mine"}\n'
    assert (learner / "work" / "01_a" / "01_a.updated.ipynb").read_text() == '{"version": 2}\n'
    assert (learner / "work" / "02_b" / "02_b.ipynb").read_text() == '{"new": true}\n'
    assert "1 notebook file(s) copied" in out and "new version of 01_a/01_a.ipynb" in out, out
    assert "new version" not in lab_copy_step()                       # said once
