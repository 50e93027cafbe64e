"""The shared autoregressive sampler: chunk by chunk, few-step flow matching, a clean pass per chunk.

Self-Forcing's schedule: each chunk of `chunk_frames` latent frames starts from noise, is denoised
over `steps` (timesteps in [0, 1000], warped by the flow-matching `shift`), predicting x0 from the
model's velocity (x0 = x_t - sigma * v) and re-noising it with fresh noise to the next level; then a
clean pass at timestep `context_noise` (0) writes the chunk's K/V into the reservoir. The memory
policy is consulted once per chunk (`select`): `plan` fixes which entries every step, every layer
and the clean pass of that chunk attend to, then `retain` evicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable, ClassVar, Iterator, Sequence

import torch
from tqdm import tqdm

from bench.models.backend import Backend
from bench.perf.profiler import Profiler
from memory_policies import ConfigError, MemoryPolicy, Plan
from memory_policies.plan import (
    MAX_MEMORY_FRAMES,
    Check,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_timesteps,
    device_frames,
)

from .offload import OffloadReservoir
from .reservoir import KVReservoir
from .wan_attention import AttentionState, PreparedMemory

TraceFn = Callable[[int, int, Plan], None]  # (chunk index, t, plan)
Generators = torch.Generator | Sequence[torch.Generator]  # one for the batch, or one per batch row
SECONDS_PER_LATENT_FRAME = 0.25  # 4 video frames at 16 fps on Wan; 1 frame at 4 fps on the toy


def select(policy: MemoryPolicy, reservoir: KVReservoir, t: int, profiler: Profiler) -> Plan:
    """The per-chunk selection step of every sampler (and of the attention benchmark), timed as
    "selection": plan chunk `t` on the reservoir as the last chunk left it, compute the plan's
    synthesised entries while their sources are present, evict what `policy` no longer keeps,
    then store the synthesised entries and ready the plan's entries where attention reads them."""
    with profiler.section("selection"):
        plan = policy.plan(t, reservoir.view())
        synthesised = reservoir.averaged(plan.synthesise)
        reservoir.keep(policy.retain(reservoir.frames, t))
        reservoir.store(synthesised)
        reservoir.attend(plan)
        return plan


def with_kept_tokens(plan: Plan, reservoir: KVReservoir) -> Plan:
    """`plan` with what its token memory holds now (per batch row and layer), for the trace."""
    if plan.tokens is None:
        return plan
    return replace(plan, kept_tokens=reservoir.tokens.kept(plan.tokens.entry, reservoir.batch))


def attended_frames(plan: Plan, reservoir: KVReservoir) -> float:
    """Latent frames' worth of memory a chunk attends: its entries plus the rows its token memory
    holds (layer 0, batch row 0: every layer and row holds the same number at a policy's defaults)."""
    if plan.tokens is None:
        return len(plan.attended)
    rows = reservoir.tokens.get(plan.tokens.entry, 0)
    return len(plan.attended) + int(rows.valid[0].sum()) / reservoir.frame_shape[0]


def flow_sigmas(steps: list[int], shift: float, warp: bool = True) -> list[float]:
    """Noise levels of a timestep list: sigma = shift*s / (1 + (shift-1)*s) with s = t/1000."""
    levels = [t / 1000 for t in steps]
    return [shift * s / (1 + (shift - 1) * s) for s in levels] if warp else levels


@dataclass
class ARSampler:
    chunk_frames: int = 3
    steps: list[int] = field(default_factory=lambda: [1000, 750, 500, 250])
    shift: float = 5.0
    warp: bool = True
    renoise: str = "fresh"  # "fresh": new noise between steps (Self-Forcing); "ode": reuse the predicted noise
    context_noise: float = 0.0  # timestep of the clean pass
    prepare_memory: bool = True  # gather and rope a chunk's memory K/V once, in its first forward (PreparedMemory)

    # The type and range of each field, checked here and, before anything is built, by bench.schema.
    FIELDS: ClassVar[dict[str, Check]] = {
        "chunk_frames": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "steps": check_timesteps,
        "shift": partial(check_number, low=0.0, high=1000.0, low_open=True),
        "warp": check_bool,
        "renoise": partial(check_choice, allowed=("fresh", "ode")),
        "context_noise": partial(check_number, low=0.0, high=999.0),
        "prepare_memory": check_bool,
    }

    def __post_init__(self) -> None:
        for key, check in self.FIELDS.items():
            setattr(self, key, check(f"sampler.{key}", getattr(self, key)))

    @property
    def sigmas(self) -> list[float]:
        return flow_sigmas(self.steps, self.shift, self.warp)

    @property
    def lookahead(self) -> int:
        """Latent frames denoised together with a chunk after it (their queries reach farther back)."""
        return 0

    def check(self, policy: MemoryPolicy, num_latent_frames: int) -> None:
        if policy.chunk != self.chunk_frames:
            raise ConfigError(f"policy.chunk ({policy.chunk}) must equal sampler.chunk_frames ({self.chunk_frames})")
        if num_latent_frames < 1 or num_latent_frames % self.chunk_frames:
            raise ConfigError(
                f"num_latent_frames must be a positive multiple of the chunk ({self.chunk_frames}), got {num_latent_frames}"
            )

    def noise(self, shape: Sequence[int], generator: Generators, backend: Backend) -> torch.Tensor:
        """Gaussian noise drawn in float32 (one random stream for every dtype), in the backend's dtype.
        With one generator per batch row, row i is drawn from generator i alone, so a video's noise does
        not depend on the batch it is generated in."""
        if isinstance(generator, torch.Generator):
            draw = torch.randn(shape, generator=generator, device=backend.device, dtype=torch.float32)
        else:
            row = (1, *shape[1:])
            draw = torch.cat([torch.randn(row, generator=g, device=backend.device, dtype=torch.float32) for g in generator])
        return draw.to(backend.dtype)

    def renoised(
        self, x0: torch.Tensor, velocity: torch.Tensor, sigma: float, generator: Generators, backend: Backend
    ) -> torch.Tensor:
        """The predicted x0 taken back to noise level `sigma` (fresh noise, or the noise the prediction implies)."""
        noise = self.noise(x0.shape, generator, backend) if self.renoise == "fresh" else x0 + velocity
        return (1 - sigma) * x0 + sigma * noise

    def commit(
        self,
        backend: Backend,
        reservoir: KVReservoir,
        x0: torch.Tensor,
        t: int,
        text: torch.Tensor,
        state: Callable[..., AttentionState],
        generator: Generators,
    ) -> None:
        """The clean pass: a forward at `context_noise` that writes the chunk's K/V as frames t, t+1, ...
        (its output is not used, so it stops once the last layer has written them)."""
        frames = list(range(t, t + x0.shape[2]))
        reservoir.allocate(frames)
        c = self.context_noise / 1000
        context = x0 if c == 0 else (1 - c) * x0 + c * self.noise(x0.shape, generator, backend)
        timestep = torch.full((x0.shape[0],), self.context_noise, device=backend.device)
        backend.dit(context, timestep, text, state(write_frames=frames, output=False))

    def new_reservoir(self, backend: Backend, policy: MemoryPolicy, batch: int) -> KVReservoir:
        """The reservoir `policy` asks for: every held frame on the device, or, when it has a
        `device_frames()` that is not None, only that many there and the rest in host memory."""
        cfg = backend.dit.config
        sizes = {
            "num_layers": cfg.num_layers,
            "batch": batch,
            "tokens_per_frame": backend.tokens_per_frame,
            "heads": cfg.num_attention_heads,
            "head_dim": cfg.attention_head_dim,
            "capacity": policy.max_frames(),
            "dtype": backend.dtype,
            "device": backend.device,
        }
        on_device = device_frames(policy)
        if on_device is None:
            return KVReservoir(**sizes)
        return OffloadReservoir(**sizes, device_frames=on_device, planner=policy.plan)

    def prepare(self, backend: Backend, policy: MemoryPolicy, text: torch.Tensor, num_latent_frames: int) -> KVReservoir:
        """Check the request; an empty reservoir for the batch of encoded prompts `text`."""
        self.check(policy, num_latent_frames)
        return self.new_reservoir(backend, policy, text.shape[0])

    @torch.no_grad()
    def generate(
        self,
        backend: Backend,
        policy: MemoryPolicy,
        text: torch.Tensor,
        num_latent_frames: int,
        generator: Generators,
        trace: TraceFn | None = None,
        profiler: Profiler | None = None,
        progress: str | None = None,
    ) -> tuple[torch.Tensor, KVReservoir]:
        """Latents (batch, C, num_latent_frames, h, w) for the encoded prompts `text`, and the reservoir:
        `chunks` collected into one tensor, for short videos (a run streams the chunks instead)."""
        profiler = profiler or Profiler(backend.device)
        reservoir = self.prepare(backend, policy, text, num_latent_frames)
        parts = dict(self.chunks(backend, policy, text, num_latent_frames, reservoir, generator, trace, profiler, progress))
        profiler.record_reservoir(reservoir)
        return torch.cat([parts[t] for t in sorted(parts)], dim=2), reservoir

    @torch.no_grad()
    def chunks(
        self,
        backend: Backend,
        policy: MemoryPolicy,
        text: torch.Tensor,
        num_latent_frames: int,
        reservoir: KVReservoir,
        generator: Generators,
        trace: TraceFn | None,
        profiler: Profiler,
        progress: str | None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Generate the video chunk after chunk, yielding each chunk's first frame `t` and its clean
        latents (batch, C, chunk_frames, h, w) as soon as its clean pass has run: nothing of the whole
        video is held here."""
        n = self.chunk_frames
        with video_bar(num_latent_frames, progress) as bar:
            for index, t in enumerate(range(0, num_latent_frames, n)):
                x0, attended = self.chunk(backend, policy, text, t, index, reservoir, generator, trace, profiler)
                yield t, x0
                profiler.end_chunk(t=t, attended=attended)  # after the caller's work on it (decoding, writing)
                bar.update(n * SECONDS_PER_LATENT_FRAME)

    def chunk(
        self,
        backend: Backend,
        policy: MemoryPolicy,
        text: torch.Tensor,
        t: int,
        index: int,
        reservoir: KVReservoir,
        generator: Generators,
        trace: TraceFn | None,
        profiler: Profiler,
    ) -> tuple[torch.Tensor, float]:
        """One chunk from `t`: plan, denoise, trace, clean pass; its clean latents and the frames' worth
        of memory it attended."""
        batch, (channels, height, width) = text.shape[0], backend.latent_shape
        dit, device, n = backend.dit, backend.device, self.chunk_frames
        sigmas = self.sigmas
        plan = select(policy, reservoir, t, profiler)
        prepared = PreparedMemory(profiler) if self.prepare_memory else None  # the plan's; every forward reuses it

        def state(**extra) -> AttentionState:
            return AttentionState.planned(plan, reservoir, profiler, prepared=prepared, **extra)

        x = self.noise((batch, channels, n, height, width), generator, backend)
        with profiler.section("denoise"):
            for i, sigma in enumerate(sigmas):
                timestep = torch.full((batch,), sigma * 1000, device=device)
                velocity = dit(x, timestep, text, state(select_tokens=i == 0))  # step 1 selects tokens
                x0 = x - sigma * velocity
                if i + 1 < len(sigmas):
                    x = self.renoised(x0, velocity, sigmas[i + 1], generator, backend)
        if trace is not None:  # after step 1, so that a token memory's selection is known
            trace(index, t, with_kept_tokens(plan, reservoir))
        with profiler.section("clean_pass"):
            self.commit(backend, reservoir, x0, t, text, state, generator)
        return x0, attended_frames(plan, reservoir)


def video_bar(num_latent_frames: int, label: str | None) -> tqdm:
    """A progress bar in seconds of video generated, its rate in seconds of video per second of wall
    time; silent without a `label`. Advance it by `SECONDS_PER_LATENT_FRAME` per latent frame."""
    return tqdm(
        total=num_latent_frames * SECONDS_PER_LATENT_FRAME, desc=label, disable=label is None, leave=False,
        unit=" s video", bar_format="{desc}: {n:.1f}/{total:.1f} s of video |{bar}| [{elapsed}<{remaining}, {rate_noinv_fmt}]",
    )
