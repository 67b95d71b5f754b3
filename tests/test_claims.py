"""claim(): prints the figure with its range, records it in full mode when asked, never raises."""

import json
import math

import pytest
import torch

from dlcourse.claims import claim, within


@pytest.fixture
def full_mode(monkeypatch, tmp_path):
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    path = tmp_path / "claims.jsonl"
    monkeypatch.setenv("DLCOURSE_CLAIMS", str(path))
    return path


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_claim_prints_the_figure_and_its_range_and_returns_the_value(capsys, monkeypatch):
    monkeypatch.delenv("DLCOURSE_CLAIMS", raising=False)
    assert claim("ratio", 1.2345, 0.5, 2) == 1.2345
    assert capsys.readouterr().out == "ratio: 1.23 (expected 0.5-2 in full mode)\n"
    t = torch.tensor(3.0)
    assert claim("t", t, 0, 1) is t                      # returned unchanged, even when out of range


def test_full_mode_appends_one_json_line_per_claim(full_mode):
    claim("inside", 1.0, 0.0, 2.0)
    claim("outside", torch.tensor(5.0), 0.0, 2.0)
    claim("edge", 2.0, 0.0, 2.0)
    assert lines(full_mode) == [
        {"name": "inside", "value": 1.0, "low": 0.0, "high": 2.0, "ok": True},
        {"name": "outside", "value": 5.0, "low": 0.0, "high": 2.0, "ok": False},
        {"name": "edge", "value": 2.0, "low": 0.0, "high": 2.0, "ok": True},
    ]


@pytest.mark.parametrize("variable", ["DLCOURSE_FAST", "NBGRADER_EXECUTION"])
def test_fast_mode_records_nothing(full_mode, monkeypatch, capsys, variable):
    monkeypatch.setenv(variable, "1")
    claim("x", 1.0, 0, 2)
    assert not full_mode.exists()
    assert "x: 1 (expected 0-2 in full mode)" in capsys.readouterr().out


def test_no_file_named_records_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_CLAIMS", raising=False)
    monkeypatch.chdir(tmp_path)
    claim("x", 1.0, 0, 2)
    assert list(tmp_path.iterdir()) == []


def test_what_is_not_a_finite_number_fails_and_never_raises(full_mode, capsys):
    assert math.isnan(claim("nan", math.nan, 0, 1))
    assert claim("word", "many", 0, 1) == "many"
    assert claim("vector", torch.ones(3), 0, 2).shape == (3,)
    recorded = lines(full_mode)
    assert [r["ok"] for r in recorded] == [False, False, False]
    assert recorded[0]["value"] == "nan"                  # JSON has no NaN: written as a string
    assert "word: nan (expected 0-1 in full mode)" in capsys.readouterr().out


def test_an_unwritable_file_is_reported_not_raised(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("DLCOURSE_CLAIMS", str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert claim("x", 1.0, 0, 2) == 1.0
    assert "not recorded" in capsys.readouterr().out


def test_within():
    assert within(1.0, 1.0, 1.0) and within(0.5, 0, 1)
    assert not within(1.5, 0, 1) and not within(math.nan, 0, 1) and not within(math.inf, 0, math.inf)
