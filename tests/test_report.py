"""analysis.report on a hand-made study: rows, Table-1 layout with the paper's numbers and backbone
labels, plots, a self-contained HTML page, and one-line errors for unusable input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.load import load_study
from analysis.report import main as report_main
from analysis.report import report
from bench.runs.outputs import clip_scores
from bench.runs.videos import write_video

# dimension -> (backbone, exact) as bench.evaluation's summary_fields records them
BACKBONES = {
    "subject_consistency": ("dino_vitb16", True),
    "background_consistency": ("clip_vitb32", True),
    "aesthetic_quality": ("laion_vitl14", True),
    "imaging_quality": ("brisque", False),
    "motion_smoothness": ("rife_v4", False),
    "dynamic_degree": ("opencv_dis", False),
}


def write_run(run_dir: Path, policy: str, sink: int | None, dynamic: float, stamp: float, seconds: float = 30.0) -> None:
    """A complete run as bench.run writes it (summary, timing, metrics with per-clip scores, one video)."""
    run_dir.mkdir(parents=True)
    frames = np.zeros((8, 16, 16, 3), np.uint8)
    frames[:, 4:8, :, 0] = 200
    write_video(run_dir / "videos" / "000_a_red_square.mp4", frames, 4.0)
    sizes = {} if sink is None else {"policy.sink": sink, "policy.history": 1, "policy.tail": 1}
    scores = {d: 0.9 for d in BACKBONES} | {"dynamic_degree": dynamic}
    summary = {
        "status": "complete", "config_hash": f"{policy}-{sink}-{seconds}", "run_dir": str(run_dir), "model": "toy",
        "policy": policy, "policy.name": policy, **sizes, "attended_frames": 4 if sink is None else sink + 2,
        "num_latent_frames": int(seconds * 4), "seconds": seconds, "seed": 0, "end_to_end_s": 10.0,
        "latent_frames_per_s": 12.0, "kv_peak_frames": 24, "commit": "abc123", "device": "cpu (test)",
    }
    for d, (backbone, exact) in BACKBONES.items():
        summary |= {d: scores[d], f"{d}.backbone": backbone, f"{d}.exact": exact}
    summary |= {"average6": sum(scores.values()) / 6, "average6.exact": False}
    metrics = {"dimensions": {  # the format of bench/evaluation/results.py
        d: {"score": scores[d], "backbone": b, "exact": e,
            "per_clip": {"000_a_red_square.mp4": {"0": scores[d], "1": scores[d] - 0.1, "2": None}}}
        for d, (b, e) in BACKBONES.items()
    }}
    timing = {"sections_s": {"denoise": 1.0, "attention": 0.2},
              "per_chunk": [{"attention": 0.01 * (1 + t), "attended": t, "t": 3 * t} for t in range(4)]}
    for name, content in (("metrics.json", metrics), ("timing.json", timing), ("summary.json", summary)):
        (run_dir / name).write_text(json.dumps(content))
        os.utime(run_dir / name, (stamp, stamp))


@pytest.fixture
def study(tmp_path) -> Path:
    root = tmp_path / "study"
    for i, sink in enumerate((0, 1, 2)):
        write_run(root / f"{i}_policy.sink={sink}", "relaxed", sink, dynamic=0.5 + 0.1 * sink, stamp=1000 + i)
    write_run(root / "3_policy=dense", "dense", None, dynamic=0.3, stamp=1003)
    write_run(root / "old" / "0_policy.sink=2", "relaxed", 2, dynamic=0.1, stamp=10)  # older duplicate
    write_run(root / "4_short", "relaxed", 2, dynamic=0.2, stamp=1004, seconds=1.5)
    failed = root / "5_policy.sink=9"
    failed.mkdir()
    (failed / "error.json").write_text(json.dumps({"error": "policy.sink must be ...\nmore", "config_hash": "x"}))
    (root / "attention.json").write_text(json.dumps(
        {"frames": [7, 21], "kernel_ms": [1.0, 3.0], "self_attn_ms": [2.0, 5.0], "device": "cpu (test)"}))
    return root


def test_study_frame_has_one_row_per_configuration(study):
    runs = load_study(study)
    assert len(runs) == 6 and runs["status"].value_counts().to_dict() == {"complete": 5, "failed": 1}
    newest = runs[runs["config_hash"] == "relaxed-2-30.0"]
    assert len(newest) == 1 and newest["dynamic_degree"].item() == pytest.approx(0.7)  # not the older duplicate
    assert runs.loc[runs["status"] == "failed", "error"].item().startswith("policy.sink must be")
    assert set(runs["label"].dropna()) >= {"Relax Forcing (sink=0)", "Relax Forcing (sink=2)", "Dense window"}
    assert runs["fps"].dropna().tolist() == [12.0] * 5  # 1 video frame per latent frame at the toy's 4 fps


def test_report_writes_table1_with_paper_numbers_and_backbone_labels(study):
    written = report(study)
    table = (study / "table.md").read_text()
    blocks = dict(re.findall(r"## ([\d.]+ s)\n\n(.*?)(?=\n## |\Z)", table, re.S))
    assert list(blocks) == ["1.5 s", "30 s", "60 s"]
    relax_paper = next(line for line in blocks["30 s"].splitlines() if line.startswith("| Relax Forcing ") and "paper" in line)
    assert "65.67" in relax_paper and "80.87" in relax_paper and "16.33" in relax_paper
    measured = next(line for line in blocks["30 s"].splitlines() if line.startswith("| Relax Forcing (sink=2)"))
    assert "70.00" in measured and "90.00" in measured and "86.67" in measured and "measured (toy)" in measured
    backbone = next(line for line in blocks["30 s"].splitlines() if "backbone of the measured scores" in line)
    cells = [c.strip() for c in backbone.strip("|").split("|")]
    assert "dino_vitb16 (VBench)" in cells and "opencv_dis (not VBench)" in cells
    assert cells[-1] == "includes substitutes"  # the Average
    assert all("(VBench)" not in c for c in cells if c.startswith(("brisque", "rife_v4", "opencv_dis")))
    assert "Dense window" in blocks["30 s"] and "Dense window" not in blocks["60 s"]

    tex = (study / "table.tex").read_text()
    assert "\\toprule" in tex and "65.67" in tex and "opencv\\_dis (not VBench)" in tex

    results = pd.read_csv(written["results.csv"])
    assert len(results) == 6 and {"dynamic_degree.backbone", "dynamic_degree.exact", "label", "run_dir"} <= set(results)
    for name in ("sizes", "dynamic_vs_attended", "attention_vs_attended", "clip_drift"):
        assert (study / "plots" / f"{name}.png").stat().st_size > 1000
        assert (study / "plots" / f"{name}.pdf").read_bytes().startswith(b"%PDF")


def test_report_html_is_self_contained(study):
    page = report(study)["report.html"].read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing fetched from elsewhere
    images = re.findall(r'src="data:image/png;base64,', page)
    assert len(images) == 4 + 5 * 3  # the plots, then first/mid/last frame of each complete run
    assert "65.67" in page and "opencv_dis (not VBench)" in page
    assert "5_policy.sink=9" in page and "policy.sink must be" in page  # the failed run and its error


def test_clip_scores_reads_per_video_per_clip_scores():
    metrics = {"dimensions": {
        "dynamic_degree": {"score": 0.5, "per_clip": {"a.mp4": {"0": 1.0, "1": 0.0}, "b.mp4": {"0": None, "1": 0.5}}},
        "subject_consistency": {"score": None, "reason": "no weights"},
    }}
    assert clip_scores(metrics).to_dict("records") == [
        {"dimension": "dynamic_degree", "video": "a.mp4", "clip": 0, "score": 1.0},
        {"dimension": "dynamic_degree", "video": "a.mp4", "clip": 1, "score": 0.0},
        {"dimension": "dynamic_degree", "video": "b.mp4", "clip": 1, "score": 0.5},
    ]


def only_failed_runs(root: Path, error: str = '{"error": "boom"}') -> Path:
    (root / "r").mkdir()
    (root / "r" / "error.json").write_text(error)
    return root


def halve(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_runs_are_one_warning_line_each_and_the_report_covers_the_others(study, capsys):
    damages = {  # run -> (the damage, the file it names, what the warning says about it, the run's status)
        "0_policy.sink=0": (halve, "summary.json", "not valid JSON", "unreadable"),
        "1_policy.sink=1": (lambda path: path.write_text("{}"), "summary.json", "it lacks status, config_hash", "unreadable"),
        "4_short": (lambda path: path.write_text("[1, 2]"), "summary.json", "expected a JSON object, found a list",
                    "unreadable"),
        "5_policy.sink=9": (lambda path: path.write_text('{"error": "policy.sink'), "error.json", "not valid JSON",
                            "unreadable"),
        "2_policy.sink=2": (lambda path: path.write_bytes(b"\xff\xfe\0"), "timing.json", "not valid JSON", "complete"),
        "3_policy=dense": (halve, "videos/000_a_red_square.mp4", "not a readable video", "complete"),
    }
    for run, (damage, name, _, _) in damages.items():
        damage(study / run / name)
    report_main([str(study)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == len(damages) and "Traceback" not in err
    for run, (_, name, message, _) in damages.items():
        [line] = [line for line in lines if str(study / run / name) in line]
        assert line.startswith("warning: ") and message in line
    results = pd.read_csv(study / "results.csv").set_index("run_dir")
    assert results["status"].to_dict() == {run: status for run, (*_, status) in damages.items()}  # each run once
    assert results.loc["2_policy.sink=2", "fps"] == 12.0 and pd.isna(results.loc["2_policy.sink=2", "time.denoise_s"])
    assert pd.isna(results.loc["3_policy=dense", "fps"]) and results.loc["3_policy=dense", "dynamic_degree"] == 0.3
    page = (study / "report.html").read_text()
    assert all(str(study / run / name) in page for run, (_, name, *_) in damages.items())
    assert page.count('<div class="frames">') == 2 and page.count(' s" src="data:image/png;base64,') == 3  # one readable


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "no runs under"),
        (only_failed_runs, "no complete runs"),
        (lambda root: only_failed_runs(root, "[]"), "1 unreadable (first error: cannot read"),
    ],
)
def test_unusable_study_is_a_one_line_error(tmp_path, capsys, make, message):
    root = make(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(root)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and "\n" not in err


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(study, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = report(study)["report.html"]
    # A copy with a probe script: it lists images the browser failed to decode.
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", """<script>
window.addEventListener("load", () => {
  const broken = [...document.images].filter(img => !img.complete || img.naturalWidth === 0).length;
  document.body.setAttribute("data-probe", `images=${document.images.length} broken=${broken}`);
});</script></body>"""))
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert 'data-probe="images=19 broken=0"' in result.stdout, result.stderr[-2000:]
    assert "relaxbench study" in result.stdout and "Table 1: paper vs measured" in result.stdout
    screenshot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile2'}",
         "--window-size=1300,2000", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
