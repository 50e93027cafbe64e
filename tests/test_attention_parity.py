"""The planned attention path against diffusers' own Wan forward (the audiocraft style of test)."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from bench.generation.reservoir import KVReservoir
from bench.generation.sampler import select
from bench.generation.wan_attention import AttentionState, PlannedWan, apply_rope, rope_tables
from bench.perf.profiler import Profiler
from bench.toy.model import DIT_CONFIG, ToyTextEncoder, toy_backend
from memory_policies import DensePolicy, Plan, RelaxedPolicy

TOKENS = 64  # 32x32 frames, patch 4


class MaskedStockProcessor(WanAttnProcessor):
    """diffusers' unmodified Wan self-attention, with a fixed boolean mask."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        return super().__call__(attn, hidden_states, encoder_hidden_states, self.mask, rotary_emb)


def stock_copy(backend, mask=None):
    ref = copy.deepcopy(backend.dit.transformer)
    for block in ref.blocks:
        block.attn1.set_processor(WanAttnProcessor() if mask is None else MaskedStockProcessor(mask))
        block.attn2.set_processor(WanAttnProcessor())
    return ref


def test_rope_tables_equal_diffusers_table(random_toy):
    rope = random_toy.dit.transformer.rope
    cos, sin = rope(torch.zeros(1, 3, 5, 32, 32))
    freqs = rope_tables(rope, range(5), 8, 8, torch.device("cpu"))
    assert freqs.dtype == torch.complex64
    assert torch.equal(cos.float()[..., 0::2], freqs.real) and torch.equal(sin.float()[..., 1::2], freqs.imag)


def test_rope_rotation_is_diffusers_formula_bit_for_bit(random_toy):
    """diffusers' `apply_rotary_emb` of Wan (written out here) against the complex multiplication."""
    rope = random_toy.dit.transformer.rope
    cos, sin = (table.float() for table in rope(torch.zeros(1, 3, 5, 32, 32)))
    x = torch.randn(2, cos.shape[1], 4, 32) * 10
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    expected = torch.empty_like(x)
    expected[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    expected[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    assert torch.equal(apply_rope(x, rope_tables(rope, range(5), 8, 8, torch.device("cpu"))), expected)


@torch.no_grad()
@pytest.mark.parametrize("per_token", [False, True])
def test_single_chunk_with_empty_reservoir_equals_stock_forward(random_toy, per_token):
    """`PlannedWan`'s forward is diffusers' written out: bit for bit, with one timestep per video and
    with one per token (the rolling sampler's)."""
    ref = stock_copy(random_toy)
    x = torch.randn(2, 3, 3, 32, 32)
    timestep = torch.tensor([937.5, 250.0])
    if per_token:
        timestep = timestep[:, None].repeat(1, 3 * TOKENS) - torch.arange(3 * TOKENS) / 8
    text = random_toy.encode_text(["a red square moving fast", "a blue circle moving slow"])
    expected = ref(x, timestep, text, return_dict=False)[0]
    got = random_toy.dit(x, timestep, text, AttentionState(positions=[0, 1, 2]))
    assert torch.equal(got, expected)


def test_image_conditioned_wan_is_refused_in_one_line():
    with pytest.raises(ValueError, match="image-conditioned"):
        PlannedWan(WanTransformer3DModel(**DIT_CONFIG, image_dim=16))


def stream_clean_passes(backend, policy, clean, text, reservoir=None):
    """Clean passes chunk by chunk through policy + reservoir; returns outputs and the plans."""
    cfg = backend.dit.config
    if reservoir is None:
        reservoir = KVReservoir(cfg.num_layers, clean.shape[0], TOKENS, cfg.num_attention_heads,
                                cfg.attention_head_dim, policy.max_frames())
    outputs, plans = [], []
    for t in range(0, clean.shape[2], 3):
        plan = select(policy, reservoir, t, Profiler(enabled=False))
        frames = list(range(t, t + 3))
        reservoir.allocate(frames)
        state = AttentionState(plan.current_positions, plan.frames, plan.positions, reservoir, write_frames=frames)
        outputs.append(backend.dit(clean[:, :, t : t + 3], torch.zeros(clean.shape[0]), text, state))
        plans.append(plan)
    return torch.cat(outputs, dim=2), plans


@torch.no_grad()
def test_text_keys_values_and_conditions_are_computed_once_per_video(random_toy):
    """Every clean pass of a streamed video equals diffusers' forward, while what depends only on the
    prompts and the timestep comes from the video's reservoir after its first forward: attn2's
    `to_k` runs once per layer, the condition embedder once (one timestep value), and diffusers'
    own RoPE tables are never built."""
    torch.manual_seed(3)
    clean = torch.randn(2, 3, 9, 32, 32)
    text = random_toy.encode_text(["a green circle moving slow", "a red square moving fast"])
    model = random_toy.dit.transformer
    calls = {"to_k": 0, "conditions": 0, "rope": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    modules = [(block.attn2.to_k, "to_k") for block in model.blocks]
    modules += [(model.condition_embedder, "conditions"), (model.rope, "rope")]
    hooks = [module.register_forward_hook(counter(name)) for module, name in modules]
    try:
        streamed, plans = stream_clean_passes(random_toy, DensePolicy(window=None), clean, text)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(plans) == 3 and calls == {"to_k": len(model.blocks), "conditions": 1, "rope": 0}
    ref = stock_copy(random_toy, mask_from_plans(plans, 9))
    torch.testing.assert_close(streamed, ref(clean, torch.zeros(2), text, return_dict=False)[0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_clean_pass_without_output_stores_the_same_kv(random_toy):
    """`output=False` ends the forward after the last layer's write: None back, the same K/V stored."""
    torch.manual_seed(4)
    clean = torch.randn(1, 3, 6, 32, 32)
    text = random_toy.encode_text(["a blue circle moving slow"])
    cfg = random_toy.dit.config
    stores = []
    for output in (True, False):
        reservoir = KVReservoir(cfg.num_layers, 1, TOKENS, cfg.num_attention_heads, cfg.attention_head_dim, None)
        for t in (0, 3):
            plan = DensePolicy(window=None).plan(t, reservoir.view())
            reservoir.allocate(range(t, t + 3))
            state = AttentionState(plan.current_positions, plan.frames, plan.positions, reservoir,
                                   write_frames=range(t, t + 3), output=output)
            out = random_toy.dit(clean[:, :, t : t + 3], torch.zeros(1), text, state)
            assert (out is None) == (not output)
        stores.append(reservoir)
    assert torch.equal(stores[0].k, stores[1].k) and torch.equal(stores[0].v, stores[1].v)
    with pytest.raises(ValueError, match="write_frames"):
        random_toy.dit(clean[:, :, :3], torch.zeros(1), text, AttentionState([0, 1, 2], output=False))


def mask_from_plans(plans, num_frames: int) -> torch.Tensor:
    frames = torch.zeros(num_frames, num_frames, dtype=torch.bool)
    for plan in plans:
        rows = [f for f, _ in plan.current]
        for r in rows:
            frames[r, plan.frames + rows] = True
    return frames.repeat_interleave(TOKENS, 0).repeat_interleave(TOKENS, 1)


@pytest.mark.parametrize(
    "policy",
    [
        DensePolicy(window=None),
        DensePolicy(window=9),
        RelaxedPolicy(reservoir=15, rope="contiguous"),
        RelaxedPolicy(reservoir=15, rope="contiguous", store="attendable", sink=1, history=2, tail=2),
    ],
    ids=["dense-unbounded", "dense-window9", "relaxed-contiguous", "relaxed-contiguous-attendable"],
)
@torch.no_grad()
def test_chunked_generation_equals_full_masked_recompute(random_toy, policy):
    """With absolute positions, streaming through the reservoir equals one forward over all frames
    with the plans' attention pattern as a mask, through diffusers' own processor."""
    num_frames = 24
    torch.manual_seed(1)
    clean = torch.randn(1, 3, num_frames, 32, 32)
    text = random_toy.encode_text(["a green circle moving slow"])
    streamed, plans = stream_clean_passes(random_toy, policy, clean, text)
    if policy.max_frames() is not None:  # the bounded policies must actually have evicted something
        assert any(len(p.frames) < p.current[0][0] for p in plans)
    ref = stock_copy(random_toy, mask_from_plans(plans, num_frames))
    expected = ref(clean, torch.zeros(1), text, return_dict=False)[0]
    torch.testing.assert_close(streamed, expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_shifting_every_temporal_position_changes_nothing(random_toy):
    """RoPE is relative: memory and current frames moved by the same offset attend identically,
    which is what lets hybrid RoPE re-place memory frames anywhere before the chunk."""
    torch.manual_seed(2)
    clean = torch.randn(1, 3, 9, 32, 32)
    text = random_toy.encode_text(["a white square moving fast"])
    policy = RelaxedPolicy(warmup=False)
    _, plans = stream_clean_passes(random_toy, policy, clean, text)
    cfg = random_toy.dit.config
    outs = []
    for shift in (0, 37):
        reservoir = KVReservoir(cfg.num_layers, 1, TOKENS, cfg.num_attention_heads, cfg.attention_head_dim, None)
        reservoir.allocate(range(6))
        for t in (0, 3):
            plan = policy.plan(t, reservoir.view()) if t else plans[0]
            state = AttentionState([p + shift for p in plan.current_positions], plan.frames,
                                   [p + shift for p in plan.positions], reservoir, write_frames=range(t, t + 3))
            random_toy.dit(clean[:, :, t : t + 3], torch.zeros(1), text, state)
        plan = plans[2]
        state = AttentionState([p + shift for p in plan.current_positions], plan.frames,
                               [p + shift for p in plan.positions], reservoir)
        outs.append(random_toy.dit(clean[:, :, 6:9], torch.full((1,), 500.0), text, state))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)


# -- hybrid RoPE against a full-sequence forward of diffusers' own model ------------------------


@pytest.fixture
def one_layer_toy():
    """With one layer, a frame's K/V depend on that frame's input alone (patch embedding, norms and
    projections act per token), so a memory frame's reservoir entry can be rebuilt anywhere."""
    torch.manual_seed(3)
    dit = WanTransformer3DModel(**{**DIT_CONFIG, "num_layers": 1})
    with torch.no_grad():  # sharper attention than at init, so that where a frame sits shows in the output
        for norm in (dit.blocks[0].attn1.norm_q, dit.blocks[0].attn1.norm_k):
            norm.weight.mul_(3)
    return toy_backend(dit, ToyTextEncoder())


def full_sequence_reference(backend, plan, clean, x, sigma, text, memory_positions=None):
    """diffusers' stock forward over one sequence whose frame at position p is the input planned at p.

    Memory frames are their clean inputs at timestep 0 (as the clean pass wrote them), the chunk is `x`
    at `sigma`; other positions hold zeros. The mask lets the chunk's queries see the planned frames
    and itself, every other frame only itself. Returns the chunk's outputs.
    """
    positions = memory_positions or [pos for _, pos in plan.attended]
    current = plan.current_positions
    length = max(positions + current) + 1
    seq = torch.zeros(1, 3, length, 32, 32)
    timestep = torch.zeros(length)
    for (frame, _), pos in zip(plan.attended, positions):
        seq[:, :, pos] = clean[:, :, frame]
    for j, pos in enumerate(current):
        seq[:, :, pos], timestep[pos] = x[:, :, j], sigma
    frames = torch.eye(length, dtype=torch.bool)
    for row in current:
        frames[row, positions + current] = True
    mask = frames.repeat_interleave(TOKENS, 0).repeat_interleave(TOKENS, 1)
    ref = stock_copy(backend, mask)
    out = ref(seq, timestep.repeat_interleave(TOKENS)[None], text, return_dict=False)[0]
    return out[:, :, current]


@pytest.mark.parametrize("plan_of", ["relaxed-hybrid", "hand-placed"])
@torch.no_grad()
def test_hybrid_positions_equal_a_full_sequence_with_the_frames_placed_there(one_layer_toy, plan_of):
    backend = one_layer_toy
    torch.manual_seed(4)
    clean, x = torch.randn(1, 3, 12, 32, 32), torch.randn(1, 3, 3, 32, 32)
    text = backend.encode_text(["a yellow circle moving fast"])
    cfg = backend.dit.config
    reservoir = KVReservoir(1, 1, TOKENS, cfg.num_attention_heads, cfg.attention_head_dim, None)
    if plan_of == "relaxed-hybrid":
        policy = RelaxedPolicy()  # 2 sinks + 1 scored history + 1 tail, packed before the tail
        stream_clean_passes(backend, policy, clean, text, reservoir)
        plan = select(policy, reservoir, 12, Profiler(enabled=False))
        assert [pos for _, pos in plan.attended] == [8, 9, 10, 11] and plan.attended[0] == (0, 8)
    else:  # out of order, with gaps, one frame moved past a later one
        stream_clean_passes(backend, DensePolicy(window=None), clean, text, reservoir)
        plan = Plan(attended=((7, 2), (1, 5), (10, 6), (4, 9)), current=((12, 12), (13, 13), (14, 14)))
    state = AttentionState(plan.current_positions, plan.frames, plan.positions, reservoir)
    planned = backend.dit(x, torch.full((1,), 700.0), text, state)

    expected = full_sequence_reference(backend, plan, clean, x, 700.0, text)
    torch.testing.assert_close(planned, expected, rtol=1e-5, atol=1e-5)
    # the reference can tell positions apart: the same frames at their absolute positions differ
    absolute = full_sequence_reference(backend, plan, clean, x, 700.0, text, plan.frames)
    assert (absolute - expected).abs().max() > 1000 * 1e-5
