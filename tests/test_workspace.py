"""The learner's workspace: copies new notebooks, never overwrites existing ones."""

import pytest

from dlcourse.workspace import prepare_workspace


def test_copies_new_and_keeps_existing(tmp_path):
    src, dest = tmp_path / "notebooks", tmp_path / "work"
    (src / "01_a").mkdir(parents=True)
    (src / "01_a" / "01_a.ipynb").write_text("release v1")
    (src / "02_b").mkdir()
    (src / "02_b" / "02_b.ipynb").write_text("release v1")
    copied, kept = prepare_workspace(src, dest)
    assert len(copied) == 2 and kept == []
    (dest / "01_a" / "01_a.ipynb").write_text("my answers")
    (src / "01_a" / "01_a.ipynb").write_text("release v2")
    (src / "03_c").mkdir()
    (src / "03_c" / "03_c.ipynb").write_text("new lesson")
    copied, kept = prepare_workspace(src, dest)
    assert (dest / "01_a" / "01_a.ipynb").read_text() == "my answers"
    assert (dest / "03_c" / "03_c.ipynb").read_text() == "new lesson"
    assert [p.name for p in copied] == ["03_c.ipynb"]
    assert sorted(p.name for p in kept) == ["01_a.ipynb", "02_b.ipynb"]
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["01_a/01_a.ipynb", "02_b/02_b.ipynb", "03_c/03_c.ipynb"]    # no temporary file left


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="src: expected a folder of notebooks"):
        prepare_workspace(tmp_path / "nope", tmp_path / "work")
