"""The report's spread and curves on synthetic studies with known per-video scores: points pooled over
seeds, means and Student-t intervals worked out here by hand, read back from the table, from the data
each plot returns and from the matplotlib artists; and plots that read: no two text boxes overlap,
legends outside the data, no colour used twice in a figure."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer
from matplotlib.legend import Legend
from matplotlib.text import Text
from test_report import write_complete

from analysis.load import (
    load_attention,
    load_chunks,
    load_clips,
    load_study,
    load_videos,
)
from analysis.plots import figures
from analysis.report import report

T_975_3 = 3.182446  # Student t, 97.5th percentile, 3 degrees of freedom (printed tables)
DENSE_DYNAMIC = [[0.2, 0.4], [0.6, 0.8]]  # per seed, per video
DENSE_MOTION = [[0.010, 0.012], [0.014, 0.016]]
RELAXED_DYNAMIC = [[1.0, 1.0], [1.0, 0.0]]
RELAXED_MOTION = [[0.030, 0.040], [0.050, 0.040]]


def videos(dynamic: list[float], motion: list[float]) -> dict[str, dict[str, float]]:
    return {f"00{i}_prompt_{i}.mp4": {"dynamic_degree": d, "motion_magnitude": m} for i, (d, m) in enumerate(zip(dynamic, motion))}


@pytest.fixture
def context_study(tmp_path) -> Path:
    """dense window 9 (6 past frames) and relaxed 2/1/1 (4), two seeds of two videos each, plus relaxed
    with sink 3 (5 past frames), one video. Each run's first chunk is a dense warm-up of 12 frames."""
    root = tmp_path / "context"
    for s, seed in enumerate((0, 1000)):
        write_complete(root / f"dense_{seed}", "dense", {"window": 9}, videos(DENSE_DYNAMIC[s], DENSE_MOTION[s]),
                       1000 + s, seed=seed, attended=[12, 6, 6, 6])
        write_complete(root / f"relaxed_{seed}", "relaxed", {"sink": 2, "history": 1, "tail": 1},
                       videos(RELAXED_DYNAMIC[s], RELAXED_MOTION[s]), 1010 + s, seed=seed, attended=[12, 4, 4, 4, 4])
    write_complete(root / "relaxed_sink3", "relaxed", {"sink": 3, "history": 1, "tail": 1}, videos([0.5], [0.02]), 1020,
                   attended=[12, 5, 5, 5])
    return root


def hand_interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width of four values, x100."""
    mean = sum(values) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 3)
    return 100 * mean, 100 * T_975_3 * sd / 2


def built(study: Path) -> dict:
    runs = load_study(study)
    return figures(runs, load_chunks(runs, study), load_clips(runs, study), load_videos(runs, study), load_attention(study))


def test_points_pool_seeds_and_show_mean_and_t_interval_over_videos(context_study):
    dense_dyn, dense_motion = hand_interval([*DENSE_DYNAMIC[0], *DENSE_DYNAMIC[1]]), hand_interval([*DENSE_MOTION[0], *DENSE_MOTION[1]])
    relaxed_dyn = hand_interval([*RELAXED_DYNAMIC[0], *RELAXED_DYNAMIC[1]])
    assert dense_dyn == pytest.approx((50.0, 41.085), abs=1e-3) and relaxed_dyn == pytest.approx((75.0, 79.56), abs=1e-2)

    report(context_study)
    table = (context_study / "table.md").read_text()
    block = re.search(r"## 30 s\n\n(.*?)(?=\n## |\Z)", table, re.DOTALL).group(1).splitlines()
    header = [c.strip() for c in block[0].strip("|").split("|")]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in block[2:])}
    dense = rows["Dense window"]  # one row for both seeds: the seed is not part of the label
    spread = header.index("Dynamic Degree") + 1
    assert dense[header.index("Dynamic Degree")] == "50.00" and dense[spread] == f"{dense_dyn[1]:.2f}"
    motion = header.index("Motion Magnitude (relaxbench)")
    assert dense[motion] == "1.30" and dense[motion + 1] == f"{dense_motion[1]:.2f}"
    assert dense[header.index("Videos")] == "4"
    relaxed = rows["Relax Forcing (sink=2)"]
    assert relaxed[header.index("Dynamic Degree")] == "75.00" and relaxed[spread] == f"{relaxed_dyn[1]:.2f}"
    assert rows["Relax Forcing (sink=3)"][spread] == "–"  # a single video has no interval
    assert "95 % Student-t interval" in table

    fig, data = built(context_study)["dynamic_vs_attended"]
    got = data.set_index(["group", "x", "metric"])
    # x is the steady state (median over chunks), not the warm-up's 12 frames
    assert got.loc[("Dense window", 6.0, "dynamic_degree"), ["mean", "half", "n"]].tolist() == pytest.approx([*dense_dyn, 4], abs=1e-3)
    assert got.loc[("Dense window", 6.0, "motion_magnitude"), ["mean", "half"]].tolist() == pytest.approx(dense_motion, abs=1e-4)
    assert got.loc[("Relax Forcing", 4.0, "dynamic_degree"), ["mean", "half"]].tolist() == pytest.approx(relaxed_dyn, abs=1e-2)
    # The artists: the dense marker at (6, 50) and its bar from 50 - 41.09 to 50 + 41.09.
    dynamic_ax = next(ax for ax in fig.axes if "Dynamic Degree" in ax.get_title())
    [bars] = [c for c in dynamic_ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "Dense window"]
    assert bars.lines[0].get_xydata()[0].tolist() == pytest.approx([6.0, 50.0]) and len(bars.lines[0].get_xydata()) == 1
    [segment] = bars.lines[2][0].get_segments()
    assert segment[:, 1].tolist() == pytest.approx([dense_dyn[0] - dense_dyn[1], dense_dyn[0] + dense_dyn[1]], abs=1e-3)
    assert {ax.get_title().split(" [")[0] for ax in fig.axes} == {"Dynamic Degree", "Motion Magnitude (relaxbench)"}


def test_clip_curves_carry_a_band_over_videos(context_study):
    _, data = built(context_study)["clip_drift"]
    got = data.set_index(["point", "dimension", "clip"])
    # clip 1 scores 0.1 below clip 0 in every video: same spread, mean 10 lower
    first, second = got.loc[("Dense window", "dynamic_degree", 0)], got.loc[("Dense window", "dynamic_degree", 1)]
    assert (first["mean"], first["half"]) == pytest.approx(hand_interval([*DENSE_DYNAMIC[0], *DENSE_DYNAMIC[1]]), abs=1e-3)
    assert second["mean"] == pytest.approx(40.0) and second["half"] == pytest.approx(first["half"])


def test_methods_are_named_as_the_paper_and_new_policies_get_rows_and_size_curves(tmp_path):
    root = tmp_path / "methods"
    one = {"000_a.mp4": {"dynamic_degree": 0.5, "motion_magnitude": 0.01}}
    for i, method in enumerate(("self_forcing", "causvid")):  # both dense on the toy: the method tells them apart
        write_complete(root / method, "dense", {"window": 21}, one, 1000 + i, method=method)
    for i, window in enumerate((9, 15, 21)):
        write_complete(root / f"rs_{window}", "rolling_sink", {"window": window}, one, 1010 + i)
    for i, tail in enumerate((1, 2, 3)):  # infinity_rope's sweep moves tail and reservoir together
        write_complete(root / f"ir_{tail}", "infinity_rope", {"sink": 1, "tail": tail, "reservoir": tail + 4}, one, 1020 + i)
    for policy in ("deep_forcing", "memrope"):
        write_complete(root / policy, policy, {"sink": 3}, one, 1030)
    runs = load_study(root)
    assert set(runs["label"]) == {
        "Self Forcing", "CausVid", "Rolling Sink (window=9)", "Rolling Sink (window=15)", "Rolling Sink (window=21)",
        "Infinity-RoPE (tail=1, reservoir=5)", "Infinity-RoPE (tail=2, reservoir=6)", "Infinity-RoPE (tail=3, reservoir=7)",
        "Deep Forcing", "MemRoPE",
    }
    report(root)
    table = (root / "table.md").read_text()
    for name, free in (("Self Forcing", "no"), ("CausVid", "no"), ("Deep Forcing", "yes"), ("MemRoPE", "yes")):
        [row] = [line for line in table.splitlines() if line.startswith(f"| {name} ") and "measured" in line]
        assert f"| {free} " in row
    _, sizes = built(root)["sizes"]
    curves = sizes[sizes["metric"] == "dynamic_degree"].groupby(["size", "curve"])["x"].apply(sorted).to_dict()
    assert curves == {("window", "Rolling Sink"): [9, 15, 21], ("tail", "Infinity-RoPE"): [1, 2, 3]}


def drawn_texts(fig) -> list[Text]:
    """Every text the figure draws: titles, axis labels, the tick labels in view, legend texts."""
    texts = [*fig.texts]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label, *ax.texts]
        for axis, coordinate in ((ax.xaxis, 0), (ax.yaxis, 1)):  # the locator's labels beyond the limits are not drawn
            low, high = sorted(axis.get_view_interval())
            texts += [t for t in axis.get_ticklabels() if low <= t.get_position()[coordinate] <= high]
            texts.append(axis.get_offset_text())
    for legend in fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]:
        texts += [legend.get_title(), *legend.get_texts()]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_no_two_text_boxes_overlap_and_legends_sit_outside_the_data(tmp_path, context_study):
    # a crowded study on top of the context one: 12 run groups, sizes varied, an attention benchmark
    for i in range(12):
        for sink in (1, 2, 3):
            write_complete(context_study / f"p{i}_{sink}", f"policy_number_{i}_with_a_long_name", {"sink": sink},
                           videos([0.1 * sink, 0.2], [0.01, 0.02 * sink]), 2000 + i, attended=[sink + i, sink + i])
    (context_study / "attention.json").write_text('{"frames": [7, 21], "kernel_ms": [1.0, 3.0], '
                                                  '"self_attn_ms": [2.0, 5.0], "device": "cpu (test)"}')
    plots = built(context_study)
    assert set(plots) == {"sizes", "dynamic_vs_attended", "attention_vs_attended", "clip_drift"}
    for name, (fig, _) in plots.items():
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn_texts(fig)]
        for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
            assert not boxes_overlap(box_a, box_b), f"{name}: {a!r} overlaps {b!r}"
        page = fig.bbox
        for text, box in boxes:
            assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1, \
                f"{name}: {text!r} is cut off"
        legends = [artist for artist in fig.findobj(Legend)]
        assert legends, name
        for legend, ax in itertools.product(legends, fig.axes):
            assert not boxes_overlap(legend.get_window_extent(renderer), ax.get_window_extent(renderer)), name
        for ax in fig.axes:  # a colour per run group: no two series of a panel share one
            colours = [tuple(np.round(line.get_color(), 4)) if not isinstance(line.get_color(), str) else line.get_color()
                       for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")]
            colours += [tuple(np.round(c.lines[0].get_color(), 4)) if not isinstance(c.lines[0].get_color(), str)
                        else c.lines[0].get_color() for c in ax.containers if isinstance(c, ErrorbarContainer)]
            assert len(colours) == len(set(colours)), f"{name}: a colour is used twice in {ax.get_title()!r}"
        assert not any(ax.texts for ax in fig.axes), f"{name}: per-point text"
