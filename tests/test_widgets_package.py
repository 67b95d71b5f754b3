"""Tests of the dlcourse.widgets package as a whole: what it re-exports, how its modules import one another,
and where the computations that take a model run.

The device tests run on a CPU-only machine with the ``meta_probe`` model of conftest.py: it lives on
PyTorch's "meta" device, fails unless its inputs arrive there, and answers on the CPU, as a GPU model's
answer would come back. With CUDA at hand, the same computations run on it and must give what they give
on the CPU.
"""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest
import torch
from torch import nn

import dlcourse.widgets as W
from dlcourse.forward import q_sample
from dlcourse.schedules import cosine_schedule

PACKAGE = Path(W.__file__).parent
MODULES = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if not m.name.startswith("_"))
SCHEDULE = cosine_schedule(100)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("DLCOURSE_FAST", raising=False)


def test_one_module_per_notebook():
    assert MODULES == ["control", "denoise", "fewstep", "forward", "guidance", "image_prompt", "latent", "samplers",
                       "schedules", "score", "systems", "text"]


@pytest.mark.parametrize("name", MODULES)
def test_the_package_re_exports_every_public_name(name):
    module = importlib.import_module(f"dlcourse.widgets.{name}")
    defined = {k for k, v in vars(module).items()
               if not k.startswith("_") and getattr(v, "__module__", None) == module.__name__}
    assert defined <= set(module.__all__), f"{name}: public names missing from __all__: {defined - set(module.__all__)}"
    for public in module.__all__:
        assert public in W.__all__, f"dlcourse.widgets does not re-export {name}.{public}"
        assert getattr(W, public) is getattr(module, public)


def test_the_package_re_exports_the_shared_pieces_learners_use():
    for public in ("SKIPPED", "png_bytes", "show"):
        assert public in W.__all__ and getattr(W, public) is getattr(importlib.import_module("dlcourse.widgets._base"),
                                                                     public)
    assert len(W.__all__) == len(set(W.__all__))


def _widget_imports(path: Path):
    """(imported module within dlcourse.widgets, imported name) for every ``from ... import`` of a widgets module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 1:                                          # from .x import y (or from . import x)
            target = node.module or ""
        elif node.level == 0 and (node.module or "").startswith("dlcourse.widgets"):
            target = node.module.removeprefix("dlcourse.widgets").lstrip(".")
        else:
            continue
        for alias in node.names:
            yield (target, alias.name) if target else (alias.name, alias.name)     # from . import x: x itself


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.stem)
def test_modules_import_no_private_name_from_one_another(path):
    for target, name in _widget_imports(path):
        if target == "_base":
            continue
        assert not name.startswith("_"), f"{path.name} imports the private {name} from widgets.{target}"


def test_the_old_module_paths_are_gone():
    assert not list(PACKAGE.parent.glob("widgets*.py"))


# --- where the computations run -----------------------------------------------------------------------

def test_denoise_strip_feeds_the_model_on_its_device_and_answers_on_the_cpu(meta_probe):
    model = meta_probe()                                              # lives on "meta", answers eps = 0
    x_0 = torch.rand(3, 4, 4) * 2 - 1
    x_t, guess = W.denoise_strip(model, x_0, SCHEDULE, [10, 60], seed=1)
    assert model.calls == 1
    assert x_t.device.type == guess.device.type == "cpu"
    eps = torch.randn(x_0.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x_t[1], q_sample(x_0[None], 60, SCHEDULE, eps[None])[0])
    torch.testing.assert_close(guess, x_t / SCHEDULE.alphas_cumprod[[10, 60]].sqrt().view(2, 1, 1, 1))  # eps = 0


class FakeSampler:
    """Stands in for a sampler (a real one would run on the meta device, whose tensors hold no numbers to bring
    back): records where its inputs are, returns zeros on the CPU."""

    def __init__(self):
        self.seen = {}

    def __call__(self, model, x_T, schedule, steps, *, cond=None, generator=None, **kwargs):
        self.seen = {"x_T": x_T.device.type, "cond": None if cond is None else cond.device.type,
                     "generator": None if generator is None else generator.device.type}
        return torch.zeros(x_T.shape)


def test_sampler_preview_puts_the_noise_on_the_models_device(monkeypatch, meta_probe):
    fake = FakeSampler()
    monkeypatch.setattr(importlib.import_module("dlcourse.widgets.samplers"), "get_sampler", lambda name: fake)
    images, _ = W.sampler_preview(meta_probe(), SCHEDULE, "ddpm", 5, n=2, shape=(3, 4, 4))
    assert fake.seen == {"x_T": "meta", "cond": None, "generator": "cpu"}, "x_T on the model's device, "\
        "the sampler's noise from a CPU generator (the same numbers on every device)"
    assert images.device.type == "cpu" and images.shape == (2, 3, 4, 4)


def test_guided_grid_puts_noise_and_labels_on_the_models_device(monkeypatch, meta_probe):
    fake = FakeSampler()
    monkeypatch.setattr(importlib.import_module("dlcourse.widgets.guidance"), "sample_ddim", fake)
    model = meta_probe()
    model.num_classes = 2
    x = W.guided_grid(model, SCHEDULE, 1, 2.0, n=3, steps=4, image_shape=(3, 4, 4))
    assert fake.seen["x_T"] == fake.seen["cond"] == "meta"
    assert x.device.type == "cpu" and x.shape == (3, 3, 4, 4)


class Gaussian(nn.Module):
    """E[eps | x_t] for pixels N(mu, 0.2^2): mu = 0.3, or 0.3 c for class c (label 2 is the null class)."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.register_buffer("ab", SCHEDULE.alphas_cumprod.float())
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, cond=None):
        mu = 0.3 if cond is None else 0.3 * cond.float().view(-1, *[1] * (x_t.ndim - 1))
        ab = self.ab[t].view(-1, *[1] * (x_t.ndim - 1))
        return (1 - ab).sqrt() * (x_t - ab.sqrt() * mu) / (ab * 0.04 + 1 - ab)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_seed_gives_what_it_gives_on_the_cpu():
    cpu, gpu = Gaussian(), Gaussian().cuda()
    x_0 = torch.rand(3, 8, 8) * 2 - 1
    for a, b in zip(W.denoise_strip(cpu, x_0, SCHEDULE, [5, 50]), W.denoise_strip(gpu, x_0, SCHEDULE, [5, 50])):
        assert b.device.type == "cpu"
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for name in ("ddpm", "ddim", "heun"):
        a, _ = W.sampler_preview(cpu, SCHEDULE, name, 10, n=4, shape=(3, 8, 8))
        b, _ = W.sampler_preview(gpu, SCHEDULE, name, 10, n=4, shape=(3, 8, 8))
        assert b.device.type == "cpu"
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
    a = W.guided_grid(cpu, SCHEDULE, 1, 2.0, n=4, steps=10, image_shape=(3, 8, 8))
    b = W.guided_grid(gpu, SCHEDULE, 1, 2.0, n=4, steps=10, image_shape=(3, 8, 8))
    torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


# --- what every widget shares: pictures at their own size, figures without pyplot ------------

def test_png_bytes_enlarges_by_a_whole_factor_within_the_display_size():
    from PIL import Image
    import io

    image = torch.rand(3, 30, 20) * 2 - 1
    for size, k in [(256, 8), (239, 7), (30, 1), (10, 1)]:      # 256 // 30 = 8; never above the size, but >= 1
        png = W.png_bytes(image, size)
        assert Image.open(io.BytesIO(png)).size == (20 * k, 30 * k)
        assert W._base.png_size(png) == (20 * k, 30 * k)


def test_png_size_refuses_what_is_not_a_png():
    with pytest.raises(ValueError, match="png: expected PNG bytes"):
        W._base.png_size(b"GIF89a" + bytes(30))


def test_image_widget_is_shown_at_the_pngs_own_size():
    png_a, png_b = W.png_bytes(torch.zeros(3, 16, 16), 160), W.png_bytes(torch.zeros(3, 8, 24), 200)
    image = W._base.image_widget(png_a)
    assert image.value == png_a and (image.layout.width, image.layout.height) == ("160px", "160px")
    assert image.layout.max_width == "100%" and image.layout.object_fit == "contain"   # narrower outputs: shrink
    W._base.set_png(image, png_b)
    assert image.value == png_b and (image.layout.width, image.layout.height) == ("192px", "64px")


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.stem)
def test_no_widget_module_uses_pyplot(path):
    # a pyplot figure still open when the cell ends is displayed a second time by the kernel's hook
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) and node.module
                 else [])
        assert not any("pyplot" in n for n in names), f"{path.name} imports pyplot: build a matplotlib.figure.Figure"
