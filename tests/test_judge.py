"""The shipped shapes judge: accurate on unseen shapes, and it rejects noise, blends and other impostors.

A classifier's confidence is not a validity measure (COURSE.md): these tests show that the
judge's "valid" rule accepts real images and rejects images that are not, on data it never saw
(it trains on make_shapes seeds >= 10_000; these use seeds 1 to 5).
"""

import math
import shutil

import pytest
import torch

import dlcourse.judge as judge_module
from dlcourse.files import sha256_file
from dlcourse.data import SHAPE_NAMES, make_shapes
from dlcourse.judge import Judge, JudgeNet, load_judge, make_impostors, train_judge
from dlcourse.metrics import (attribute_entropy, blend, class_accuracy, color_noise, frechet_distance,
                              matched_noise, off_palette_colors, overlay, palette, quality_report, recolor,
                              valid_fraction)

N = 500


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def judge():
    return load_judge()


@pytest.fixture(scope="module")
def real():
    return make_shapes(2 * N, size=16, seed=1)


def test_shipped_judge_is_small_and_its_digest_is_pinned():
    path = judge_module.ASSET_DIR / "judge_shapes16.pt"
    assert path.stat().st_size <= 1_000_000
    digest = sha256_file(path)
    assert digest == judge_module.SHIPPED_SHA256[16]
    assert (judge_module.ASSET_DIR / "judge_shapes16.pt.sha256").read_text().split()[0] == digest


def test_a_modified_judge_file_is_refused(tmp_path):
    copy = tmp_path / "judge.pt"
    shutil.copy(judge_module.ASSET_DIR / "judge_shapes16.pt", copy)
    shutil.copy(judge_module.ASSET_DIR / "judge_shapes16.pt.sha256", tmp_path / "judge.pt.sha256")
    assert isinstance(load_judge(path=copy).net, JudgeNet)              # the sidecar matches
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        load_judge(path=copy)
    with pytest.raises(FileNotFoundError, match="16 px judge"):
        load_judge(size=32)


def test_judge_is_accurate_on_unseen_shapes_at_16_and_32_px(judge, real):
    x = real.images[:N]
    out = judge.predict(x)
    assert set(out) >= {"shape_probs", "color_probs", "valid_prob", "valid"}
    assert out["shape_probs"].shape == (N, 4) and out["color_probs"].shape == (N, 6)
    assert float((out["shape_probs"].argmax(1) == real.labels[:N]).float().mean()) >= 0.95
    assert float((out["color_probs"].argmax(1) == real.colors[:N]).float().mean()) >= 0.95
    assert float(out["valid"].float().mean()) >= 0.95
    big = make_shapes(N, size=32, seed=2)                              # resized to 16 px by the judge
    out32 = judge.predict(big.images)
    assert float((out32["shape_probs"].argmax(1) == big.labels).float().mean()) >= 0.95
    assert float(out32["valid"].float().mean()) >= 0.9
    assert judge.features(x).shape == (N, 128)


def test_judge_rejects_noise_blends_and_other_impostors(judge, real):
    x, other = real.images[:N], real.images[N:]
    differ = real.positions[:N] != real.positions[N:]
    g = torch.Generator().manual_seed(3)
    impostors = {
        "matched noise": matched_noise(real.images, N, seed=g),
        "colour noise": color_noise(real.images, N, cell=1, seed=g),
        "blend of two shapes": blend(x, other, 0.5),
        "two shapes": overlay(x, other, real.masks[N:])[differ],
        "off-palette colour": recolor(x, real.masks[:N], off_palette_colors(palette(real), N, seed=g)),
        "noise std 0.5": x + 0.5 * torch.randn(x.shape, generator=g),
        "uniform noise (never trained on)": 2 * torch.rand(x.shape, generator=g) - 1,
    }
    fractions = {name: valid_fraction(judge, imp) for name, imp in impostors.items()}
    assert all(f <= 0.05 for f in fractions.values()), fractions
    # Mild noise, below what training calls an impostor, is still accepted.
    assert valid_fraction(judge, x + 0.03 * torch.randn(x.shape, generator=g)) >= 0.95


def test_frechet_floor_is_far_below_noise(judge, real):
    feats_a, feats_b = judge.features(real.images[:N]), judge.features(real.images[N:])
    noise = judge.features(matched_noise(real.images, N, seed=4))
    floor = frechet_distance(feats_a, feats_b)
    assert floor * 20 < frechet_distance(feats_a, noise)


def test_quality_report_puts_samples_between_floor_and_noise(judge):
    reference = make_shapes(2 * N, size=16, seed=5).images
    good = quality_report(judge, make_shapes(N, size=16, seed=6).images, reference)
    assert good.valid_fraction >= 0.95 and good.real_valid_fraction >= 0.95 and good.noise_valid_fraction <= 0.05
    assert good.fd < 2 * good.fd_floor + 1 and good.noise_fd > 20 * good.fd_floor
    assert good.entropy.shape_bits > good.entropy.shape_max_bits - 0.05
    assert "Frechet distance" in str(good)
    bad = quality_report(judge, blend(reference[:N], reference[N:], 0.5), reference)
    assert bad.valid_fraction <= 0.05 and bad.fd > 10 * bad.fd_floor
    with pytest.raises(ValueError, match="2 x"):
        quality_report(judge, reference, reference)


def test_class_accuracy_and_entropy_follow_the_labels(judge, real):
    x, labels = real.images[:N], real.labels[:N]
    assert class_accuracy(judge, x, labels) >= 0.95
    assert class_accuracy(judge, x, real.colors[:N], head="color") >= 0.95
    wrong = (labels + 1) % len(SHAPE_NAMES)
    assert class_accuracy(judge, x, wrong) <= 0.05
    assert math.isnan(class_accuracy(judge, matched_noise(x, 50, seed=0), labels[:50]))
    circles = x[labels == 0]
    e = attribute_entropy(judge, circles)
    assert e.shape_bits < 0.1 and e.color_bits > 2.4 and e.n >= 0.95 * len(circles)
    assert e.shape_max_bits == 2.0 and e.joint_max_bits == pytest.approx(math.log2(24))


def test_training_runs_and_makes_every_impostor_kind():
    data = make_shapes(300, size=16, seed=7)
    g = torch.Generator().manual_seed(0)
    for kind in judge_module.IMPOSTORS:
        assert make_impostors(data, kind, 4, g).shape == (4, 3, 16, 16)
    j = train_judge(16, steps=2, batch_size=36, n_train=300, width=8)
    assert isinstance(j, Judge) and j.info["steps"] == 2 and not j.net.training
    with pytest.raises(ValueError, match="square RGB"):
        j.predict(torch.zeros(2, 3, 16, 8))


def test_judge_answers_on_the_device_of_its_images():
    # images on "meta" (shapes, no data) stand for a GPU's: the network follows them there, so every
    # answer is where the images are (a fresh network: moving to meta drops its weights)
    judge = Judge(JudgeNet())
    out = judge.predict(torch.zeros(2, 3, 32, 32, device="meta"))
    assert {k: (v.device.type, tuple(v.shape)) for k, v in out.items()} == {
        "shape_probs": ("meta", (2, 4)), "color_probs": ("meta", (2, 6)), "scale_probs": ("meta", (2, 2)),
        "valid_prob": ("meta", (2,)), "valid": ("meta", (2,))}
    assert judge.features(torch.zeros(3, 3, 16, 16, device="meta")).shape == (3, 128)
