"""report.html: one self-contained page (nothing fetched from elsewhere) with the study's tables,
plots and video previews; images are inlined as base64 data URIs so the page can be mailed or archived."""

from __future__ import annotations

import base64
import io
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import pandas as pd
from PIL import Image

from bench.runs.videos import probe, read_frames

from .load import first_video, one_line
from .long_horizon import NOTE as HORIZON_NOTE
from .names import DIMENSIONS, OWN_METRICS
from .tables import SPREAD_NOTE

PREVIEW_WIDTH = 256  # pixels; previews are for recognising what a policy does, not for scoring
RUN_COLUMNS = [
    "label", "seed", "policy", "attended_per_chunk", "attended_frames", "seconds", *DIMENSIONS, *OWN_METRICS,
    "latent_frames_per_s", "end_to_end_s", "kv_peak_frames", "status", "error", "run_dir",
]

TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>relaxbench report: {{ name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
.note { color: #555; font-size: 13px; }
.failed { color: #a00; }
.scroll { overflow-x: auto; }
figure { display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #ddd; }
.frames img { width: {{ width }}px; image-rendering: pixelated; margin-right: 4px; }
</style></head><body>
<h1>relaxbench study: {{ name }}</h1>
<p class="note" id="provenance">{{ study }} · {{ complete }} complete run(s)
{%- if failed %}, <span class="failed">{{ failed }}</span>{% endif %}
 · model(s): {{ models }} · device(s): {{ devices }} · commit(s): {{ commits }} · report made {{ made }}</p>

<h2>Table 1: paper vs measured</h2>
<p class="note">Scores x100. Paper rows: VBench-Long, 128 MovieGen prompts, Wan2.1-T2V-1.3B, FPS on the authors' GPU.
Measured rows: this study, one row per configuration ({{ spread }}). The "backbone" row under them says
what produced each measured score;
only "(VBench)" means the exact VBench kernel.</p>
<div class="scroll">{{ table1 | safe }}</div>

<h2>Long-horizon metrics (relaxbench, not VBench)</h2>
<p class="note">{{ horizon_note }}.</p>
{% if horizon %}<div class="scroll">{{ horizon | safe }}</div>
{% else %}<p class="note">No run of this study has long-horizon metrics (eval=offline computes them).</p>{% endif %}

<h2>Plots</h2>
{% for name, uri in plots %}<figure><img alt="{{ name }}" src="{{ uri }}"><figcaption>{{ name }}</figcaption></figure>
{% else %}<p class="note">No plot has data in this study.</p>{% endfor %}

<h2>Runs</h2>
<div class="scroll">{{ runs | safe }}</div>
{% if errors %}<h2 class="failed">Failed, interrupted and unreadable runs, and warnings</h2>
<ul>{% for run, status, error in errors %}<li><code>{{ run }}</code> ({{ status }}): {{ error }}</li>{% endfor %}</ul>{% endif %}

<h2>Video previews</h2>
<p class="note">First, middle and last frame of each run's first video.</p>
{% for label, video, frames, problem in previews %}<div class="frames"><p><b>{{ label }}</b> · <code>{{ video }}</code></p>
{% if problem %}<p class="failed">{{ problem }}</p>{% endif %}
{% for seconds, uri in frames %}<img alt="{{ label }} at {{ seconds }} s" title="{{ seconds }} s" src="{{ uri }}">
{% endfor %}</div>
{% endfor %}
</body></html>
""")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return data_uri(buffer.getvalue(), "image/png")


def preview_frames(video: Path) -> list[tuple[str, str]]:
    """(time in seconds, PNG data URI) of the first, middle and last frames."""
    info = probe(video)
    picks = sorted({0, info.frame_count // 2, max(0, info.frame_count - 1)})
    frames = []
    for index, frame in zip(picks, read_frames(video, picks)):
        image = Image.fromarray(frame)
        scale = PREVIEW_WIDTH / image.width  # the toy's pixels stay sharp, a real video is smoothed
        size = (PREVIEW_WIDTH, max(1, round(image.height * scale)))
        image = image.resize(size, Image.NEAREST if scale >= 1 else Image.LANCZOS)
        frames.append((f"{index / info.fps:.1f}", png_uri(image)))
    return frames


def table1_html(table: pd.DataFrame) -> str:
    """Measured rows shaded. Columns are styled by position: the "±" headers repeat."""
    source = list(table.columns).index("Source")

    def shade(row: pd.Series) -> list[str]:
        return ["background: #eef4ff" if row.iloc[source].startswith("measured") else "" for _ in row]

    positional = table.set_axis(range(table.shape[1]), axis=1)
    return positional.style.apply(shade, axis=1).relabel_index(list(table.columns), axis=1).hide(axis="index").to_html()


def render(
    study: Path, runs: pd.DataFrame, table: pd.DataFrame, horizon: pd.DataFrame, plots: dict[str, Path], out: Path
) -> Path:
    done = runs[runs["status"] == "complete"]
    failed = runs[runs["status"] != "complete"]
    previews = []
    for run in done.itertuples():
        video = first_video(study / run.run_dir)
        if video is None:
            continue
        try:
            frames, problem = preview_frames(video), None
        except (OSError, ValueError) as err:  # a truncated or unreadable video: said, not fatal
            frames, problem = [], one_line(err, video)
        previews.append((run.label, video.relative_to(study).as_posix(), frames, problem))
    problems = list(zip(failed["run_dir"], failed["status"], failed.get("error", pd.Series(dtype=str))))
    warnings = runs["warning"].dropna() if "warning" in runs else pd.Series(dtype=str)
    problems += [(runs.at[index, "run_dir"], "warning", warning) for index, warning in warnings.items()]
    shown = runs[[c for c in RUN_COLUMNS if c in runs]]
    page = TEMPLATE.render(
        name=study.resolve().name,
        study=str(study),
        complete=len(done),
        failed=", ".join(f"{n} {status}" for status, n in failed["status"].value_counts().items()),
        models=", ".join(map(str, done["model"].unique())),
        devices=", ".join(map(str, done["device"].unique())),
        commits=", ".join(map(str, done["commit"].unique())),
        made=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        width=PREVIEW_WIDTH,
        table1=table1_html(table),
        horizon=horizon.to_html(index=False) if not horizon.empty else "",
        horizon_note=HORIZON_NOTE,
        spread=SPREAD_NOTE,
        plots=[(name, data_uri(path.read_bytes(), "image/png")) for name, path in plots.items()],
        runs=shown.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}"),
        errors=problems,
        previews=previews,
    )
    out.write_text(page)
    return out
