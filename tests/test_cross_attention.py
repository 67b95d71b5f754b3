"""Cross-attention (dlcourse.conditioning.cross_attention): the function against a hand einsum and
against PyTorch's own attention, the softmax's axis and scale against a two-key closed form, the
padding mask (padded keys change nothing; a row with no real token gives zeros, not NaN), the
module against the U-Net's ``Attention`` with the same weights, and the block's identity at
initialisation."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlcourse.conditioning import CrossAttention, SpatialCrossAttention, attention_maps, cross_attention
from dlcourse.models.attention import Attention

pytestmark = pytest.mark.usefixtures("one_thread")

B, HEADS, NQ, L, D = 2, 3, 5, 6, 8


def qkv_mask(seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(B, HEADS, n, D, generator=g) for n in (NQ, L, L))
    mask = torch.tensor([[True, True, True, False, False, False],
                         [True, True, True, True, True, False]])
    return q, k, v, mask


def reference(q, k, v, mask):
    """Eq. 1 of Vaswani et al. written out: exp of the scaled scores, zero at padding, normalised."""
    scores = torch.einsum("bhnd,bhld->bhnl", q, k) / math.sqrt(q.shape[-1])
    e = torch.exp(scores - scores.amax(dim=-1, keepdim=True)) * mask[:, None, None, :]
    weights = e / e.sum(dim=-1, keepdim=True)
    return torch.einsum("bhnl,bhld->bhnd", weights, v), weights


def test_cross_attention_matches_a_hand_einsum_and_pytorch():
    q, k, v, mask = qkv_mask()
    out, weights = cross_attention(q, k, v, mask)
    ref_out, ref_weights = reference(q, k, v, mask)
    torch.testing.assert_close(weights, ref_weights)
    torch.testing.assert_close(out, ref_out)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(out, sdpa, atol=1e-5, rtol=1e-5)
    assert weights.shape == (B, HEADS, NQ, L)


def test_the_softmax_runs_over_the_text_tokens():
    q, k, v, mask = qkv_mask(1)
    _, weights = cross_attention(q, k, v, mask)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(B, HEADS, NQ))     # over L: a distribution
    assert not torch.allclose(weights.sum(dim=-2), torch.ones(B, HEADS, L))       # over the queries: not


def test_two_keys_give_a_sigmoid_of_the_scaled_score_difference():
    # one query, two keys: w_1 = softmax(s / sqrt(d))_1 = sigmoid((s_1 - s_2) / sqrt(d)), here d = 16
    d, a = 16, 6.0
    q = torch.zeros(1, 1, d)
    q[0, 0, 0] = a
    k = torch.zeros(1, 2, d)
    k[0, 0, 0] = 1.0                                   # s_1 = a, s_2 = 0
    v = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out, weights = cross_attention(q, k, v)
    w1 = 1 / (1 + math.exp(-a / math.sqrt(d)))         # 0.818; without the scaling it would be 0.998
    torch.testing.assert_close(weights[0, 0], torch.tensor([w1, 1 - w1]))
    torch.testing.assert_close(out[0, 0], torch.tensor([w1, 1 - w1]))


def test_padded_keys_and_values_change_nothing():
    q, k, v, mask = qkv_mask(2)
    out, weights = cross_attention(q, k, v, mask)
    pad = ~mask[:, None, :, None]                      # (B, 1, L, 1)
    k2 = torch.where(pad, 100 * torch.randn_like(k), k)
    v2 = torch.where(pad, 100 * torch.randn_like(v), v)
    out2, weights2 = cross_attention(q, k2, v2, mask)
    torch.testing.assert_close(out2, out)
    assert (weights2[~mask[:, None, None, :].expand_as(weights2)] == 0).all()


def test_a_row_with_no_real_token_gives_zeros_not_nan():
    q, k, v, mask = qkv_mask(3)
    mask[1] = False
    out, weights = cross_attention(q.requires_grad_(), k, v, mask)
    assert torch.isfinite(out).all() and torch.isfinite(weights).all()
    assert (out[1] == 0).all() and (weights[1] == 0).all()
    torch.testing.assert_close(out[0], reference(q, k, v, mask)[0][0])
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_one_head_without_a_heads_axis():
    q, k, v, mask = qkv_mask(4)
    out3, _ = cross_attention(q[:, 0], k[:, 0], v[:, 0], mask)
    out4, _ = cross_attention(q[:, :1], k[:, :1], v[:, :1], mask)
    torch.testing.assert_close(out3, out4[:, 0])


def test_errors_name_the_argument_and_what_came():
    q, k, v, mask = qkv_mask()
    with pytest.raises(TypeError, match="mask: expected dtype torch.bool.*float32"):
        cross_attention(q, k, v, mask.float())
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 6\), got \(2, 5\)"):
        cross_attention(q, k, v, mask[:, :5])
    with pytest.raises(ValueError, match=r"k: expected shape \(2, 3, \*, 8\), got \(2, 3, 6, 4\)"):
        cross_attention(q, k[..., :4], v, mask)
    with pytest.raises(ValueError, match="v: expected shape"):
        cross_attention(q, k, v[:, :, :4], mask)


def test_the_module_matches_the_unet_attention_with_the_same_weights():
    torch.manual_seed(0)
    query_dim, context_dim = 12, 10
    ours = CrossAttention(query_dim, context_dim, heads=3)
    theirs = Attention(query_dim, heads=3, context_dim=context_dim)
    with torch.no_grad():
        theirs.to_q.weight.copy_(ours.to_q.weight)
        theirs.to_q.bias.zero_()
        theirs.to_kv.weight.copy_(torch.cat([ours.to_k.weight, ours.to_v.weight]))
        theirs.to_kv.bias.zero_()
        theirs.proj.load_state_dict(ours.to_out.state_dict())
    x, context = torch.randn(2, 7, query_dim), torch.randn(2, 4, context_dim)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    out, weights = ours(x, context, mask, return_weights=True)
    torch.testing.assert_close(out, theirs(x, context, mask), atol=1e-5, rtol=1e-5)
    assert weights.shape == (2, 3, 7, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7))
    with pytest.raises(ValueError, match=r"context: expected shape \(2, \*, 10\), got \(2, 4, 9\)"):
        ours(x, context[..., :9], mask)
    with pytest.raises(ValueError, match="heads: expected a divisor of query_dim=12, got 5"):
        CrossAttention(12, 10, heads=5)


def test_the_block_is_the_identity_at_initialisation_and_learns():
    torch.manual_seed(0)
    block = SpatialCrossAttention(channels=16, context_dim=8, heads=2, groups=4)
    x, context = torch.randn(2, 16, 4, 5), torch.randn(2, 3, 8)
    mask = torch.tensor([[True, False, False], [True, True, True]])
    out, weights = block(x, context, mask, return_weights=True)
    assert torch.equal(out, x)
    out.square().sum().backward()
    assert block.attn.to_out.weight.grad.abs().sum() > 0         # the zero projection gets a gradient
    with torch.no_grad():
        block.attn.to_out.weight.normal_()
    assert not torch.allclose(block(x, context, mask), x)
    assert weights.shape == (2, 2, 20, 3)
    maps = attention_maps(weights, 4, 5)                          # (B, L, H, W)
    assert maps.shape == (2, 3, 4, 5)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, 4, 5))
    assert (maps[0, 1:] == 0).all()                               # padding is looked at nowhere
    with pytest.raises(ValueError, match="height, width"):
        attention_maps(weights, 5, 5)
