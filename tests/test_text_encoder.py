"""The tokenizer (round trip over the shapes captions, the empty prompt, unknown words), the text
encoder (padding changes nothing, word order matters), CLIP's loss against a hand computation and
against its usual mistakes, retrieval on a hand case, and a few seconds of CLIP training that
retrieves held-out images far above chance."""

import math

import pytest
import torch
import torch.nn.functional as F

from dlcourse.checkpoints import build_model
from dlcourse.conditioning import (CLIP, ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig, Tokenizer,
                                   clip_loss, retrieval_top1, train_clip)
from dlcourse.data import make_shapes
from dlcourse.loop import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_tokenizer_round_trips_every_shapes_caption():
    tok = Tokenizer.default()
    captions = make_shapes(300, size=8, seed=0).captions
    ids, mask = tok.encode(captions)
    assert ids.shape == mask.shape == (300, tok.max_length)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert tok.decode(ids, mask) == captions
    assert mask.sum(1).tolist() == [len(c.split()) for c in captions]
    assert (ids[~mask] == tok.pad_id).all()


def test_the_empty_prompt_is_one_token_of_its_own():
    tok = Tokenizer.default()
    ids, mask = tok.encode(["", "a red circle"])
    assert ids[0, 0] == tok.empty_id and (ids[0, 1:] == tok.pad_id).all()
    assert mask[0].tolist() == [True] + [False] * (tok.max_length - 1)
    assert tok.decode(ids, mask) == ["", "a red circle"]
    assert tok.vocab[:2] == ["<pad>", "<empty>"]


def test_the_tokenizer_names_what_it_cannot_encode():
    tok = Tokenizer.default()
    with pytest.raises(ValueError, match=r"captions\[1\]: unknown word 'purple' in 'a small purple circle'"):
        tok.encode(["a red circle", "a small purple circle"])
    with pytest.raises(ValueError, match="unknown word '<pad>'"):
        tok.encode(["a <pad> circle"])
    with pytest.raises(ValueError, match="at most max_length=3 words, got 4"):
        Tokenizer(["a", "red", "circle"], max_length=3).encode(["a red red circle"])
    with pytest.raises(TypeError, match="wrap one caption in a list"):
        tok.encode("a red circle")


def test_from_captions_keeps_the_order_of_first_use():
    tok = Tokenizer.from_captions(["a red circle", "A blue circle on top"])
    assert tok.vocab == ["<pad>", "<empty>", "a", "red", "circle", "blue", "on", "top"]
    assert tok.max_length == 5
    assert Tokenizer(**tok.get_config()).vocab == tok.vocab


def small_text_encoder(tok, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=len(tok), max_length=tok.max_length, dim=32, depth=2, heads=4)
    return TextEncoder(TextEncoderConfig(**{**cfg, **kw}))


def test_padding_changes_nothing_and_word_order_matters():
    tok = Tokenizer.default()
    encoder = small_text_encoder(tok)
    ids, mask = tok.encode(["a small red circle at the top left", "a blue cross on the left", ""])
    out = encoder(ids, mask)
    noisy = torch.where(mask, ids, torch.randint(len(tok), ids.shape))      # random ids at padding
    out2 = encoder(noisy, mask)
    torch.testing.assert_close(out2.tokens, out.tokens)
    torch.testing.assert_close(out2.pooled, out.pooled)
    assert out.tokens.shape == (3, tok.max_length, 32) and out.pooled.shape == (3, 32)
    assert (out.tokens[~mask] == 0).all()
    swapped = encoder(*tok.encode(["a small red circle at the left top"])).pooled
    assert not torch.allclose(swapped, out.pooled[:1], atol=1e-4)
    assert set(out.cond()) == {"context", "context_mask"}
    with pytest.raises(ValueError, match="mask: every caption needs at least one real token"):
        encoder(ids, torch.zeros_like(mask))
    with pytest.raises(TypeError, match="mask: expected dtype torch.bool"):
        encoder(ids, mask.long())


def hand_clip_loss(img, txt, scale):
    """CLIP's loss with Python floats: cosine similarities, row and column cross-entropies."""
    unit = lambda u: [x / math.sqrt(sum(y * y for y in u)) for x in u]
    img, txt = [unit(u) for u in img], [unit(u) for u in txt]
    n = len(img)
    s = [[scale * sum(a * b for a, b in zip(img[i], txt[j])) for j in range(n)] for i in range(n)]
    rows = sum(-s[i][i] + math.log(sum(math.exp(s[i][j]) for j in range(n))) for i in range(n)) / n
    cols = sum(-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(n))) for j in range(n)) / n
    return (rows + cols) / 2


def test_clip_loss_matches_a_hand_computation_and_not_its_mistakes():
    img = [[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]]
    txt = [[0.9, 0.1], [1.0, 1.0], [-0.5, 1.0]]
    scale = 5.0
    expected = hand_clip_loss(img, txt, scale)
    i, t = torch.tensor(img), torch.tensor(txt)
    got = clip_loss(i, t, torch.tensor(math.log(scale))).item()
    assert got == pytest.approx(expected, rel=1e-5)

    logits = scale * F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).T
    labels = torch.arange(3)
    mistakes = {
        "one direction only": F.cross_entropy(logits, labels),
        "no temperature": (F.cross_entropy(logits / scale, labels) + F.cross_entropy(logits.T / scale, labels)) / 2,
        "labels misordered": (F.cross_entropy(logits, labels.flip(0)) + F.cross_entropy(logits.T, labels.flip(0))) / 2,
    }
    for name, value in mistakes.items():
        assert abs(value.item() - expected) > 0.01, name


def test_clip_loss_ignores_norms_and_clamps_the_scale_at_100():
    torch.manual_seed(0)
    img, txt = torch.randn(8, 4), torch.randn(8, 4)
    log100 = torch.tensor(math.log(100.0))
    loss = clip_loss(img, txt, log100)
    torch.testing.assert_close(clip_loss(3 * img, 0.1 * txt, log100), loss)
    torch.testing.assert_close(clip_loss(img, txt, torch.tensor(math.log(1000.0))), loss)
    scale = torch.tensor(math.log(10.0), requires_grad=True)
    clip_loss(img, txt, scale).backward()
    assert scale.grad != 0                                               # the temperature is learnt
    with pytest.raises(ValueError, match=r"text_emb: expected shape \(8, 4\), got \(8, 3\)"):
        clip_loss(img, txt[:, :3], log100)


def test_retrieval_top1_on_a_hand_case():
    img = torch.eye(4)
    assert retrieval_top1(img, img) == 1.0
    assert retrieval_top1(img[[1, 0, 3, 2]], img) == 0.0
    text = img[[0, 0, 2, 3]]                            # captions 0 and 1 are the same words
    assert retrieval_top1(text, img) == 0.75
    assert retrieval_top1(text, img, ["a", "a", "b", "c"]) == 1.0


def test_a_few_seconds_of_clip_training_retrieve_far_above_chance():
    tok = Tokenizer.default()
    train, test = make_shapes(2000, size=16, seed=1), make_shapes(100, size=16, seed=2)
    clip = CLIP(small_text_encoder(tok, depth=1),
                ImageEncoder(ImageEncoderConfig(image_size=16, channels=(16, 32, 32), embed_dim=32)))

    def top1():
        with torch.no_grad():
            text = clip.text_encoder(*tok.encode(test.captions)).pooled
            return retrieval_top1(text, clip.image_encoder(test.images))

    before = top1()
    config = TrainConfig(steps=60, lr=3e-3, ema_decay=None, precision="fp32", device="cpu", progress=False)
    result = train_clip(clip, train.images, train.captions, tok, batch_size=64, config=config)
    after = top1()
    assert result.steps == 60 and result.losses[-1] < result.losses[0] / 4
    assert before < 0.1 and after > 0.4, (before, after)                 # chance: 0.01 (measured 0.83)


def test_the_encoders_rebuild_from_their_configs():
    tok = Tokenizer.default()
    for model in (small_text_encoder(tok), ImageEncoder(ImageEncoderConfig(image_size=8, channels=(8, 8, 16)))):
        config = {"model": type(model).__name__, "kwargs": model.get_config()}
        copy = build_model({"config": config, "state_dict": model.state_dict()})
        assert type(copy) is type(model) and copy.get_config() == model.get_config()
        for name, tensor in model.state_dict().items():
            assert torch.equal(copy.state_dict()[name], tensor), name
