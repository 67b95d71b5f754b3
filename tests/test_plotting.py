"""Tests of dlcourse.plotting: pixel values, grid placement, figures' contents."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dlcourse.plotting import image_grid, plot_2d, show_images, to_uint8  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_to_uint8_maps_range_and_clamps():
    values = torch.tensor([-1.0, 1.0, 0.0, -5.0, 5.0, 0.5])
    x = values.reshape(1, 1, 6)  # (C=1, H=1, W=6)
    out = to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 6)
    assert out[0, 0] == 0 and out[0, 1] == 255
    assert out[0, 2] in (127, 128)
    assert out[0, 3] == 0 and out[0, 4] == 255  # clamped
    assert out[0, 5] == round(1.5 * 127.5)


def test_to_uint8_keeps_channel_order_and_accepts_numpy_and_batches():
    red = -torch.ones(3, 2, 4)
    red[0] = 1.0
    out = to_uint8(red)
    assert out.shape == (2, 4, 3)
    assert (out[..., 0] == 255).all() and (out[..., 1:] == 0).all()
    assert np.array_equal(to_uint8(red.numpy()), out)
    batch = torch.stack([red, -red])
    assert np.array_equal(to_uint8(batch)[0], out) and np.array_equal(to_uint8(batch)[1], 255 - out)


@pytest.mark.parametrize("shape", [(4, 4), (2, 4, 4), (1, 1, 1, 4, 4)])
def test_to_uint8_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="^x: "):
        to_uint8(torch.zeros(shape))


def test_to_uint8_rejects_non_tensor():
    with pytest.raises(TypeError, match="^x: "):
        to_uint8([[0.0]])


def test_image_grid_places_each_image_at_its_offset():
    torch.manual_seed(0)
    B, C, H, W, nrow, pad = 5, 3, 4, 5, 3, 2
    images = torch.rand(B, C, H, W) * 2 - 1
    grid = image_grid(images, nrow=nrow, padding=pad, pad_value=0.25)
    assert grid.shape == (C, 2 * (H + pad) + pad, 3 * (W + pad) + pad)
    covered = torch.zeros(grid.shape[1:], dtype=torch.bool)
    for k in range(B):
        top, left = pad + (k // nrow) * (H + pad), pad + (k % nrow) * (W + pad)
        assert torch.equal(grid[:, top:top + H, left:left + W], images[k]), f"image {k} misplaced"
        covered[top:top + H, left:left + W] = True
    # everything else (borders, gaps, the empty sixth slot) is padding
    assert (grid[:, ~covered] == 0.25).all()


def test_image_grid_single_image_and_fewer_than_nrow():
    x = torch.rand(1, 3, 3)
    grid = image_grid(x, nrow=8, padding=1)
    assert grid.shape == (1, 5, 5)
    assert torch.equal(grid[:, 1:4, 1:4], x)
    grid = image_grid(torch.rand(2, 1, 3, 3), nrow=8, padding=0)
    assert grid.shape == (1, 3, 6)  # two columns, not eight


@pytest.mark.parametrize("kwargs, name", [
    (dict(images=torch.zeros(4, 4)), "images"),
    (dict(images=torch.zeros(2, 2, 4, 4)), "images"),
    (dict(images=torch.zeros(0, 3, 4, 4)), "images"),
    (dict(images=torch.zeros(2, 3, 4, 4), nrow=0), "nrow"),
    (dict(images=torch.zeros(2, 3, 4, 4), padding=-1), "padding"),
])
def test_image_grid_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        image_grid(**kwargs)


def test_show_images_draws_the_grid_without_ticks():
    torch.manual_seed(0)
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    ax = show_images(images, nrow=3, title="six")
    assert ax.get_title() == "six"
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    drawn = np.asarray(ax.images[0].get_array())
    assert np.array_equal(drawn, to_uint8(image_grid(images, nrow=3, padding=1)))


def test_show_images_single_grey_image_into_given_axes_with_default_title():
    fig, ax = plt.subplots()
    x = torch.linspace(-1, 1, 16).reshape(1, 4, 4)
    out = show_images(x, ax=ax)
    assert out is ax
    assert ax.get_title() == "1 image, 4 x 4 px"
    drawn = np.asarray(ax.images[0].get_array())
    assert drawn.ndim == 2 and np.array_equal(drawn[1:5, 1:5], to_uint8(x))


def test_show_images_rejects_bad_shape():
    with pytest.raises(ValueError, match="^images: "):
        show_images(torch.zeros(8, 8))


def test_plot_2d_scatters_each_set_with_its_label():
    a, b = torch.randn(50, 2), np.random.default_rng(0).normal(size=(30, 2))
    ax = plot_2d([a, b], labels=["data", "model"], title="toy")
    assert ax.get_title() == "toy"
    assert len(ax.collections) == 2
    assert np.allclose(ax.collections[0].get_offsets(), a.numpy())
    assert np.allclose(ax.collections[1].get_offsets(), b)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["data", "model"]


def test_plot_2d_single_set():
    ax = plot_2d(torch.zeros(10, 2), labels="data")
    assert len(ax.collections) == 1 and ax.get_xlabel()


@pytest.mark.parametrize("kwargs, name", [
    (dict(points=torch.zeros(10, 3)), "points"),
    (dict(points=[torch.zeros(10, 2), torch.zeros(10)]), r"points\[1\]"),
    (dict(points=[]), "points"),
    (dict(points=[torch.zeros(3, 2)] * 2, labels=["one"]), "labels"),
])
def test_plot_2d_errors_name_the_argument(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}: "):
        plot_2d(**kwargs)


def test_grid_points_cover_the_square_row_by_row():
    from dlcourse.plotting import grid_points

    p = grid_points(2.0, 5)
    assert p.shape == (25, 2)
    assert torch.allclose(p[:5, 0], torch.linspace(-2, 2, 5)) and torch.all(p[:5, 1] == -2)
    assert torch.allclose(p[-1], torch.tensor([2.0, 2.0]))
    with pytest.raises(ValueError, match="^n: "):
        grid_points(1.0, 1)


def test_plot_vector_field_draws_the_function_on_the_grid():
    from dlcourse.plotting import grid_points, plot_vector_field

    field = lambda x: torch.stack([-x[:, 1], 2 * x[:, 0]], dim=1)        # a rotation-like field
    ax = plot_vector_field(field, lim=1.5, n=7, normalize=False, title="field")
    q = ax.collections[-1]
    p = grid_points(1.5, 7)
    assert ax.get_title() == "field"
    assert np.allclose(q.get_offsets(), p.numpy())
    assert np.allclose(q.U, field(p)[:, 0].numpy()) and np.allclose(q.V, field(p)[:, 1].numpy())


def test_plot_vector_field_normalized_arrows_have_unit_length_and_log_colour():
    from dlcourse.plotting import plot_vector_field

    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    vectors = torch.tensor([[3.0, 4.0], [0.0, -0.1], [10.0, 0.0], [-1.0, 1.0]])
    ax = plot_vector_field(vectors, points)
    q = ax.collections[-1]
    assert np.allclose(np.hypot(q.U, q.V), 1.0)
    assert np.allclose(q.U[0], 0.6) and np.allclose(q.V[0], 0.8)           # the direction of (3, 4)
    assert np.allclose(q.get_array(), np.log10([5.0, 0.1, 10.0, np.sqrt(2)]))
    shared = plot_vector_field(vectors, points, clim=(-2.0, 3.0)).collections[-1]
    assert shared.get_clim() == (-2.0, 3.0)


@pytest.mark.parametrize("args, kwargs, name", [
    ((torch.zeros(4, 2),), {}, "points"),                                  # vectors without points
    ((lambda x: x, torch.zeros(4, 2)), {}, "points"),                      # a function and points
    ((torch.zeros(4, 2), torch.zeros(4, 3)), {}, "points"),
    ((torch.zeros(3, 2), torch.zeros(4, 2)), {}, "field"),
    ((lambda x: x[:, :1],), {}, "field"),
])
def test_plot_vector_field_errors_name_the_argument(args, kwargs, name):
    from dlcourse.plotting import plot_vector_field

    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        plot_vector_field(*args, **kwargs)
