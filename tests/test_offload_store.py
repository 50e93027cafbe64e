"""`store=offload`: the relaxed policy's frames in a host pool, only a plan's worth on the device.

The CPU runs the same bookkeeping as CUDA (`SyncCopier`); `DeferredCopier` below stands in for the
CUDA side stream by running each copy only when something waits for it (or for a later copy), so a
missing wait shows up as wrong K/V. `StreamCopier` itself runs only on CUDA (last test). The
240-frame comparison of every store is in `test_attendable_store.py`.
"""

from __future__ import annotations

import pytest
import torch

from bench.generation import offload
from bench.generation.offload import OffloadReservoir, host_pool
from bench.generation.sampler import ARSampler
from memory_policies import ConfigError, Plan, RelaxedPolicy


class DeferredCopier:
    """A stream that runs nothing until waited for: `wait(h)` runs, in order, every copy up to `h`."""

    def __init__(self) -> None:
        self.queue: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self.done = 0

    def copy(self, pairs) -> int:
        self.queue.append(list(pairs))
        return len(self.queue)

    def wait(self, handle: int | None) -> None:
        for pairs in self.queue[self.done : handle or 0]:
            for dst, src in pairs:
                dst.copy_(src)
        self.done = max(self.done, handle or 0)


class UnwaitedCopier(DeferredCopier):
    """Waits for nothing: what a store that forgot to wait for its copies would read."""

    def wait(self, handle: int | None) -> None:
        pass


def attending(*frames: int) -> Plan:
    return Plan(attended=tuple((f, f) for f in frames), current=())


def kv(frame: int) -> torch.Tensor:
    """A frame's K (and V) in one layer: 1 batch row x 2 tokens x 1 head x 4 dims, distinct per frame."""
    return torch.full((1, 2, 1, 4), float(frame + 1))


class Scripted:
    """A planner that predicts `plans[t]` for the chunk at `t`."""

    def __init__(self, plans: dict[int, Plan]) -> None:
        self.plans = plans

    def __call__(self, t, view) -> Plan:
        return self.plans[t]


def small_store(plans: dict[int, Plan], device_frames: int = 4, copier=None) -> OffloadReservoir:
    return OffloadReservoir(2, 1, 2, 1, 4, capacity=6, device_frames=device_frames, planner=Scripted(plans),
                            copier=copier or DeferredCopier())


def commit(store: OffloadReservoir, frames: list[int]) -> None:
    """A clean pass over both layers: allocate, then write every layer."""
    store.allocate(frames)
    keys = torch.cat([kv(f) for f in frames], dim=1)
    for layer in range(store.num_layers):
        store.write(layer, frames, keys, keys)


def test_the_next_plans_frames_are_fetched_during_the_clean_pass_and_evicted_from_both_pools() -> None:
    store = small_store({1: attending(), 2: attending(0)})
    commit(store, [0])
    store.attend(attending())  # chunk 1 attends nothing: frame 0 leaves the device, stays on the host
    assert store.frames == [0] and list(store.slot_of) == []
    commit(store, [1])  # layer 0 predicts the plan of t = 2 and fetches frame 0 ahead
    assert set(store.slot_of) == {0, 1} and 0 in store.arriving
    store.attend(attending(0))
    assert store.prefetch == {"hits": 1, "misses": 0}
    k, v = store.gather(1, [0])
    assert torch.equal(k, kv(0)) and torch.equal(v, kv(0))
    assert store.device_peak_frames == 2 and store.peak_frames == 2
    store.keep([1])  # frame 0 leaves both pools; frame 1 is on the host only
    assert store.frames == [1] and list(store.slot_of) == [] and list(store.host_slot) == [1]
    with pytest.raises(RuntimeError, match=r"frames \[1\] are not on the device"):
        store.gather(0, [1])


def test_a_wrong_prediction_is_counted_and_the_attended_frame_fetched_at_once() -> None:
    store = small_store({1: attending(), 2: attending(), 3: attending(1)})
    for t in (0, 1):
        commit(store, [t])
        store.attend(attending())
    commit(store, [2])  # predicts frame 1 for t = 3, but the plan will attend frame 0
    assert 1 in store.arriving
    store.attend(attending(0))
    assert store.prefetch == {"hits": 0, "misses": 1, "mispredictions": 1}
    assert list(store.slot_of) == [0]  # the fetched frame 1 and the chunk left the device
    assert torch.equal(store.gather(0, [0])[0], kv(0))


def test_with_no_free_device_slot_the_frame_is_fetched_when_attended() -> None:
    store = small_store({1: attending(), 2: attending(0)}, device_frames=1)
    commit(store, [0])
    store.attend(attending())
    commit(store, [1])  # the one device slot holds the chunk: frame 0 cannot come ahead
    assert 0 not in store.slot_of
    store.attend(attending(0))
    assert store.prefetch == {"hits": 0, "misses": 1}
    assert torch.equal(store.gather(1, [0])[1], kv(0)) and store.device_peak_frames == 1


def test_host_slabs_hold_whole_frames_and_frames_in_every_slab_come_back(monkeypatch) -> None:
    frame = (2, 1, 2, 1, 4)  # layers, batch, tokens, heads, head_dim: 64 bytes in float32
    monkeypatch.setattr(offload, "SLAB_BYTES", 150)
    assert [slab.shape[0] for slab in host_pool(5, frame, torch.float32, pinned=False)] == [2, 2, 1]
    store = small_store({t: attending() for t in range(1, 6)} | {6: attending(0, 2, 4)}, device_frames=4)
    assert [slab.shape[0] for slab in store.host_k] == [2, 2, 2]
    for t in range(6):
        commit(store, [t])
        store.attend(store.predicted)  # frames 0, 2, 4 sit in the three slabs: one each
    assert store.prefetch == {"hits": 3, "misses": 0}
    for layer in (0, 1):
        k, v = store.gather(layer, [0, 2, 4])
        assert torch.equal(k, torch.cat([kv(0), kv(2), kv(4)], dim=1)) and torch.equal(v, k)


def test_synthesised_entries_are_refused() -> None:
    with pytest.raises(RuntimeError, match="real frames only"):
        small_store({}).store({"mean": (torch.zeros(2, 1, 1, 4), torch.zeros(2, 1, 1, 4))})


def test_device_slots_of_relaxed_presets() -> None:
    # a plan (2 sinks + 1 history + 1 tail) + the chunk (3) + the next plan's history, fetched ahead
    assert RelaxedPolicy(store="offload").device_frames() == 8
    assert RelaxedPolicy(store="offload", sink=0, history=0, tail=4, warmup=False).device_frames() == 4 + 3
    assert RelaxedPolicy(store="attendable").device_frames() is None
    assert RelaxedPolicy(store="release").device_frames() is None


def generate(backend, store: str, frames: int, copier=None) -> tuple[list[dict], torch.Tensor, object]:
    sampler = ARSampler(steps=[1000])  # one step + the clean pass: the reservoir protocol is what is tested
    if copier is not None:
        build = sampler.new_reservoir

        def with_copier(backend, policy, batch):
            reservoir = build(backend, policy, batch)
            reservoir.copier = copier
            return reservoir

        sampler.new_reservoir = with_copier
    trace: list[dict] = []
    latents, reservoir = sampler.generate(
        backend, RelaxedPolicy(store=store), backend.encode_text(["a red square moving fast"]), frames,
        torch.Generator(backend.device).manual_seed(1), trace=lambda chunk, t, plan: trace.append(plan.trace_fields() | {"t": t}),
    )
    return trace, latents, reservoir


def fetched_history(trace: list[dict]) -> int:
    """Frames a chunk attends that neither the previous plan nor the previous chunk left on the device."""
    count = 0
    for before, row in zip([{"attended": [], "t": 0}] + trace, trace):
        resident = {f for f, _ in before["attended"]} | set(range(before["t"], row["t"]))
        count += len({f for f, _ in row["attended"]} - resident)
    return count


def check_against_release(backend, frames: int, copier=None) -> OffloadReservoir:
    release_trace, release_latents, _ = generate(backend, "release", frames)
    trace, latents, reservoir = generate(backend, "offload", frames, copier)
    assert trace == release_trace
    assert torch.equal(latents, release_latents)
    assert reservoir.device_peak_frames == 8  # <= 10: the plan, the chunk and one frame fetched ahead
    hits = fetched_history(release_trace)
    assert hits > 0 and reservoir.prefetch == {"hits": hits, "misses": 0}
    return reservoir


def test_toy_model_generates_as_the_release_with_copies_deferred(random_toy) -> None:
    check_against_release(random_toy, 36, DeferredCopier())


def test_a_store_that_does_not_wait_for_its_copies_is_caught(random_toy) -> None:
    _, release_latents, _ = generate(random_toy, "release", 18)
    _, latents, _ = generate(random_toy, "offload", 18, UnwaitedCopier())
    assert not torch.equal(latents, release_latents)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="side stream, events and pinned memory need CUDA")
def test_cuda_streams_generate_as_the_release() -> None:
    from bench.toy.model import build_toy, toy_backend

    torch.manual_seed(0)
    backend = toy_backend(*build_toy(), device="cuda")
    reservoir = check_against_release(backend, 60)
    assert all(slab.is_pinned() for slab in reservoir.host_k) and reservoir.k.is_cuda


def test_the_rolling_samplers_dense_clean_pass_refuses_an_offloaded_store():
    from bench.generation.rolling_sampler import RollingSampler

    offloaded = RelaxedPolicy(sink=3, history=0, tail=3, warmup=False, reservoir=24, store="offload")
    with pytest.raises(ConfigError, match=r"^sampler.commit_window=21: .* host memory .*commit_window=null$"):
        RollingSampler().check(offloaded, 30)
    RollingSampler(commit_window=None).check(offloaded, 30)  # the window's own plan: fine
