"""Rolling Forcing's joint-window sampler (TencentARC/RollingForcing, `inference_rolling_forcing`).

One chunk per noise level is denoised jointly in a window: with the release's 5 steps, 5 chunks
(15 latent frames), the oldest at the lowest noise level and each younger chunk one level noisier,
the newest fresh noise. One DiT forward per window; then every chunk is re-noised one level down,
the oldest, now clean, is committed by a clean pass and leaves, and a fresh chunk enters. The first
and the last windows hold fewer chunks (the window filling up and draining).

Memory comes from the policy, planned once per window at the oldest chunk's first frame `t`; the
window's frames take the positions that follow the chunk's planned ones. With `policy=rolling_forcing`
(3 anchor frames re-roped just before a 3-frame tail) this is the release's attention: anchor, tail
and the 15-frame window, 21 frames. The clean pass of a committed chunk attends, as in the release,
densely to the `commit_window - chunk_frames` frames before it at absolute positions
(`commit_window: null` = the window's plan, as the chunk-wise sampler does).

One difference from the release: in the last windows, as the video's end drains the window, the
release lets the tail grow so that attention still spans 21 frames; here the memory stays the
policy's plan. It touches only the final denoising steps of the last four chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Iterator

import torch

from bench.models.backend import Backend
from bench.perf.profiler import Profiler
from memory_policies import ConfigError, DensePolicy, MemoryPolicy, Plan
from memory_policies.plan import MAX_MEMORY_FRAMES, Check, check_int, device_frames

from .reservoir import KVReservoir
from .sampler import SECONDS_PER_LATENT_FRAME, ARSampler, Generators, TraceFn, select, video_bar
from .wan_attention import AttentionState


@dataclass
class RollingSampler(ARSampler):
    commit_window: int | None = 21  # the release's attention size: the clean pass sees 18 frames + itself

    FIELDS: ClassVar[dict[str, Check]] = ARSampler.FIELDS | {
        "commit_window": partial(check_int, low=1, high=MAX_MEMORY_FRAMES, nullable=True)
    }
    # The policy this sampler was made for (docs/real_backends.md); bench.schema refuses another.
    MEMORY: ClassVar[str] = "rolling_forcing"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.commit_window is not None:
            check_int("sampler.commit_window", self.commit_window, self.chunk_frames)

    def check(self, policy: MemoryPolicy, num_latent_frames: int) -> None:
        """Also: the policy must keep every frame the clean passes read (simulated on frame ids)."""
        super().check(policy, num_latent_frames)
        if self.commit_window is None:
            return
        if device_frames(policy) is not None:
            raise ConfigError(
                f"sampler.commit_window={self.commit_window}: the clean pass reads frames outside the plan, which "
                f"policy {policy.name} keeps in host memory (offloaded store); use another store or commit_window=null"
            )
        frames: list[int] = []
        for t in range(0, num_latent_frames, self.chunk_frames):
            frames = policy.retain(frames, t)
            needed = range(max(0, t - self.commit_window + self.chunk_frames), t)
            missing = sorted(set(needed) - set(frames))
            if missing:
                raise ConfigError(
                    f"sampler.commit_window={self.commit_window}: the clean pass at t={t} reads frames "
                    f"{missing[:6]} that policy {policy.name} evicts; keep the last "
                    f"{self.commit_window - self.chunk_frames} frames or set sampler.commit_window=null"
                )
            frames += list(range(t, t + self.chunk_frames))

    @property
    def lookahead(self) -> int:
        return (len(self.sigmas) - 1) * self.chunk_frames  # a full window's younger chunks

    def commit_plan(self, plan: Plan, t: int, reservoir: KVReservoir) -> Plan:
        if self.commit_window is None:
            return plan
        return DensePolicy(window=self.commit_window, chunk=self.chunk_frames).plan(t, reservoir.view())

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
        """Generate the video one joint window after another, yielding each chunk as it is committed."""
        batch, (channels, height, width) = text.shape[0], backend.latent_shape
        sigmas, n = self.sigmas, self.chunk_frames
        depth, chunks = len(sigmas), num_latent_frames // n
        noisy: dict[int, torch.Tensor] = {}  # chunk index -> its latents at its current noise level
        with video_bar(num_latent_frames, progress) as bar:
            for window in range(chunks + depth - 1):
                first, last = max(0, window - depth + 1), min(chunks - 1, window)
                if last == window:
                    noisy[last] = self.noise((batch, channels, n, height, width), generator, backend)
                t = first * n
                plan = select(policy, reservoir, t, profiler)
                if plan.tokens is not None:  # its selection runs at a chunk's first forward, which a joint window lacks
                    raise ConfigError(
                        f"policy {policy.name} keeps a token-level memory, which the rolling sampler cannot run"
                    )
                members = range(first, last + 1)
                levels = [window - c for c in members]  # chunk c entered in window c at level 0
                start = plan.current_positions[-1] + 1
                positions = list(plan.current_positions) + list(range(start, start + (len(members) - 1) * n))
                with profiler.section("denoise"):
                    x = torch.cat([noisy[c] for c in members], dim=2)
                    velocity = backend.dit(
                        x, self.timesteps(levels, batch, backend), text,
                        AttentionState.planned(plan, reservoir, profiler, positions=positions),
                    )
                    for j, (c, level) in enumerate(zip(members, levels)):
                        part = slice(j * n, (j + 1) * n)
                        x0 = x[:, :, part] - sigmas[level] * velocity[:, :, part]
                        if level + 1 < depth:
                            noisy[c] = self.renoised(x0, velocity[:, :, part], sigmas[level + 1], generator, backend)
                        else:
                            clean = x0
                if levels[0] + 1 < depth:
                    continue
                # the oldest chunk reached the last level: commit it
                if trace is not None:
                    trace(first, t, plan)
                with profiler.section("clean_pass"):
                    state = partial(AttentionState.planned, self.commit_plan(plan, t, reservoir), reservoir, profiler)
                    self.commit(backend, reservoir, clean, t, text, state, generator)
                del noisy[first]
                yield t, clean
                profiler.end_chunk(t=t, attended=len(plan.attended))
                bar.update(n * SECONDS_PER_LATENT_FRAME)

    def timesteps(self, levels: list[int], batch: int, backend: Backend) -> torch.Tensor:
        """(batch,) when the window is at one level, else one timestep per token (frames x tokens)."""
        values = [self.sigmas[level] * 1000 for level in levels]
        if len(set(values)) == 1:
            return torch.full((batch,), values[0], device=backend.device)
        per_token = self.chunk_frames * backend.tokens_per_frame
        row = torch.tensor(values, device=backend.device).repeat_interleave(per_token)
        return row.expand(batch, -1)
