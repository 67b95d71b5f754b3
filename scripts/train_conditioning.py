"""Train notebook 07's shipped checkpoints for text, save them, print their SHA-256 and measure them.

    .venv/bin/python scripts/train_conditioning.py clip_shapes16          # the small CLIP (~2 min)
    .venv/bin/python scripts/train_conditioning.py shapes16_unet_text     # the text-conditioned U-Net (~20 min)
    .venv/bin/python scripts/train_conditioning.py                        # both, in that order
    .venv/bin/python scripts/train_conditioning.py --evaluate-only        # measure the files in assets/

``clip_shapes16``: ``dlcourse.conditioning.CLIP`` (text encoder: width 64, 2 blocks, 4 heads; image
encoder: convs 32, 64, 64, embedding 64) trained by ``train_clip`` (symmetric InfoNCE, learned
temperature) on the shapes captions, every "blue triangle" held out.

``shapes16_unet_text``: a ``UNet`` with cross-attention to the frozen text encoder's tokens at the 4x4
and 8x8 resolutions (``context_dim=64, cross_attention_levels=2``), started from the weights of the
shipped unconditional ``shapes16_unet`` (the new cross-attention blocks start as the identity, so the
starting model draws shapes as well as that one, and training only has to teach it to read), then
trained on every weight with caption dropout to the empty prompt (p = 0.15) for classifier-free
guidance, v-prediction on the cosine schedule as the model it starts from. The same "blue triangle"
captions are held out, so neither the text encoder nor the U-Net ever saw a blue triangle: prompting
for one measures compositional generalisation (``bench/prompt_following.py``).

Each recipe is fixed in steps (never seconds), with its seeds and 1 CPU thread, fp32; its info records
the recipe, the held-out combinations, the tokenizer, and for the U-Net the text encoder's and the
starting checkpoint's SHA-256. The files are written with ``save`` of ``train_checkpoints.py``; paste
the printed digests into ``PRETRAINED`` in dlcourse/pretrained.py.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from dataclasses import asdict, dataclass, field

import torch

from dlcourse.checkpoints import build_model, load_checkpoint, model_config, save_checkpoint, sha256_file
from dlcourse.conditioning import CLIP, ImageEncoder, ImageEncoderConfig, TextEncoder, TextEncoderConfig, Tokenizer
from dlcourse.conditioning import retrieval_top1, train_clip
from dlcourse.conditioning.text_to_image import TextToImage, held_out, prompt_accuracy, train_text_to_image
from dlcourse.data import make_shapes
from dlcourse.loop import TrainConfig
from dlcourse.models import UNet, UNetConfig
from dlcourse.pretrained import ASSET_DIR, load_pretrained, pretrained_path
from dlcourse.samplers import sample_ddim
from dlcourse.schedules import get_schedule

IMAGE_SIZE = 16
HOLD_OUT = ("blue triangle",)
EVAL_SEED = 1                                # shapes seeds the training never used


@dataclass(frozen=True)
class ClipRecipe:
    n_train: int = 20_000
    data_seed: int = 0
    hold_out: tuple = HOLD_OUT
    text: dict = field(default_factory=lambda: dict(dim=64, depth=2, heads=4))
    image: dict = field(default_factory=lambda: dict(channels=(32, 64, 64), embed_dim=64))
    steps: int = 2000
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    threads: int = 1


@dataclass(frozen=True)
class TextUNetRecipe:
    n_train: int = 20_000
    data_seed: int = 0
    hold_out: tuple = HOLD_OUT
    text_encoder: str = "clip_shapes16"
    init: str = "shapes16_unet"              # the shipped unconditional U-Net whose weights it starts from
    cross_attention_levels: int = 2
    schedule: str = "cosine"
    T: int = 1000
    prediction_type: str = "v_prediction"
    p_uncond: float = 0.15
    steps: int = 2800
    batch_size: int = 128
    lr: float = 8e-4
    lr_schedule: str = "cosine"
    ema_decay: float = 0.999
    seed: int = 0
    threads: int = 1


RECIPES = {"clip_shapes16": ClipRecipe(), "shapes16_unet_text": TextUNetRecipe()}


def command(name: str) -> str:
    return f"python scripts/train_conditioning.py {name}"


def load_file(name: str, path=None) -> tuple[torch.nn.Module, dict]:
    """A checkpoint this script wrote, checked against its ``.sha256`` sidecar (its digest may not be
    in dlcourse/pretrained.py yet), and its info: the training record and the saved config."""
    path = ASSET_DIR / f"{name}.pt" if path is None else path
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    info = {**(checkpoint.get("extra") or {}), **{k: v for k, v in config.items() if k != "kwargs"},
            "sha256": sha256_file(path)}
    return build_model(checkpoint).eval(), info


def train_data(r) -> tuple[torch.Tensor, list[str]]:
    """The recipe's training images and captions, the held-out combinations removed."""
    data = make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed)
    keep = ~held_out(data.captions, r.hold_out)
    return data.images[keep], [c for c, k in zip(data.captions, keep.tolist()) if k]


def train_clip_shapes16(steps: int | None, out: str | None) -> None:
    r = RECIPES["clip_shapes16"]
    torch.set_num_threads(r.threads)
    tok = Tokenizer.default()
    images, captions = train_data(r)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r.seed)
        clip = CLIP(TextEncoder(TextEncoderConfig(vocab_size=len(tok), max_length=tok.max_length, **r.text)),
                    ImageEncoder(ImageEncoderConfig(image_size=IMAGE_SIZE, **r.image)))
    steps = steps or r.steps
    config = TrainConfig(steps=steps, lr=r.lr, ema_decay=None, precision="fp32", device="cpu", seed=r.seed,
                         progress=True)
    result = train_clip(clip, images, captions, tok, batch_size=r.batch_size, config=config)
    tail = result.losses[-100:]
    print(f"[clip_shapes16] {result.steps} steps in {result.seconds:.0f} s, final loss {sum(tail) / len(tail):.3f}, "
          f"temperature 1/{clip.logit_scale.exp().item():.1f}", flush=True)
    extra = dict(recipe=_plain(r), n_kept=len(captions), tokenizer=tok.get_config(), image_size=IMAGE_SIZE,
                 steps=result.steps, seconds=round(result.seconds, 1), threads=torch.get_num_threads(),
                 final_loss=round(sum(tail) / len(tail), 4), torch_version=str(torch.__version__),
                 command=command("clip_shapes16"))
    _save("clip_shapes16", clip.cpu(), model_config(clip), extra, out)


def train_unet_text(steps: int | None, out: str | None) -> None:
    r = RECIPES["shapes16_unet_text"]
    torch.set_num_threads(r.threads)
    clip, clip_info = load_file(r.text_encoder)
    base, base_info = load_pretrained(r.init, device="cpu")
    if base_info["prediction_type"] != r.prediction_type or base_info["schedule"] != r.schedule:
        raise ValueError(f"{r.init}: expected a {r.prediction_type} model on the {r.schedule} schedule, got "
                         f"{base_info['prediction_type']} on {base_info['schedule']}")
    config = UNetConfig(**{**base.get_config(), "context_dim": clip.text_encoder.config.dim,
                           "cross_attention_levels": r.cross_attention_levels})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(r.seed)
        unet = UNet(config)
    missing, unexpected = unet.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".cross." in k or "norm_cross" in k for k in missing), (missing, unexpected)
    print(f"[shapes16_unet_text] {sum(p.numel() for p in unet.parameters()) / 1e6:.3f}M parameters, "
          f"{len(missing)} new tensors (cross-attention) beside {r.init}'s weights", flush=True)
    pipe = TextToImage(unet, clip.text_encoder, Tokenizer(**clip_info["tokenizer"]))
    data = make_shapes(r.n_train, size=IMAGE_SIZE, seed=r.data_seed)
    steps = steps or r.steps
    train_config = TrainConfig(steps=steps, lr=r.lr, lr_schedule=r.lr_schedule, ema_decay=r.ema_decay,
                               precision="fp32", device="cpu", seed=r.seed, channels_last=True, progress=True)
    result = train_text_to_image(pipe, data.images, data.captions, get_schedule(r.schedule, r.T),
                                 p_uncond=r.p_uncond, hold_out=r.hold_out, batch_size=r.batch_size,
                                 prediction_type=r.prediction_type, config=train_config)
    tail = result.losses[-200:]
    print(f"[shapes16_unet_text] {result.steps} steps in {result.seconds:.0f} s "
          f"({result.steps_per_second:.2f} steps/s); mean loss of the last 200 steps {sum(tail) / len(tail):.4f}",
          flush=True)
    ema = result.ema_model.unet.float().cpu()
    config = model_config(ema, prediction_type=r.prediction_type, schedule=r.schedule, T=r.T)
    extra = dict(recipe=_plain(r), hold_out=list(r.hold_out), data="shapes", image_size=IMAGE_SIZE,
                 n_train=r.n_train, data_seed=r.data_seed, num_classes=None, clip_x0=True,
                 p_uncond=r.p_uncond, steps=result.steps, seed=r.seed, batch_size=r.batch_size, lr=r.lr,
                 ema_decay=r.ema_decay, text_encoder=r.text_encoder,
                 text_encoder_sha256=clip_info["sha256"],
                 init=r.init, init_sha256=sha256_file(pretrained_path(r.init)), precision=result.precision,
                 threads=torch.get_num_threads(), seconds=round(result.seconds, 1),
                 final_loss=round(sum(tail) / len(tail), 5), torch_version=str(torch.__version__),
                 command=command("shapes16_unet_text"))
    _save("shapes16_unet_text", ema, config, extra, out)


def _plain(recipe) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(recipe).items()}


def _save(name: str, model, config: dict, extra: dict, out: str | None) -> None:
    """Write ``out``, or the shipped file, and print its digest, to paste into dlcourse/pretrained.py.

    The weights are stored in float16, half the bytes (the shipped files must stay under 20 MB in all);
    loading copies them into the model's float32 parameters. The rounding moves each weight by at most
    1 part in 2048, and the measurements are made on the stored weights.
    """
    path = ASSET_DIR / f"{name}.pt" if out is None else out
    digest = save_checkpoint(path, copy.deepcopy(model).half(), config, extra={**extra, "stored_dtype": "float16"})
    print(f"[{name}] saved {path} ({Path(path).stat().st_size / 1e6:.2f} MB)\n[{name}] SHA-256 {digest}", flush=True)


@torch.no_grad()
def evaluate(name: str, n: int = 256, ws=(1.0, 3.0), path=None) -> None:
    """Print the checkpoint's measurements on seeds it never trained on."""
    test = make_shapes(n, size=IMAGE_SIZE, seed=EVAL_SEED)
    if name == "clip_shapes16":
        clip, info = load_file(name, path)
        tok = Tokenizer(**info["tokenizer"])
        sets = [slice(i, i + 100) for i in range(0, n - 99, 100)]
        top1 = [retrieval_top1(clip.text_encoder(*tok.encode(test.captions[s])).pooled,
                               clip.image_encoder(test.images[s]), test.captions[s]) for s in sets]
        print(f"[{name}] caption -> image top-1 (the same caption counts) among 100 held-out pairs: "
              f"{sum(top1) / len(top1):.3f} (chance ~0.01-0.02)")
        return
    from dlcourse.judge import load_judge
    unet, info = load_file(name, path)
    clip, clip_info = load_file(info["text_encoder"])
    pipe = TextToImage(unet, clip.text_encoder, Tokenizer(**clip_info["tokenizer"])).eval()
    judge = load_judge(16)
    schedule = get_schedule(info["schedule"], info["T"])
    prompts = [c for c, h in zip(test.captions, held_out(test.captions, info["hold_out"]).tolist()) if not h]
    x_T = torch.randn(len(prompts), 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(EVAL_SEED))
    for w in ws:
        start = time.perf_counter()
        x = sample_ddim(pipe, x_T, schedule, 20, cond=pipe.cond(prompts), guidance_scale=w,
                        prediction_type=info["prediction_type"], progress=False)
        print(f"[{name}] w = {w:g}, DDIM-20, {len(prompts)} held-in prompts ({time.perf_counter() - start:.0f} s): "
              f"{prompt_accuracy(judge, x, prompts)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"checkpoints to train (default: all of {list(RECIPES)})")
    parser.add_argument("--evaluate-only", action="store_true", help="measure the files in assets/, train nothing")
    parser.add_argument("--steps", type=int, default=None, help="a shorter run for trying the recipe out")
    parser.add_argument("--out", default=None, help="write here instead of the shipped file (with --steps)")
    parser.add_argument("--n-eval", type=int, default=256, help="prompts per measurement")
    args = parser.parse_args()
    names = args.names or list(RECIPES)
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown checkpoint(s) {unknown}; choose from {list(RECIPES)}")
    if args.out and len(names) != 1:
        parser.error("--out: name one checkpoint")
    for name in names:
        if not args.evaluate_only:
            {"clip_shapes16": train_clip_shapes16, "shapes16_unet_text": train_unet_text}[name](args.steps, args.out)
        evaluate(name, args.n_eval, path=args.out)


if __name__ == "__main__":
    main()
