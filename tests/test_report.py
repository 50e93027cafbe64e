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
from PIL import Image

from analysis.load import load_study
from analysis.names import backbone_label
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


def write_complete(
    run_dir: Path, policy: str, fields: dict, videos: dict[str, dict[str, float]], stamp: float, seconds: float = 30.0,
    seed: int = 0, attended: list[int] | None = None, method: str | None = None, config_hash: str | None = None,
) -> None:
    """A complete run as bench.run writes it: summary, timing (per-chunk rows), metrics with per-video
    and per-clip scores (clip 1 scores 0.1 lower than clip 0), one video file, and Hydra's record of the
    config-group choices. `videos`: video name -> dimension -> that video's score."""
    run_dir.mkdir(parents=True)
    frames = np.zeros((8, 16, 16, 3), np.uint8)
    frames[:, 4:8, :, 0] = 200
    write_video(run_dir / "videos" / "000_a_red_square.mp4", frames, 4.0)
    attended = attended if attended is not None else list(range(4))
    dims = sorted({d for scores in videos.values() for d in scores})
    run_scores = {d: float(np.mean([v[d] for v in videos.values()])) for d in dims}
    summary = {
        "status": "complete", "config_hash": config_hash or f"{policy}-{sorted(fields.items())}-{seconds}-{seed}-{method}",
        "run_dir": str(run_dir), "model": "toy", "policy": policy, "policy.name": policy,
        **{f"policy.{k}": v for k, v in fields.items()}, "attended_frames": max(attended),
        "num_latent_frames": int(seconds * 4), "seconds": seconds, "seed": seed, "end_to_end_s": 10.0,
        "latent_frames_per_s": 12.0, "kv_peak_frames": 24, "commit": "abc123", "device": "cpu (test)",
    }
    for d in dims:
        backbone, exact = BACKBONES.get(d, ("relaxbench metric on opencv-dis", False))
        summary |= {d: run_scores[d], f"{d}.backbone": backbone, f"{d}.exact": exact}
    if set(BACKBONES) <= set(dims):
        summary |= {"average6": sum(run_scores[d] for d in BACKBONES) / 6, "average6.exact": False}
    metrics = {"dimensions": {  # the format of bench/evaluation/results.py
        d: {"score": run_scores[d], "backbone": summary[f"{d}.backbone"], "exact": summary[f"{d}.exact"],
            "per_video": {video: scores[d] for video, scores in videos.items()},
            "per_clip": {video: {"0": scores[d], "1": scores[d] - 0.1, "2": None} for video, scores in videos.items()}}
        for d in dims
    }}
    timing = {"sections_s": {"denoise": 1.0, "attention": 0.2}, "chunks": len(attended)}
    (run_dir / "per_chunk.jsonl").write_text("".join(
        json.dumps({"attention": 0.01 * (1 + a), "dit": 0.05 * (1 + a), "attended": a, "t": 3 * i}) + "\n"
        for i, a in enumerate(attended)))
    if method is not None:
        (run_dir / ".hydra").mkdir()
        (run_dir / ".hydra" / "hydra.yaml").write_text(json.dumps(
            {"hydra": {"runtime": {"choices": {"method": method, "policy": policy, "model": "toy", "hydra/launcher": "basic"}}}}))
    for name, content in (("metrics.json", metrics), ("timing.json", timing), ("summary.json", summary)):
        (run_dir / name).write_text(json.dumps(content))
        os.utime(run_dir / name, (stamp, stamp))


def write_run(run_dir: Path, policy: str, sink: int | None, dynamic: float, stamp: float, seconds: float = 30.0) -> None:
    """A complete run of one video scoring 0.9 on every dimension but dynamic degree."""
    fields = {} if sink is None else {"sink": sink, "history": 1, "tail": 1}
    scores = {d: 0.9 for d in BACKBONES} | {"dynamic_degree": dynamic}
    write_complete(run_dir, policy, fields, {"000_a_red_square.mp4": scores}, stamp, seconds,
                   config_hash=f"{policy}-{sink}-{seconds}")


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
    assert runs["attended_per_chunk"].dropna().tolist() == [1.5] * 5  # median of the chunks' 0, 1, 2, 3


def test_report_writes_table1_with_paper_numbers_and_backbone_labels(study):
    written = report(study)
    table = (study / "table.md").read_text()
    blocks = dict(re.findall(r"## ([\d.]+ s)\n\n(.*?)(?=\n## |\Z)", table, re.S))
    assert list(blocks) == ["1.5 s", "30 s", "60 s"]
    relax_paper = next(line for line in blocks["30 s"].splitlines() if line.startswith("| Relax Forcing ") and "paper" in line)
    assert "65.67" in relax_paper and "80.87" in relax_paper and "16.33" in relax_paper
    header = [c.strip() for c in blocks["30 s"].splitlines()[0].strip("|").split("|")]
    assert header[header.index("Dynamic Degree") + 1] == "±" and header[-1] == "Videos"
    measured = next(line for line in blocks["30 s"].splitlines() if line.startswith("| Relax Forcing (sink=2)"))
    cells = dict(zip(header, [c.strip() for c in measured.strip("|").split("|")]))
    assert cells["Dynamic Degree"] == "70.00" and cells["Subject Consistency"] == "90.00" and cells["Average"] == "86.67"
    assert cells["Source"] == "measured (toy)" and cells["Videos"] == "1" and cells["±"] == "–"  # one video: no interval
    backbone = next(line for line in blocks["30 s"].splitlines() if "backbone of the measured scores" in line)
    cells = dict(zip(header, [c.strip() for c in backbone.strip("|").split("|")]))
    assert cells["Subject Consistency"] == "dino_vitb16 (VBench)" and cells["Dynamic Degree"] == "opencv_dis (not VBench)"
    assert cells["Average"] == "includes substitutes"
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


def screenshot(chromium: str, url: str, png: Path, profile: Path, size: str = "1400,2000") -> np.ndarray:
    """What headless Chromium shows at `url`, as an RGB array."""
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         f"--screenshot={png}", f"--window-size={size}", url],
        capture_output=True, timeout=120, check=True,
    )
    return np.asarray(Image.open(png).convert("RGB"))


def not_blank(image: np.ndarray) -> bool:
    """More than a uniform page: at least 1 % of the pixels differ from the most common colour."""
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    return counts.max() < 0.99 * image.shape[0] * image.shape[1] and len(colours) > 16


@pytest.mark.slow
def test_report_html_and_every_plot_render_in_headless_chromium(study, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    written = report(study)
    page = written["report.html"]
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
    assert not_blank(screenshot(chromium, page.as_uri(), tmp_path / "page.png", tmp_path / "profile2"))
    plots = [path for name, path in written.items() if name.startswith("plots/")]
    assert len(plots) == 4
    for plot in plots:  # each plot on its own, as a browser shows the PNG file
        shot = screenshot(chromium, plot.as_uri(), tmp_path / f"{plot.stem}.png", tmp_path / f"profile-{plot.stem}")
        assert not_blank(shot), plot.name


def test_backbone_labels_say_vbench_once():
    """Exact backbones carry "(VBench)" in their own names (bench/evaluation/backbones); the label must
    not repeat it, and a relaxbench metric on an exact backbone is still not VBench."""
    assert backbone_label("dino-vitb16 (VBench)", True) == "dino-vitb16 (VBench)"
    assert backbone_label("opencv-dis (substitute for RAFT)", False) == "opencv-dis (substitute for RAFT) (not VBench)"
    assert backbone_label("relaxbench metric on raft-things", False) == "relaxbench metric on raft-things (not VBench)"
