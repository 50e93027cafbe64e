"""The report's long-horizon outputs on a hand-made study: the table (Markdown, LaTeX, CSV, HTML) with
means and Student-t intervals over videos worked out here by hand, and the curves over seconds of video
with the similarity to the first clip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from test_report import write_complete

from analysis.load import clip_series, load_clips, load_study
from analysis.plots import plot_clip_drift
from analysis.report import report

T_975_1 = 12.706205  # Student t, 97.5th percentile, 1 degree of freedom
VIDEO = "000_a.mp4"
BACKBONE = "relaxbench pixel substitute: centred 32x32 mean frame (no DINO/CLIP weights)"


def add_long_horizon(run_dir: Path, drift: float, slope: float, freeze: float | None, frozen: float, collapse: float,
                     similarity: list[float]) -> None:
    """metrics.json's clip bounds (4 fps: clips 0-8, 8-16 and the remainder 12-20) and long_horizon
    section, as bench.evaluation writes them; the summary's similarity backbone."""
    path = run_dir / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["clip_settings"] = {"videos": {VIDEO: {"frames": 20, "fps": 4.0, "clips": [[0, 8], [8, 16], [12, 20]]}}}
    reasons = {} if freeze is not None else {"time_to_freeze_s": "never"}
    metrics["long_horizon"] = {"similarity_backbone": BACKBONE, "exact": False, "per_video": {VIDEO: {
        "clip_start_s": [0.0, 2.0, 3.0], "series": {"similarity_to_first": similarity},
        "delta_drift": {"motion_magnitude": drift, "dynamic_degree": None},
        "slope_per_min": {"motion_magnitude": slope, "dynamic_degree": None},
        "time_to_freeze_s": freeze, "frozen_fraction": frozen, "collapse_fraction": collapse, "reasons": reasons,
    }}}
    path.write_text(json.dumps(metrics))
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps(summary | {"long_horizon.backbone": BACKBONE}))


@pytest.fixture
def horizon_study(tmp_path) -> Path:
    root = tmp_path / "horizon"
    one = {VIDEO: {"dynamic_degree": 1.0, "motion_magnitude": 0.02}}
    for i, (seed, values) in enumerate(((0, (0.02, -0.01, 30.0, 0.5, 0.25)), (1000, (0.04, -0.03, None, 0.0, 0.75)))):
        write_complete(root / f"dense_{seed}", "dense", {"window": 9}, one, 1000 + i, seed=seed)
        add_long_horizon(root / f"dense_{seed}", *values, similarity=[1.0, 0.8 - 0.2 * i, 0.6])
    write_complete(root / "relaxed", "relaxed", {"sink": 2}, one, 1010)
    add_long_horizon(root / "relaxed", 0.01, 0.0, None, 0.0, 0.0, similarity=[1.0, 0.5, 0.4])
    return root


def rows(markdown: str) -> dict[str, dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return {row[0]: dict(zip(header, row)) for row in cells}


def test_long_horizon_table_has_hand_computed_means_and_intervals(horizon_study):
    written = report(horizon_study)
    markdown = (horizon_study / "long_horizon.md").read_text()
    assert "not VBench" in markdown and re.search(r"^## 30 s$", markdown, re.MULTILINE)
    table = rows(markdown)
    dense, relaxed = table["Dense window"], table["Relax Forcing"]
    # Δ_drift x100 over the two seeds: 2 and 4 -> mean 3, sd sqrt(2), half t * sqrt(2) / sqrt(2) = t
    assert dense["Δ_drift Motion Magnitude (relaxbench)"] == f"3.00 ± {T_975_1:.2f}"
    assert dense["Slope/min Motion Magnitude (relaxbench)"] == f"-2.00 ± {T_975_1:.2f}"
    assert dense["Time to freeze (s)"] == "30.00"  # only one video freezes: its time, no interval
    assert dense["Frozen videos"] == "1 of 2" and dense["Videos"] == "2"
    assert dense["Frozen clips (%)"] == f"25.00 ± {T_975_1 * 25:.2f}"  # 50 % and 0 %: sd 25 sqrt(2)
    assert dense["Collapse (%)"] == f"50.00 ± {T_975_1 * 25:.2f}"
    assert relaxed["Δ_drift Motion Magnitude (relaxbench)"] == "1.00" and relaxed["Time to freeze (s)"] == "–"
    assert relaxed["Frozen videos"] == "0 of 1" and relaxed["Collapse (%)"] == "0.00"
    assert not any("Dynamic Degree" in column for column in dense)  # no drift value: no column

    csv = pd.read_csv(written["long_horizon.csv"]).set_index(["point", "metric"])
    assert csv.loc[("Dense window", "collapse_fraction"), "mean"] == pytest.approx(50.0)
    assert csv.loc[("Dense window", "collapse_fraction"), "n"] == 2
    tex = written["long_horizon.tex"].read_text()
    assert "\\toprule" in tex and "$\\Delta_\\mathrm{drift}$" in tex and "$\\pm$" in tex and "Δ" not in tex
    page = written["report.html"].read_text()
    assert "Long-horizon metrics (relaxbench, not VBench)" in page and "1 of 2" in page


def test_clip_curves_run_over_seconds_and_show_the_similarity_to_the_first_clip(horizon_study):
    runs = load_study(horizon_study)
    clips = load_clips(runs, horizon_study)
    fig, data = plot_clip_drift(clips, runs[runs["status"] == "complete"])
    similarity = data[data["dimension"] == "similarity_to_first"].set_index(["point", "clip"])
    # centres of clips [0, 8), [8, 16), [12, 20) at 4 fps: 1 s, 3 s, 4 s
    assert similarity["seconds"].tolist() == [1.0, 3.0, 4.0, 1.0, 3.0, 4.0]
    assert similarity.loc[("Dense window", 1), "mean"] == pytest.approx(0.7)  # 0.8 and 0.6, not x100
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    assert any(t.startswith("Similarity to first clip (relaxbench) [relaxbench pixel substitute") for t in titles)
    assert all(ax.get_xlabel().startswith("seconds of video") for ax in fig.axes)


def test_clip_times_fall_back_to_back_to_back_2_s_clips():
    metrics = {"dimensions": {"temporal_flickering": {"per_clip": {"v.mp4": {"0": 0.9, "1": 0.8}}}}}
    assert clip_series(metrics)["seconds"].tolist() == [1.0, 3.0]


def test_study_without_long_horizon_metrics_says_so(tmp_path):
    write_complete(tmp_path / "s" / "run", "dense", {"window": 9}, {VIDEO: {"dynamic_degree": 1.0}}, 1000)
    written = report(tmp_path / "s")
    assert "No run of this study has long-horizon metrics" in written["long_horizon.md"].read_text()
    assert pd.read_csv(written["long_horizon.csv"]).empty
