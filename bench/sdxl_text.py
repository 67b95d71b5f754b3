"""SDXL's two text encoders against one: prompt accuracy and FD of two U-Nets trained by the same recipe (notebook 10c).

    OMP_NUM_THREADS=1 .venv/bin/python bench/sdxl_text.py DUAL.pt SINGLE.pt [--n 256] [--seed 1]

``DUAL.pt``: a file of ``scripts/train_sdxl_text.py sdxl_text_shapes16`` (``clip_shapes16`` and
``clip_shapes16_small``, tokens concatenated, the second's pooled embedding on the time embedding);
``SINGLE.pt``: a file of ``scripts/train_conditioning.py shapes16_unet_text`` (``clip_shapes16`` alone), trained
for the same steps from the same ``shapes16_unet``, with the same seed (so the same batches, dropped captions,
timesteps and noise). Either may be ``shipped``: the file in dlcourse/assets.

Each model draws one image per prompt for the n prompts of ``matched_real_sets`` (held-in captions of
``make_shapes(2n, seed=2)``; the held-out blue triangles are left out), from the same noise (``--seed``), with
DDIM-20 at each guidance scale of ``--ws``. Columns: **all** (``prompt_accuracy``: the judge calls the sample valid
and reads the prompt's shape, colour and size), **+ pos.** (and the place read from the pixels), **valid**,
**FD** in the judge's features against the prompts' own real images, **floor** (the FD of a second real image of
each caption against the same set: the best a model can get at this n). Then the same for ``--blue`` prompts
"a ... blue triangle ...", the combination neither the encoders nor the U-Nets ever saw (the judge's ``all``
only; no real set). For the two-encoder model, two more rows read each path alone: **tokens only** gives the
pooled embedding of the empty prompt (the prompt reaches the network by cross-attention only), **pooled only**
gives the tokens of the empty prompt (the prompt reaches it through the time embedding only). Record the machine's
load with the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import train_conditioning as tc  # noqa: E402
import train_sdxl_text as ts  # noqa: E402

from dlcourse.conditioning import TextToImage, Tokenizer  # noqa: E402
from dlcourse.conditioning.text_to_image import matched_real_sets, prompt_accuracy  # noqa: E402
from dlcourse.data.shapes import POSITION_NAMES, SCALE_NAMES  # noqa: E402
from dlcourse.judge import load_judge  # noqa: E402
from dlcourse.metrics import frechet_distance  # noqa: E402
from dlcourse.pretrained import ASSET_DIR, load_pretrained  # noqa: E402
from dlcourse.samplers import sample_ddim  # noqa: E402
from dlcourse.schedules import get_schedule  # noqa: E402


def load(path: str, dual: bool):
    if dual:
        return ts.load_dual_file(ASSET_DIR / "sdxl_text_shapes16.pt" if path == "shipped" else path)
    unet, info = tc.load_file("shapes16_unet_text", ASSET_DIR / "shapes16_unet_text.pt" if path == "shipped" else path)
    clip, clip_info = load_pretrained(info["text_encoder"], device="cpu")
    return TextToImage(unet, clip.text_encoder, Tokenizer(**clip_info["tokenizer"])).eval(), info


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dual", help="a sdxl_text_shapes16 file, or 'shipped'")
    p.add_argument("single", help="a shapes16_unet_text file, or 'shipped'")
    p.add_argument("--n", type=int, default=256, help="prompts")
    p.add_argument("--ws", default="1,3", help="guidance scales, comma separated")
    p.add_argument("--seed", type=int, default=1, help="the starting noise")
    p.add_argument("--blue", type=int, default=64, help="held-out 'blue triangle' prompts (0: none)")
    args = p.parse_args()
    torch.set_num_threads(1)
    judge = load_judge(16)
    prompts, real_a, real_b = matched_real_sets(args.n, ["blue triangle"])
    n = len(prompts)
    feats_a = judge.features(real_a)
    floor = frechet_distance(judge.features(real_b), feats_a)
    g = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn(n, 3, 16, 16, generator=g)
    blue = [f"a {SCALE_NAMES[i % len(SCALE_NAMES)]} blue triangle {POSITION_NAMES[i % len(POSITION_NAMES)]}"
            for i in range(args.blue)]
    x_T_blue = torch.randn(len(blue), 3, 16, 16, generator=g)
    rows = []
    for label, path, dual in (("two encoders", args.dual, True), ("one encoder", args.single, False)):
        pipe, info = load(path, dual)
        schedule = get_schedule(info["schedule"], info["T"])
        print(f"{label}: {path}, {info['steps']} steps in {info['seconds']} s, final loss {info['final_loss']}",
              flush=True)
        cond, cond_blue = pipe.cond(prompts), pipe.cond(blue) if blue else None
        variants = {label: (cond, cond_blue)}
        if dual:                      # each path alone: the other one given the empty prompt's reading
            empty, empty_blue = pipe.cond([""] * n), pipe.cond([""] * len(blue)) if blue else None
            variants["tokens only (pooled of '')"] = (
                {**cond, "text_embeds": empty["text_embeds"]},
                {**cond_blue, "text_embeds": empty_blue["text_embeds"]} if blue else None)
            variants["pooled only (tokens of '')"] = (
                {**empty, "text_embeds": cond["text_embeds"]},
                {**empty_blue, "text_embeds": cond_blue["text_embeds"]} if blue else None)
        for name, (c, c_blue) in variants.items():
            for w in (float(v) for v in args.ws.split(",")):
                start = time.perf_counter()
                with torch.no_grad():
                    x = sample_ddim(pipe, x_T, schedule, 20, cond=c, guidance_scale=w,
                                    prediction_type=info["prediction_type"], progress=False)
                seconds = time.perf_counter() - start
                acc = prompt_accuracy(judge, x, prompts)
                fd = frechet_distance(judge.features(x), feats_a)
                blue_all = float("nan")
                if blue:
                    with torch.no_grad():
                        xb = sample_ddim(pipe, x_T_blue, schedule, 20, cond=c_blue, guidance_scale=w,
                                         prediction_type=info["prediction_type"], progress=False)
                    blue_all = prompt_accuracy(judge, xb, blue).all
                rows.append(f"| {name} | {info['steps']} | {w:g} | {acc.all:.3f} | {acc.all_with_position:.3f} | "
                            f"{acc.valid:.3f} | {fd:.2f} | {floor:.2f} | {blue_all:.3f} | {seconds:.1f} |")
                print(rows[-1], flush=True)
    print(f"\n{n} held-in prompts and {len(blue)} blue-triangle prompts, one image each, noise seed {args.seed}, "
          f"DDIM-20\n| model | steps | w | all | + pos. | valid | FD | floor | blue triangle all | s |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
