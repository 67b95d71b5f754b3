"""Tests for dlcourse.data: the 2-D toys, the shapes image set and the sample photo."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlcourse.data import (COLOR_NAMES, POSITION_NAMES, SCALE_NAMES, SHAPE_NAMES, TOY_NAMES,
                           ShapesData, ShapesDataset, load_photo, make_shapes, make_toy)
from dlcourse.data import photo as photo_module

# ---------------------------------------------------------------- 2-D toys


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_shape_determinism_and_scale(name):
    x = make_toy(name, 20000, seed=1)
    assert x.shape == (20000, 2) and x.dtype == torch.float32
    assert torch.equal(x, make_toy(name, 20000, seed=1))
    assert not torch.allclose(x[:100], make_toy(name, 20000, seed=2)[:100])
    # Roughly zero mean and unit standard deviation per axis.
    assert x.mean(0).abs().max() < 0.05
    assert ((x.std(0) - 1).abs() < 0.1).all(), x.std(0)


def test_toy_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_toy("two_moons", 100, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_eight_gaussians_has_eight_tight_clusters():
    x = make_toy("eight_gaussians", 8000, seed=0)
    radius = x.norm(dim=1).median()
    angles = torch.arange(8) * (math.pi / 4)
    centres = radius * torch.stack([angles.cos(), angles.sin()], dim=1)   # (8, 2)
    dist = torch.cdist(x, centres)                                         # (N, 8)
    nearest = dist.argmin(1)
    counts = torch.bincount(nearest, minlength=8)
    assert (counts > 0.8 * 1000).all() and (counts < 1.2 * 1000).all(), counts
    # Each point lies close to its centre, far closer than the gap between centres.
    gap = (centres[0] - centres[1]).norm()
    assert dist.min(1).values.quantile(0.999) < gap / 2


def test_checkerboard_points_fall_only_on_black_squares():
    x = make_toy("checkerboard", 5000, seed=0)
    side = math.sqrt(3) / 2                              # a 4 x 4 board on [-sqrt 3, sqrt 3]^2
    ij = torch.floor((x + math.sqrt(3)) / side).long()
    assert ij.min() >= 0 and ij.max() <= 3
    assert ((ij[:, 0] + ij[:, 1]) % 2 == 0).all()
    assert len({tuple(p) for p in ij.tolist()}) == 8      # all eight black squares used


def test_toy_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"^name: .*'two_moons'.*got 'spiral'"):
        make_toy("spiral", 10)
    with pytest.raises(ValueError, match=r"^n: "):
        make_toy("two_moons", -3)
    with pytest.raises(TypeError, match=r"^n: "):
        make_toy("two_moons", 2.5)
    with pytest.raises(TypeError, match=r"^seed: "):
        make_toy("two_moons", 10, seed="0")


# ---------------------------------------------------------------- shapes


@pytest.fixture(scope="module")
def shapes32():
    return make_shapes(600, size=32, seed=0)


def test_shapes_types_and_range(shapes32):
    d = shapes32
    n, s = 600, 32
    assert isinstance(d, ShapesData) and len(d) == n and d.size == s
    assert d.images.shape == (n, 3, s, s) and d.images.dtype == torch.float32
    assert d.edges.shape == (n, 1, s, s) and d.edges.dtype == torch.float32
    assert d.masks.shape == (n, 1, s, s)
    for t in (d.labels, d.colors, d.scales, d.positions):
        assert t.shape == (n,) and t.dtype == torch.int64
    assert len(d.captions) == n and all(isinstance(c, str) for c in d.captions)
    for t in (d.images, d.edges):
        assert t.min() >= -1 and t.max() <= 1
    assert d.masks.min() >= 0 and d.masks.max() <= 1


def test_shapes_deterministic_bitwise_and_seed_dependent():
    a, b = make_shapes(50, size=16, seed=3), make_shapes(50, size=16, seed=3)
    for field in ("images", "edges", "labels", "colors", "centers"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert a.captions == b.captions
    c = make_shapes(50, size=16, seed=4)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.labels, c.labels)
    # The same seed draws the same shapes at every size.
    assert torch.equal(a.labels, make_shapes(50, size=32, seed=3).labels)


def test_shapes_caption_matches_attributes(shapes32):
    d = shapes32
    for i, caption in enumerate(d.captions):
        shape, color = SHAPE_NAMES[d.labels[i]], COLOR_NAMES[d.colors[i]]
        scale, place = SCALE_NAMES[d.scales[i]], POSITION_NAMES[d.positions[i]]
        assert caption == f"a {scale} {color} {shape} {place}"
        assert color in caption and shape in caption


def test_shapes_colour_and_background_follow_the_labels(shapes32):
    d = shapes32
    rgb = d.images.permute(0, 2, 3, 1)                          # (n, H, W, 3)
    full = d.masks[:, 0] == 1                                   # pixels fully inside the shape
    empty = d.masks[:, 0] == 0
    background = rgb[empty]
    assert (background - background[0]).abs().max() < 1e-6      # one plain background colour
    assert background[0].max() < -0.6                           # and a dark one
    interior = torch.stack([rgb[i][full[i]].mean(0) for i in range(len(d))])  # (n, 3)
    for c in range(len(COLOR_NAMES)):
        same = interior[d.colors == c]
        assert (same - same[0]).abs().max() < 1e-5              # a colour label is one colour
    means = torch.stack([interior[d.colors == c][0] for c in range(len(COLOR_NAMES))])
    gaps = torch.cdist(means, means) + 10 * torch.eye(len(COLOR_NAMES))
    assert gaps.min() > 0.5                                     # colours are distinct
    assert (means - background[0]).norm(dim=1).min() > 1.0      # and stand out


# Area of each shape relative to r^2 (r = half-width), from its geometry.
AREA = {"circle": math.pi, "square": 1.8**2, "triangle": 1.85,
        "cross": 2 * (2 * 0.72) - 0.72**2}


def test_shapes_have_the_right_area_and_lie_inside_the_frame(shapes32):
    d = shapes32
    area = d.masks.sum(dim=(1, 2, 3))                           # in pixels
    expected = torch.tensor([AREA[SHAPE_NAMES[k]] for k in d.labels]) * d.radii**2
    assert ((area / expected - 1).abs() < 0.05).all()           # 4 x 4 sub-pixel sampling
    assert (d.centers - d.radii[:, None] >= 0).all()
    assert (d.centers + d.radii[:, None] <= d.size).all()
    # Symmetric shapes are centred on their centre.
    sym = d.labels != SHAPE_NAMES.index("triangle")
    grid = torch.arange(d.size) + 0.5
    cx = (d.masks[:, 0] * grid).sum(dim=(1, 2)) / area
    cy = (d.masks[:, 0] * grid[:, None]).sum(dim=(1, 2)) / area
    assert torch.allclose(torch.stack([cx, cy], 1)[sym], d.centers[sym], atol=0.15)  # 1/4 px grid


def test_shapes_positions_match_their_place_names(shapes32):
    d = shapes32
    row, col = d.positions // 3, d.positions % 3
    x, y = d.centers[:, 0] / d.size, d.centers[:, 1] / d.size
    assert x[col == 0].max() < x[col == 1].min() < x[col == 1].max() < x[col == 2].min()
    assert y[row == 0].max() < y[row == 1].min() < y[row == 1].max() < y[row == 2].min()


def test_shape_edges_lie_on_the_outline(shapes32):
    d = shapes32
    edge = (d.edges + 1) / 2                                    # in [0, 1]
    assert (edge.amax(dim=(1, 2, 3)) > 0.5).all()               # every image has an outline
    mask = d.masks
    lo = -F.max_pool2d(-mask, 5, stride=1, padding=2)           # min over the 5 x 5 neighbours
    hi = F.max_pool2d(mask, 5, stride=1, padding=2)
    assert (edge[lo == 1] == 0).all()                           # nothing deep inside
    assert (edge[hi == 0] == 0).all()                           # nothing far outside
    lo3 = -F.max_pool2d(-mask, 3, stride=1, padding=1)
    hi3 = F.max_pool2d(mask, 3, stride=1, padding=1)
    straddle = (lo3 < 0.5) & (hi3 > 0.5)                        # shape and background adjacent
    assert straddle[edge > 0.5].float().mean() > 0.95           # strong edges are on the boundary
    # And the outline is as long as the boundary: its area is about the perimeter (1 px wide).
    circles = d.labels == SHAPE_NAMES.index("circle")
    length = edge[circles].sum(dim=(1, 2, 3))
    assert torch.allclose(length, 2 * math.pi * d.radii[circles], rtol=0.1)


def test_shapes_all_classes_present_in_a_big_batch():
    d = make_shapes(2000, size=16, seed=7)
    for values, k in ((d.labels, SHAPE_NAMES), (d.colors, COLOR_NAMES),
                      (d.scales, SCALE_NAMES), (d.positions, POSITION_NAMES)):
        counts = torch.bincount(values, minlength=len(k))
        assert len(counts) == len(k) and (counts > 0.5 * 2000 / len(k)).all()


def _centred(masks, centers, size):
    """Shift every mask so its shape's centre sits at the middle of the frame."""
    shift = (size / 2 - centers).round().long()
    return torch.stack([m.roll((int(dy), int(dx)), dims=(1, 2))
                        for m, (dx, dy) in zip(masks, shift)]).flatten(1)


@pytest.mark.parametrize("size", [16, 32])
def test_shapes_are_recognisable(size):
    """The nearest neighbour of a centred mask (among masks from another seed) is
    almost always the same shape: the classes stay distinct at this resolution."""
    train, test = make_shapes(800, size=size, seed=0), make_shapes(400, size=size, seed=1)
    x_train = _centred(train.masks, train.centers, size)      # (800, size * size)
    x_test = _centred(test.masks, test.centers, size)
    predicted = train.labels[torch.cdist(x_test, x_train).argmin(1)]
    assert (predicted == test.labels).float().mean() > 0.98


def test_shapes_dataset():
    data = make_shapes(10, size=16)
    dataset = ShapesDataset(data)
    assert len(dataset) == 10
    image, label = dataset[3]
    assert image.shape == (3, 16, 16) and torch.equal(image, data.images[3])
    assert label.dtype == torch.int64 and label == data.labels[3]
    images, labels = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 16, 16) and labels.shape == (4,)
    with pytest.raises(TypeError, match=r"^data: "):
        ShapesDataset(data.images)


@pytest.mark.parametrize("kwargs, error, start", [
    (dict(n=0), ValueError, "n: "),
    (dict(n=3.0), TypeError, "n: "),
    (dict(n=4, size=7), ValueError, "size: expected an int >= 8 and <= 128, got 7"),
    (dict(n=4, size=129), ValueError, "size: expected an int >= 8 and <= 128, got 129"),
    (dict(n=4, size=16.0), TypeError, "size: expected an int, got 16.0"),
    (dict(n=4, seed=None), TypeError, "seed: "),
])
def test_make_shapes_bad_arguments(kwargs, error, start):
    with pytest.raises(error, match="^" + start):
        make_shapes(**kwargs)


# ---------------------------------------------------------------- photo


def test_photo_shape_range_and_gray():
    x = load_photo(64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.2     # a real picture, not flat
    g = load_photo(32, gray=True)
    assert g.shape == (1, 32, 32)
    # The gray version is the luminance of the colour one.
    luma = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * load_photo(32)).sum(0)
    assert torch.corrcoef(torch.stack([luma.flatten(), g.flatten()]))[0, 1] > 0.99


def test_photo_missing_file_names_path_and_alternative(monkeypatch, tmp_path):
    missing = tmp_path / "grace_hopper.jpg"
    monkeypatch.setattr(photo_module, "_sample_path", lambda: str(missing))
    with pytest.raises(FileNotFoundError) as info:
        load_photo()
    assert str(missing) in str(info.value) and "make_shapes" in str(info.value)


def test_photo_bad_arguments():
    with pytest.raises(ValueError, match=r"^size: "):
        load_photo(0)
    with pytest.raises(TypeError, match=r"^gray: "):
        load_photo(16, gray="yes")
