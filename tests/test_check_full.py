"""scripts/check_full.py: claims read back, the Markdown table, and one tiny notebook run in full mode."""

import importlib.util
import json
import math
import sys

import nbformat
import pytest

from nbtools import ROOT

spec = importlib.util.spec_from_file_location("check_full", ROOT / "scripts" / "check_full.py")
check_full = importlib.util.module_from_spec(spec)
sys.modules["check_full"] = check_full                          # dataclasses look their module up there
spec.loader.exec_module(check_full)


def test_read_claims_recomputes_ok_and_fails_unreadable_lines(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([
        json.dumps({"name": "a", "value": 1.0, "low": 0, "high": 2, "ok": True}),
        json.dumps({"name": "b", "value": 3.0, "low": 0, "high": 2, "ok": True}),     # says ok, is not
        json.dumps({"name": "c", "value": "nan", "low": 0, "high": 2, "ok": False}),
        "not json",
        json.dumps({"name": "d"}),
    ]) + "\n")
    claims = check_full.read_claims(path)
    assert [c["name"] for c in claims] == ["a", "b", "c", "(unreadable line 4)", "(unreadable line 5)"]
    assert [c["ok"] for c in claims] == [True, False, False, False, False]
    assert math.isnan(claims[2]["value"])
    assert check_full.read_claims(tmp_path / "missing.jsonl") == []


def test_the_table_has_a_row_per_claim_and_marks_failures():
    results = [check_full.Result("01_x", 12.3, [{"name": "a", "value": 1.5, "low": 1, "high": 2, "ok": True},
                                                {"name": "b", "value": 7.0, "low": 1, "high": 2, "ok": False}]),
               check_full.Result("02_y", 4.0),
               check_full.Result("03_z", 9.0, [], "cell 3: ValueError: bad | input")]
    text = check_full.markdown_table(results, "2026-01-02 03:04 UTC", "test cpu, 2 cores")
    rows = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert rows[0] == "| 2026-01-02 | test cpu, 2 cores | 01_x | 12 | a | 1.5 | 1 to 2 | yes |"
    assert rows[1].endswith("| b | 7 | 1 to 2 | no |")
    assert rows[2].endswith("| 02_y | 4 | (no claims) |  |  | yes |")
    assert "(error) | cell 3: ValueError: bad / input" in rows[4] and rows[4].endswith("| no |")
    assert "FAILED" in text and "every notebook" in text
    assert "3 of the 5 notebooks" in check_full.markdown_table(results, "2026-01-02 03:04 UTC", "cpu", total=5)
    assert not results[0].ok and results[1].ok and not results[2].ok


def test_a_run_of_some_notebooks_keeps_the_last_rows_of_the_others():
    first = check_full.markdown_table([check_full.Result("01_x", 5.0, [{"name": "a", "value": 1.5, "low": 1, "high": 2,
                                                                         "ok": True}]),
                                       check_full.Result("02_y", 4.0)], "2026-01-01 00:00 UTC", "cpu A")
    again = check_full.Result("02_y", 6.0, [{"name": "c", "value": 3.0, "low": 1, "high": 2, "ok": False}])
    earlier = check_full.earlier_rows(first, {"02_y"})
    assert earlier == ["| 2026-01-01 | cpu A | 01_x | 5 | a | 1.5 | 1 to 2 | yes |"]
    text = check_full.markdown_table([again], "2026-02-03 00:00 UTC", "cpu B", total=2, earlier=earlier)
    rows = [line for line in text.splitlines() if line.startswith("| 2026")]
    assert rows == ["| 2026-01-01 | cpu A | 01_x | 5 | a | 1.5 | 1 to 2 | yes |",
                    "| 2026-02-03 | cpu B | 02_y | 6 | c | 3 | 1 to 2 | no |"]
    assert "FAILED" in text and "their own last run" in text
    passed = check_full.markdown_table([check_full.Result("02_y", 6.0)], "2026-02-03 00:00 UTC", "cpu B", total=2,
                                       earlier=earlier)
    assert "all passed" in passed
    stale = earlier + ["| 2026-01-01 | cpu A | 03_z | 5 | b | 9 | 1 to 2 | no |"]
    assert "FAILED" in check_full.markdown_table([check_full.Result("02_y", 6.0)], "2026-02-03 00:00 UTC", "cpu B",
                                                 total=3, earlier=stale)


def _notebook(folder, name, cells):
    folder.mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.notebooks
def test_a_notebook_runs_in_full_mode_in_a_copy_and_its_claims_are_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_FAST", "1")                     # as under the test suite: the check removes it
    solutions = tmp_path / "solutions"
    good = _notebook(solutions / "01_good", "01_good", [
        "from dlcourse.claims import claim\nfrom dlcourse.fast import fast_mode",
        "open('written_here.txt', 'w').write('x')",
        "claim('full', 0.0 if fast_mode() else 1.0, 0.5, 1.5)",
        "claim('off', 3.0, 0, 1)"])
    _notebook(solutions / "02_bad", "02_bad", ["raise ValueError('broken')"])
    before = good.read_text()
    out = tmp_path / "full_mode.md"
    assert check_full.main(["--solutions", str(solutions), "--output", str(out)]) == 1
    table = out.read_text()
    assert "| 01_good |" in table and "| full | 1 | 0.5 to 1.5 | yes |" in table
    assert "| off | 3 | 0 to 1 | no |" in table
    assert "(error) | cell 0: ValueError: broken" in table
    assert good.read_text() == before and not (good.parent / "written_here.txt").exists()   # sources untouched
    assert check_full.main(["--solutions", str(solutions), "--output", str(out), "02_bad"]) == 1
    with pytest.raises(SystemExit, match="no notebook named"):
        check_full.main(["--solutions", str(solutions), "--output", str(out), "99_missing"])
