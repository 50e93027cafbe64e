r"""Train the embedded toy model: `python -m bench.toy.train [--steps 3000] [--export PATH]`.

Teacher forcing with every chunk supervised at once, as the AR sampler poses the task: a clip of
`window` latent frames is laid out as its clean frames followed by noisy copies of all of them.
Clean chunk k attends to clean chunks <= k (the K/V the clean pass writes at inference); noisy chunk
k attends to the clean chunks before it and to itself, at the same RoPE positions as its clean
copy. Rectified flow with a velocity target (what Wan predicts), weighted towards object pixels.
Resumes from `--checkpoint` when it exists (the same weights as an uninterrupted run); `--export`
writes the EMA weights the harness loads.

The defaults (3000 steps at object weight 8) do NOT reproduce the shipped weights
bench/toy/weights/toy.safetensors. Those are two runs, the second resuming the first's checkpoint
with a longer schedule and a lower object weight (see bench/toy/weights/MODEL_CARD.md):
  python -m bench.toy.train --steps 1800 --minutes 600 --checkpoint checkpoints/toy/last.pt
  python -m bench.toy.train --steps 2200 --object-weight 3 --minutes 600 \
      --checkpoint checkpoints/toy/last.pt --export bench/toy/weights/toy.safetensors
--minutes caps the wall time over all resumes of a checkpoint; a run it stops has trained fewer steps.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from bench.generation.wan_attention import AttentionState, PlannedWan

from .data import make_clip
from .model import WEIGHTS, build_toy, save_toy

CHUNK = 3


def block_causal_mask(window: int, tokens: int, chunk: int = CHUNK) -> torch.Tensor:
    """(2*window*tokens)^2 boolean mask for the [clean | noisy] layout described above."""
    c = torch.arange(window) // chunk
    clean_to_clean = c[:, None] >= c[None, :]
    noisy_to_clean = c[:, None] > c[None, :]
    noisy_to_noisy = c[:, None] == c[None, :]
    top = torch.cat([clean_to_clean, torch.zeros_like(clean_to_clean)], dim=1)
    bottom = torch.cat([noisy_to_clean, noisy_to_noisy], dim=1)
    frames = torch.cat([top, bottom], dim=0)
    return frames.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)


def shifted_sigmas(n: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Logit-normal noise levels pushed towards high noise by the flow-matching shift."""
    u = torch.sigmoid(torch.randn(n, generator=generator))
    return shift * u / (1 + (shift - 1) * u)


def make_batch(
    step: int, batch: int, horizon: int, window: int, start: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Clips of `horizon` frames, cut to `window` frames from latent frame `start` on."""
    clips = [make_clip(seed * 10_000_019 + step * batch + i, horizon) for i in range(batch)]
    video = torch.from_numpy(np.stack([c[0] for c in clips])).transpose(1, 2)  # B, 3, T, H, W
    mask = torch.from_numpy(np.stack([c[1] for c in clips])).transpose(1, 2)
    cut = slice(start, start + window)
    return video[:, :, cut], mask[:, :, cut], [c[2] for c in clips]


def training_loss(
    dit: PlannedWan,
    text: torch.nn.Module,
    video: torch.Tensor,
    obj_mask: torch.Tensor,
    prompts: list[str],
    generator: torch.Generator,
    args: argparse.Namespace,
    attn_mask: torch.Tensor,
    start: int = 0,
) -> torch.Tensor:
    b, _, window, h, w = video.shape
    tokens = dit.grid(h, w)[0] * dit.grid(h, w)[1]
    chunks = window // CHUNK
    sigma = shifted_sigmas(b * chunks, args.shift, generator).view(b, chunks)
    sigma_frames = sigma.repeat_interleave(CHUNK, 1)  # B, T
    noise = torch.randn(video.shape, generator=generator)
    s = sigma_frames[:, None, :, None, None]
    noisy = (1 - s) * video + s * noise
    # Clean context is sometimes slightly noised, so the model tolerates its own imperfect frames.
    ctx_sigma = torch.rand(b, generator=generator) * args.context_noise
    ctx_sigma = ctx_sigma * (torch.rand(b, generator=generator) < 0.5)
    c = ctx_sigma[:, None, None, None, None]
    context = (1 - c) * video + c * torch.randn(video.shape, generator=generator)
    latents = torch.cat([context, noisy], dim=2)
    t_frames = torch.cat([ctx_sigma[:, None].expand(b, window), sigma_frames], dim=1) * 1000
    timestep = t_frames.repeat_interleave(tokens, 1)
    state = AttentionState(positions=list(range(start, start + window)) * 2, mask=attn_mask)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        pred = dit(latents, timestep, text(text.tokenize(prompts)), state)[:, :, window:]
    target = noise - video
    weight = 1 + args.object_weight * obj_mask
    return (weight * (pred.float() - target) ** 2).sum() / (weight.sum() * 3)


def lr_factor(step: int, args: argparse.Namespace) -> float:
    """The learning rate of `step` as a multiple of --lr: linear warm-up, then cosine down to 0.1x at --steps."""
    if step < args.warmup:
        return (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3000, help="length of the cosine schedule")
    p.add_argument("--minutes", type=float, default=120.0,
                   help="stop (and checkpoint) after this wall time, summed over all resumes of the checkpoint")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--window", type=int, default=21, help="latent frames per clip (Self-Forcing's horizon)")
    p.add_argument("--short-window", type=int, default=12,
                   help="cheaper windows cut at a random chunk of the horizon, used on all but every third step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--shift", type=float, default=3.0)
    p.add_argument("--object-weight", type=float, default=8.0)
    p.add_argument("--context-noise", type=float, default=0.1)
    p.add_argument("--ema", type=float, default=0.998)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--checkpoint", type=Path, default=Path("checkpoints/toy/last.pt"))
    p.add_argument("--every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument("--export", type=Path, default=None, help=f"write EMA weights here at the end (e.g. {WEIGHTS})")
    args = p.parse_args(argv)
    if args.window % CHUNK or args.short_window % CHUNK or not 0 < args.short_window <= args.window:
        p.error(f"--window and --short-window must be multiples of {CHUNK}, short <= window")

    torch.manual_seed(args.seed)
    dit_raw, text = build_toy()
    dit = PlannedWan(dit_raw)
    ema_dit, ema_text = copy.deepcopy(dit_raw).eval(), copy.deepcopy(text).eval()
    params = list(dit_raw.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    generator = torch.Generator().manual_seed(args.seed)
    step, elapsed, losses = 0, 0.0, []
    if args.checkpoint.is_file():
        ck = torch.load(args.checkpoint, weights_only=False)
        dit_raw.load_state_dict(ck["dit"]), text.load_state_dict(ck["text"])
        ema_dit.load_state_dict(ck["ema_dit"]), ema_text.load_state_dict(ck["ema_text"])
        opt.load_state_dict(ck["opt"]), generator.set_state(ck["generator"])
        step, elapsed, losses = ck["step"], ck["elapsed"], ck["losses"]
        print(f"resumed from {args.checkpoint} at step {step} ({elapsed / 60:.1f} min)", flush=True)

    def save() -> None:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        ck = dict(dit=dit_raw.state_dict(), text=text.state_dict(), ema_dit=ema_dit.state_dict(),
                  ema_text=ema_text.state_dict(), opt=opt.state_dict(), generator=generator.get_state(),
                  step=step, elapsed=elapsed, losses=losses, args=vars(args))
        torch.save(ck, str(args.checkpoint) + ".tmp")
        os.replace(str(args.checkpoint) + ".tmp", args.checkpoint)

    for group in opt.param_groups:  # the schedule's base is --lr, on a resume too
        group["initial_lr"] = args.lr
    schedule = LambdaLR(opt, partial(lr_factor, args=args), last_epoch=step - 1)  # sets the lr of `step`

    tokens = dit.grid(32, 32)[0] * dit.grid(32, 32)[1]
    masks = {n: block_causal_mask(n, tokens) for n in {args.window, args.short_window}}
    start = time.perf_counter() - elapsed
    bar = tqdm(total=args.steps, initial=step, desc="train_toy", mininterval=30)
    while step < args.steps and time.perf_counter() - start < args.minutes * 60:
        # Every third step sees the whole horizon from frame 0; the others a short window anywhere in it.
        window = args.window if step % 3 == 2 else args.short_window
        offset = CHUNK * int(torch.randint((args.window - window) // CHUNK + 1, (1,), generator=generator))
        video, obj_mask, prompts = make_batch(step, args.batch, args.window, window, offset, args.seed)
        loss = training_loss(dit, text, video, obj_mask, prompts, generator, args, masks[window], offset)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        # EMA with a warm-up, so a short run is not dragged to its init. Not diffusers' EMAModel: its first
        # update copies the weights (decay 0) where the shipped weights had 0.1, so it would not reproduce them.
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, live in ((ema_dit, dit_raw), (ema_text, text)):
                for pe, pl in zip(ema.parameters(), live.parameters()):
                    pe.lerp_(pl, 1 - decay)
        step += 1
        losses.append(loss.item())
        elapsed = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{schedule.get_last_lr()[0]:.2e}")
        if step % args.every == 0:
            save()
    bar.close()
    save()
    final = float(np.mean(losses[-50:])) if losses else float("nan")
    print(f"stopped at step {step}, {elapsed / 60:.1f} min, loss (mean of last 50) {final:.4f}", flush=True)
    if args.export:
        meta = dict(step=step, minutes=round(elapsed / 60, 1), final_loss=round(final, 4), args=vars(args) | {
            "checkpoint": str(args.checkpoint), "export": str(args.export)})
        save_toy(args.export, ema_dit, ema_text, meta)
        print(f"exported EMA weights to {args.export}", flush=True)


if __name__ == "__main__":
    main()
