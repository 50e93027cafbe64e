"""The planned attention path against diffusers' own Wan forward (the audiocraft style of test)."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from bench.generation.reservoir import KVReservoir
from bench.generation.wan_attention import AttentionState, rope_tables
from memory_policies import DensePolicy, RelaxedPolicy

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
    return ref


def test_rope_tables_equal_diffusers_table(random_toy):
    rope = random_toy.dit.transformer.rope
    cos, sin = rope(torch.zeros(1, 3, 5, 32, 32))
    my_cos, my_sin = rope_tables(rope, range(5), 8, 8, torch.device("cpu"))
    assert torch.equal(cos.float(), my_cos) and torch.equal(sin.float(), my_sin)


@torch.no_grad()
def test_single_chunk_with_empty_reservoir_equals_stock_forward(random_toy):
    ref = stock_copy(random_toy)
    x = torch.randn(2, 3, 3, 32, 32)
    timestep = torch.tensor([937.5, 250.0])
    text = random_toy.encode_text(["a red square moving fast", "a blue circle moving slow"])
    expected = ref(x, timestep, text, return_dict=False)[0]
    got = random_toy.dit(x, timestep, text, AttentionState(positions=[0, 1, 2]))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def stream_clean_passes(backend, policy, clean, text):
    """Clean passes chunk by chunk through policy + reservoir; returns outputs and the plans."""
    cfg = backend.dit.config
    reservoir = KVReservoir(cfg.num_layers, clean.shape[0], TOKENS, cfg.num_attention_heads,
                            cfg.attention_head_dim, policy.max_frames())
    outputs, plans = [], []
    for t in range(0, clean.shape[2], 3):
        reservoir.keep(policy.retain(reservoir.frames, t))
        plan = policy.plan(t, reservoir.view())
        frames = list(range(t, t + 3))
        reservoir.allocate(frames)
        state = AttentionState(plan.current_positions, plan.frames, plan.positions, reservoir, write_frames=frames)
        outputs.append(backend.dit(clean[:, :, t : t + 3], torch.zeros(clean.shape[0]), text, state))
        plans.append(plan)
    return torch.cat(outputs, dim=2), plans


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
