"""SDXL's crop micro-conditioning (dlcourse.systems.sdxl)."""

import pytest
import torch

from dlcourse.data import make_shapes
from dlcourse.models import UNet, UNetConfig
from dlcourse.systems.sdxl import MicroConditioning, crop_embedding, cut_off, random_crops


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
