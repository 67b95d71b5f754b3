"""Caption -> image retrieval of a small CLIP trained on the shapes (notebook 07).

    .venv/bin/python bench/clip_retrieval.py                 # about a minute of training on 1 CPU thread
    .venv/bin/python bench/clip_retrieval.py --seconds 10

A script, not a test. ``dlcourse.conditioning``'s ``TextEncoder`` (width 64, 2 blocks, 4 heads) and
``ImageEncoder`` (convs 32, 64, 64, embedding 64) are trained together by ``train_clip`` (symmetric
InfoNCE, learned temperature, batch 128, AdamW 2e-3, fp32, no EMA) on ``make_shapes(--n-train,
size=16, seed=1)`` for ``--seconds``. Held out: ``make_shapes(--sets * 100, size=16, seed=2)`` cut
into ``--sets`` sets of 100 (image, caption) pairs. For every set, each caption picks the image of
the 100 with the highest cosine similarity; the table gives the mean and standard deviation over the
sets of:

- **top-1 exact**: the picked image is the caption's own (chance 1 / 100);
- **top-1 same caption**: the picked image has the same caption as the query. Captions repeat: there
  are 4 shapes x 6 colours x 2 sizes x 9 places = 432 captions, so a set of 100 holds about 90
  distinct ones, and the images that share a caption cannot be told apart by it. Chance is then the
  mean share of the set with the query's caption;
- **ceiling of exact**: distinct captions / 100, the most "exact" can reach (queries with the same
  caption have the same embedding, so they all pick the same image).

Held-out pairs are new images, not new attribute combinations: nearly every caption also occurs in
training. ``--hold-out "blue triangle"`` drops every training pair whose caption has both words (about
1 in 24) and adds a row: "same caption" top-1 over the held-out queries of that combination alone
(pooled over the sets), which the encoders never saw together: compositional generalisation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dlcourse.conditioning import (CLIP, ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig, Tokenizer,
                                   retrieval_top1, train_clip)
from dlcourse.data import make_shapes
from dlcourse.loop import TrainConfig

SET_SIZE = 100


def evaluate(clip: CLIP, tok: Tokenizer, test, sets: int, hold_out: list[str]) -> dict:
    """Mean and standard deviation over the held-out sets of each column; with ``hold_out``, the
    pooled "same caption" rate of the queries that contain all its words."""
    rows, unseen = [], []
    with torch.no_grad():
        for s in range(sets):
            part = slice(s * SET_SIZE, (s + 1) * SET_SIZE)
            captions = test.captions[part]
            text = clip.text_encoder(*tok.encode(captions)).pooled
            image = clip.image_encoder(test.images[part])
            rows.append({"exact": retrieval_top1(text, image),
                         "same caption": retrieval_top1(text, image, captions),
                         "chance exact": 1 / SET_SIZE,
                         "chance same caption": sum(captions.count(c) for c in captions) / SET_SIZE**2,
                         "ceiling exact": len(set(captions)) / SET_SIZE})
            if hold_out:
                best = (text @ image.T / text.norm(dim=1)[:, None] / image.norm(dim=1)).argmax(1).tolist()
                unseen += [captions[j] == c for c, j in zip(captions, best) if has_words(c, hold_out)]
    out = {k: (statistics.mean(r[k] for r in rows), statistics.stdev(r[k] for r in rows)) for k in rows[0]}
    if hold_out:
        out["unseen"] = (sum(unseen) / max(len(unseen), 1), len(unseen))
    return out


def has_words(caption: str, words: list[str]) -> bool:
    return set(words) <= set(caption.split())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="training budget")
    p.add_argument("--n-train", type=int, default=10000, help="training pairs")
    p.add_argument("--sets", type=int, default=10, help="held-out sets of 100 pairs")
    p.add_argument("--hold-out", default="", help='words of a combination never trained on, e.g. "blue triangle"')
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    tok = Tokenizer.default()
    train, test = make_shapes(args.n_train, size=16, seed=1), make_shapes(args.sets * SET_SIZE, size=16, seed=2)
    hold_out = args.hold_out.split()
    if hold_out:
        keep = [i for i, c in enumerate(train.captions) if not has_words(c, hold_out)]
        images, captions = train.images[keep], [train.captions[i] for i in keep]
        print(f"holding out {args.hold_out!r}: {len(train.captions) - len(keep)} of {len(train.captions)} "
              f"training pairs dropped")
    else:
        images, captions = train.images, train.captions
    torch.manual_seed(0)
    clip = CLIP(TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length)),
                ImageEncoder(ImageEncoderConfig(image_size=16)))
    n_params = sum(p.numel() for p in clip.parameters())
    untrained = evaluate(clip, tok, test, args.sets, hold_out)
    config = TrainConfig(seconds=args.seconds, lr=2e-3, ema_decay=None, precision="fp32", device="cpu",
                         progress=False)
    start = time.perf_counter()
    result = train_clip(clip, images, captions, tok, batch_size=128, config=config)
    trained = evaluate(clip, tok, test, args.sets, hold_out)
    tail = statistics.mean(result.losses[-20:])
    seconds = time.perf_counter() - start
    print(f"CLIP, {n_params / 1e6:.2f}M parameters: {result.steps} steps of 128 in {seconds:.0f} s, "
          f"final loss {tail:.3f}, temperature 1/{clip.logit_scale.exp().item():.1f}")
    print(f"{args.sets} held-out sets of {SET_SIZE} pairs, mean +- std over the sets:\n")
    print("| caption -> image | untrained | trained | chance | ceiling |")
    print("|---|---|---|---|---|")
    fmt = lambda m: f"{100 * m[0]:.1f}% +- {100 * m[1]:.1f}"
    print(f"| top-1 exact | {fmt(untrained['exact'])} | {fmt(trained['exact'])} | 1.0% | "
          f"{fmt(trained['ceiling exact'])} |")
    print(f"| top-1 same caption | {fmt(untrained['same caption'])} | {fmt(trained['same caption'])} | "
          f"{fmt(trained['chance same caption'])} | 100% |")
    if hold_out:
        rate, n = trained["unseen"]
        print(f"| top-1 same caption, the {n} {args.hold_out!r} queries | {100 * untrained['unseen'][0]:.1f}% | "
              f"{100 * rate:.1f}% | | |")


if __name__ == "__main__":
    main()
