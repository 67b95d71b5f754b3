"""SDXL's micro-conditioning (crop and original size) and refiner (dlcourse.systems.sdxl)."""

import pytest
import torch

from dlcourse.data import make_shapes
from dlcourse.checkpoints import build_model, load_checkpoint, save_checkpoint
from dlcourse.models import UNet, UNetConfig
from dlcourse.schedules import get_schedule
from dlcourse.samplers import sample_ddim
from dlcourse.systems.sdxl import (MicroConditioning, RefinerSwitch, crop_embedding, cut_off, high_frequency_energy,
                                   random_crops, sample_with_refiner, shrink, size_embedding)
from dlcourse.models.embeddings import timestep_embedding


def small_unet(num_classes=None):
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=16, channel_mults=(1, 2), attention=False, num_classes=num_classes)).eval()
    with torch.no_grad():                              # a fresh U-Net's zero-initialised layers output zeros
        for p in net.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(std=0.05)
    return net


def test_crop_embedding_shape_and_distinct():
    c = torch.tensor([[0, 0], [0, 8], [8, 0], [3, 5]])
    e = crop_embedding(c, dim=16)
    assert e.shape == (4, 32)
    assert torch.cdist(e, e)[~torch.eye(4, dtype=torch.bool)].min() > 0.1      # every corner its own features
    assert torch.equal(e[1, :16], e[0, :16]) and not torch.equal(e[1, 16:], e[0, 16:])   # c_top, then c_left
    with pytest.raises(ValueError, match="crops_coords_top_left"):
        crop_embedding(torch.zeros(4, 3))


def test_new_wrapper_is_the_wrapped_network_at_every_crop():
    net = small_unet()
    micro = MicroConditioning(net).eval()
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([10, 500, 900])
    ref = net(x, t)
    for c in ((0, 0), (8, 8)):
        assert torch.allclose(micro(x, t, {"crops_coords_top_left": c}), ref, atol=1e-6)
    assert torch.allclose(micro(x, t), ref, atol=1e-6)
    assert len(net.time_embed._forward_hooks) == 0                           # the hook does not stay behind


def test_crop_changes_the_output_once_trained_and_per_sample_crops():
    net = small_unet()
    micro = MicroConditioning(net).eval()
    torch.nn.init.normal_(micro.crop_embed[2].weight, std=0.5)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([300, 300])
    a = micro(x, t, {"crops_coords_top_left": (0, 0)})
    b = micro(x, t, {"crops_coords_top_left": (8, 8)})
    assert (a - b).abs().max() > 1e-3
    both = micro(x, t, {"crops_coords_top_left": torch.tensor([[0, 0], [8, 8]])})
    assert torch.allclose(both[0], a[0], atol=1e-5) and torch.allclose(both[1], b[1], atol=1e-5)
    assert torch.allclose(micro.at((8, 8))(x, t), b, atol=1e-6)
    assert torch.allclose(micro(x, t), a, atol=1e-6)                          # no crop given means (0, 0)


def test_inner_cond_passes_through():
    net = small_unet(num_classes=4)
    micro = MicroConditioning(net).eval()
    x, t, y = torch.randn(2, 3, 16, 16), torch.tensor([100, 100]), torch.tensor([1, 3])
    assert torch.allclose(micro(x, t, {"crops_coords_top_left": (2, 5), "cond": y}), net(x, t, y), atol=1e-6)
    assert torch.allclose(micro.at((2, 5))(x, t, y), net(x, t, y), atol=1e-6)


def test_wrapper_input_checks():
    micro = MicroConditioning(small_unet())
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="crops_coords_top_left"):
        micro(x, t, {"crops_coords_top_left": torch.zeros(3, 2)})
    with pytest.raises(ValueError, match="crops_coords_top_left"):
        micro(x, t, {"crops_coords_top_left": (1, 2, 3)})
    with pytest.raises(TypeError, match="time_embed"):
        MicroConditioning(torch.nn.Linear(2, 2))


def test_random_crops_are_the_slices_they_name():
    images = torch.randn(50, 3, 24, 20)
    crops, c = random_crops(images, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (50, 3, 16, 16) and c.shape == (50, 2) and c.dtype == torch.int64
    assert c[:, 0].min() >= 0 and c[:, 0].max() <= 8 and c[:, 1].min() >= 0 and c[:, 1].max() <= 4
    assert len(set(map(tuple, c.tolist()))) > 10                              # corners vary
    for i in range(50):
        top, left = c[i].tolist()
        assert torch.equal(crops[i], images[i, :, top:top + 16, left:left + 16])
    again, c2 = random_crops(images, 16, torch.Generator().manual_seed(0))
    assert torch.equal(again, crops) and torch.equal(c2, c)
    with pytest.raises(ValueError, match="crop_size"):
        random_crops(images, 21)
    with pytest.raises(ValueError, match="images"):
        random_crops(torch.randn(3, 16, 16), 8)


def test_cut_off_reads_the_frame_from_pixels():
    whole = make_shapes(500, size=16, seed=3)
    assert cut_off(whole.images).float().mean() == 0                         # whole images: never cut
    big = make_shapes(1000, size=24, seed=3)
    crops, _ = random_crops(big.images, 16, torch.Generator().manual_seed(1))
    masks, _ = random_crops(big.masks, 16, torch.Generator().manual_seed(1))
    truth = masks.flatten(1).sum(1) < big.masks.flatten(1).sum(1) - 0.5       # part of the shape left the crop
    pred = cut_off(crops)
    assert 0.7 < truth.float().mean() < 0.95
    assert (pred == truth).float().mean() > 0.9
    blank = torch.full((1, 3, 16, 16), -1.0) + 0.16                          # background only
    assert not cut_off(blank).item()
    with pytest.raises(ValueError, match="level"):
        cut_off(whole.images, level=1.5)
    with pytest.raises(ValueError, match="channels"):
        cut_off(torch.zeros(2, 1, 16, 16))


def test_size_embedding_is_each_side_embedded_like_a_timestep():
    s = torch.tensor([[16, 16], [8, 8], [24, 16]])
    e = size_embedding(s, dim=8)
    assert e.shape == (3, 16)
    assert torch.allclose(e[:, :8], timestep_embedding(s[:, 0].float(), 8))         # h first, then w
    assert torch.allclose(e[:, 8:], timestep_embedding(s[:, 1].float(), 8))
    assert not torch.allclose(e[0], e[1])
    with pytest.raises(ValueError, match="original_size"):
        size_embedding(torch.zeros(3))


def test_original_size_condition_starts_neutral_then_counts():
    net = small_unet()
    micro = MicroConditioning(net, original_size=True).eval()
    assert micro.crop_embed[0].in_features == 4 * micro.fourier_dim                   # size pair + crop pair
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 700])
    ref = net(x, t)
    assert torch.allclose(micro(x, t, {"original_size": (8, 8), "crops_coords_top_left": (4, 0)}), ref, atol=1e-6)
    torch.nn.init.normal_(micro.crop_embed[2].weight, std=0.5)
    small = micro(x, t, {"original_size": (8, 8)})
    large = micro(x, t, {"original_size": (16, 16)})
    assert (small - large).abs().max() > 1e-3
    assert torch.allclose(micro(x, t), large, atol=1e-6)                       # no size given: the input's own
    assert torch.allclose(micro.at((0, 0), (8, 8))(x, t), small, atol=1e-6)
    feats = micro.features(torch.tensor([[4.0, 0.0]]), torch.tensor([[8.0, 8.0]]))
    assert torch.allclose(feats, torch.cat([size_embedding(torch.tensor([[8, 8]]), micro.fourier_dim),
                                            crop_embedding(torch.tensor([[4, 0]]), micro.fourier_dim)], 1))
    with pytest.raises(ValueError, match="original_size"):
        micro(x, t, {"original_size": (8, 8, 8)})
    with pytest.raises(ValueError, match="original_size"):
        MicroConditioning(small_unet())(x, t, {"original_size": (8, 8)})           # a crop-only wrapper refuses
    with pytest.raises(ValueError, match="original_size"):
        MicroConditioning(small_unet()).at((0, 0), (8, 8))


def test_micro_conditioning_round_trips_through_a_checkpoint(tmp_path):
    micro = MicroConditioning(small_unet(), original_size=True).eval()
    torch.nn.init.normal_(micro.crop_embed[2].weight, std=0.5)
    save_checkpoint(tmp_path / "m.pt", micro)
    again = build_model(load_checkpoint(tmp_path / "m.pt"))
    assert isinstance(again, MicroConditioning) and again.original_size
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 700])
    c = {"original_size": (8, 8), "crops_coords_top_left": (2, 3)}
    assert torch.allclose(again(x, t, c), micro(x, t, c), atol=1e-6)


def test_shrink_blurs_and_high_frequency_energy_sees_it():
    images = make_shapes(64, size=16, seed=0).images
    small = shrink(images, 8)
    assert small.shape == images.shape
    assert torch.equal(shrink(images, 16), images)
    assert torch.allclose(small.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.02)   # the same picture, coarser
    assert (small - images).abs().amax() > 0.2
    sharp, blurry = high_frequency_energy(images), high_frequency_energy(small)
    assert sharp.shape == (64,) and (sharp > blurry).float().mean() > 0.95
    assert sharp.mean() > 2.5 * blurry.mean()
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2.0 - 1    # all power at Nyquist
    assert torch.allclose(high_frequency_energy(checker.expand(1, 3, 16, 16)), torch.ones(1))
    assert high_frequency_energy(torch.zeros(1, 3, 16, 16)).item() == 0
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_energy(images, cutoff=0.5)
    with pytest.raises(ValueError, match="size"):
        shrink(images, 17)


class _Constant(torch.nn.Module):
    """Records the timesteps it is called at and returns a constant."""

    def __init__(self, value):
        super().__init__()
        self.value, self.calls = value, []

    def forward(self, x_t, t, cond=None):
        self.calls.append(t.clone())
        return torch.full_like(x_t, self.value)


def test_refiner_switch_calls_each_model_where_it_belongs():
    base, refiner = _Constant(1.0), _Constant(-1.0)
    switch = RefinerSwitch(base, refiner, 200)
    x = torch.randn(4, 3, 8, 8)
    out = switch(x, torch.tensor([900, 150, 199, 200]))
    assert out[:, 0, 0, 0].tolist() == [1.0, -1.0, -1.0, 1.0]
    assert [c.tolist() for c in refiner.calls] == [[150, 199]] and [c.tolist() for c in base.calls] == [[900, 200]]
    with pytest.raises(ValueError, match="switch_t"):
        RefinerSwitch(base, refiner, -1)


def test_sample_with_refiner_same_calls_and_refiner_takes_the_last_steps():
    schedule = get_schedule("cosine", 1000)
    base, refiner = small_unet(), small_unet()
    x_T = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    calls = {"base": [], "refiner": []}
    hooks = [m.register_forward_hook(lambda mod, args, out, k=k: calls[k].append(int(args[1][0])))
             for k, m in (("base", base), ("refiner", refiner))]
    with torch.no_grad():
        x = sample_with_refiner(base, refiner, x_T, schedule, 10, 250, prediction_type="v_prediction", progress=False)
    for h in hooks:
        h.remove()
    assert len(calls["base"]) + len(calls["refiner"]) == 10 and len(calls["refiner"]) >= 1
    assert min(calls["base"]) >= 250 and max(calls["refiner"]) < 250
    with torch.no_grad():                              # never switching is plain DDIM with the base
        plain = sample_ddim(base, x_T, schedule, 10, prediction_type="v_prediction", progress=False)
        never = sample_with_refiner(base, refiner, x_T, schedule, 10, 0, prediction_type="v_prediction",
                                    progress=False)
    assert torch.allclose(never, plain) and x.shape == x_T.shape
    with pytest.raises(ValueError, match="switch_t"):
        sample_with_refiner(base, refiner, x_T, schedule, 10, 1001)
