"""Tests of dlcourse.systems.side_by_side (notebook 10's prompt box): run_systems times and judges what each system
draws, refuses bad prompts and bad systems; load_systems builds the shipped miniatures; the widget's wiring."""

import pytest
import torch

from dlcourse.conditioning import Tokenizer
from dlcourse.data import make_shapes
from dlcourse.judge import load_judge
from dlcourse.plotting import image_grid
from dlcourse.systems.side_by_side import SYSTEM_NAMES, System, load_systems, run_systems
from dlcourse.widgets import SKIPPED, png_bytes, systems_prompt_box, systems_rows

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a large red circle at the top left"


@pytest.fixture(scope="module")
def judge():
    return load_judge(16)


@pytest.fixture(scope="module")
def pool():
    return make_shapes(3000, size=16, seed=3)


def _replay(pool, caption, size=16):
    """A system that draws real images of one caption (whatever it is asked), and records its noise."""
    images = pool.images[[i for i, c in enumerate(pool.captions) if c == caption]]
    seen = []

    def generate(prompts, generator):
        seen.append(torch.randn(1, generator=generator))
        x = images[torch.arange(len(prompts)) % len(images)]
        return torch.nn.functional.interpolate(x, size=size, mode="nearest") if size != 16 else x

    return generate, seen


def test_run_systems_reads_each_system_with_the_judge(judge, pool):
    right, seen_right = _replay(pool, PROMPT, size=32)
    wrong_colour, seen_wrong = _replay(pool, "a large blue circle at the top left")
    wrong_place, _ = _replay(pool, "a large red circle at the bottom right")
    systems = [System("right", "draws the prompt", right, 20, Tokenizer.default()),
               System("blue", "the wrong colour", wrong_colour, 10),
               System("moved", "the wrong place", wrong_place, 10)]
    runs = run_systems(systems, PROMPT, judge, n=4, seed=5)
    assert [r.name for r in runs] == ["right", "blue", "moved"]
    assert runs[0].images.shape == (4, 3, 32, 32) and runs[1].images.shape == (4, 3, 16, 16)
    assert runs[0].followed == 1.0 and runs[0].valid == 1.0
    assert runs[1].followed == 0.0 and runs[1].valid == 1.0, "a clean shape of the wrong colour is not followed"
    assert runs[2].followed == 0.0, "the prompt names a place: a shape elsewhere does not follow it"
    assert all(r.seconds_per_image > 0 for r in runs) and runs[0].calls_per_image == 20
    assert torch.equal(seen_right[0], seen_wrong[0]), "every system gets a generator seeded alike"
    # without a place in the prompt, any place counts
    runs = run_systems(systems, "a large red circle", judge, n=4)
    assert [r.followed for r in runs] == [1.0, 0.0, 1.0]


def test_run_systems_refuses_bad_prompts_and_systems(judge, pool):
    ok, _ = _replay(pool, PROMPT)
    system = System("ok", "", ok, 1, Tokenizer.default())
    with pytest.raises(ValueError, match="prompt: ok cannot read it.*unknown word 'purple'"):
        run_systems([system], "a large purple circle", judge)
    with pytest.raises(ValueError, match="names no shape"):
        run_systems([system], "a large red", judge)
    with pytest.raises(TypeError, match="prompt: expected a string"):
        run_systems([system], ["a circle"], judge)
    with pytest.raises(TypeError, match="systems: expected a non-empty list of System"):
        run_systems([], PROMPT, judge)
    with pytest.raises(TypeError, match="systems"):
        run_systems([ok], PROMPT, judge)
    bad = System("bad", "", lambda prompts, g: torch.zeros(len(prompts), 16, 16), 1)
    with pytest.raises(ValueError, match=r"bad's generate returned \(2, 16, 16\), expected \(2, 3, H, W\)"):
        run_systems([bad], PROMPT, judge, n=2)


def test_load_systems_builds_the_shipped_miniatures(judge):
    systems = load_systems(steps=2)
    assert [s.name for s in systems] == ["Stable Diffusion 1.x", "Imagen", "SDXL", "DALL-E 3", "Flux"]
    assert len(SYSTEM_NAMES) == 5
    assert [s.calls_per_image for s in systems] == [4, 4, 4, 4, 2], "guided steps cost two calls, distilled one"
    runs = run_systems(systems, PROMPT, judge, n=2, seed=1)
    assert [tuple(r.images.shape) for r in runs] == [(2, 3, 32, 32)] + [(2, 3, 16, 16)] * 4
    again = run_systems(systems, PROMPT, judge, n=2, seed=1)
    assert all(torch.equal(a.images, b.images) for a, b in zip(runs, again)), "a seed gives the same pictures"
    with pytest.raises(ValueError, match=r"names: expected some of \['sd1', 'imagen', 'sdxl', 'dalle3', 'flux'\], got \['dalle'\]"):
        load_systems(["dalle"])


@pytest.fixture
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


def test_systems_prompt_box_shows_one_row_per_system(judge, pool, _quiet_env, monkeypatch, capsys):
    right, _ = _replay(pool, PROMPT, size=32)
    wrong, _ = _replay(pool, "a large blue circle at the top left")
    systems = [System("right", "draws it", right, 20, Tokenizer.default()), System("blue", "does not", wrong, 10)]
    box = systems_prompt_box(systems, judge, n=3)
    runs = run_systems(systems, PROMPT, judge, n=3)
    rows = systems_rows(runs)
    assert rows[0].shape == rows[1].shape, "16 px systems are enlarged to the 32 px one's size"
    assert rows[0].shape == image_grid(runs[0].images, nrow=3).shape
    assert [label.value.split(":")[0] for label, _ in box.rows] == ["right (draws it)", "blue (does not)"]
    assert "the judge reads 3 of 3 as the prompt" in box.rows[0][0].value
    assert "the judge reads 0 of 3 as the prompt (3 clean shapes)" in box.rows[1][0].value
    assert box.rows[1][1].value == png_bytes(rows[1], 300)
    first = box.rows[0][1].value
    box.text.value = "a large purple circle"
    box.button.click()
    assert "unknown word 'purple'" in box.label.value and box.rows[0][1].value == first
    with pytest.raises(ValueError, match="unknown word"):
        systems_prompt_box(systems, judge, prompt="a purple circle")
    with pytest.raises(ValueError, match="runs: expected at least one"):
        systems_rows([])
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert systems_prompt_box(systems, judge) is None and SKIPPED in capsys.readouterr().out
