"""Table 1 of Relax Forcing: the paper's rows and the measured ones side by side, per video length.

Scores are printed x100 like the paper; "Average" is the plain mean of the six dimensions (missing
when any is missing). A measured row is one point of the study (a configuration, its seeds pooled):
each score is the mean over its videos, and the "±" column after it is the half-width of the 95 %
Student-t interval of that mean (– with a single video). Motion magnitude, relaxbench's own metric, is
a column of its own after the paper's. Under each length's measured rows a "backbone" row says what
produced each measured column, so a score from a substitute backbone is never read as a VBench number.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from .names import DIMENSIONS, OWN_METRICS, TITLES, backbone_labels, scale
from .spread import INTERVAL, point_scores

SCORED = [*DIMENSIONS, "average", *OWN_METRICS]
SCORE_COLUMNS = ["fps", *SCORED]
HEADERS = (
    {"length_s": "Length", "method": "Method", "source": "Source", "training_free": "Training-free", "fps": "FPS"}
    | {column: title for metric in SCORED for column, title in ((metric, TITLES[metric]), (f"{metric}.half", "±"))}
    | {"videos": "Videos"}
)
MISSING = "–"
PAPER_NOTE = "paper: VBench-Long, 128 MovieGen prompts, Wan2.1-T2V-1.3B; FPS on the authors' GPU"
SPREAD_NOTE = (
    f"measured: mean over videos (prompts x seeds), ± = half-width of the {INTERVAL}; Motion Magnitude is "
    "relaxbench's own metric (not VBench), x100 = % of the frame diagonal per sampled frame pair"
)


def paper_rows() -> pd.DataFrame:
    """The paper's Table 1 (packaged as analysis/data/paper_table1.csv)."""
    with resources.files("analysis").joinpath("data/paper_table1.csv").open() as f:
        return pd.read_csv(f).assign(source="paper")


def measured_rows(runs: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """One Table-1 row per point, in the paper's columns and units."""
    done = runs[runs["status"] == "complete"]
    stats = point_scores(runs, videos, SCORED)
    paper = paper_rows()
    paper_free = dict(zip(paper["method"], paper["training_free"]))
    rows = []
    for point, group in done.groupby("point", sort=False):
        first = group.iloc[0]
        mine = stats[stats["point"] == point].set_index("dimension")
        row = {
            "length_s": first["seconds"],
            "method": first["label"],
            # a method of the paper as the paper says; otherwise dense is the trained model's own memory
            "training_free": paper_free.get(first["group"], first["policy"] != "dense"),
            "fps": group["fps"].mean() if "fps" in group else float("nan"),
            "videos": int(mine["n"].max()) if len(mine) else 0,
            "source": f"measured ({first['model']})",
        }
        for metric in SCORED:
            found = metric in mine.index
            row[metric] = mine.at[metric, "mean"] * scale(metric) if found else float("nan")
            row[f"{metric}.half"] = mine.at[metric, "half"] * scale(metric) if found else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def backbone_row(runs: pd.DataFrame, length: float) -> dict:
    """What produced each measured score at this length, e.g. "opencv-dis (not VBench)"."""
    done = runs[(runs["status"] == "complete") & (runs["seconds"] == length)]
    row: dict = {"length_s": length, "method": "backbone of the measured scores", "source": "measured"}
    for d in (*DIMENSIONS, *OWN_METRICS):
        if d not in done or done[d].isna().all():
            row[d] = "not measured"
            continue
        row[d] = "; ".join(backbone_labels(done, d))
    if "average6.exact" in done and done["average6"].notna().any():
        row["average"] = "VBench" if done["average6.exact"].eq(True).all() else "includes substitutes"
    return row


def number(value: object) -> object:
    return f"{value:.2f}" if isinstance(value, float) and pd.notna(value) else value


def table1(runs: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows then the measured rows and their backbone row, for every length, as text."""
    paper, measured = paper_rows(), measured_rows(runs, videos)
    blocks = []
    lengths = set(paper["length_s"]) | (set(measured["length_s"]) if len(measured) else set())
    for length in sorted(lengths):
        mine = measured[measured["length_s"] == length] if len(measured) else measured
        block = [paper[paper["length_s"] == length], mine]
        if not mine.empty:
            block.append(pd.DataFrame([backbone_row(runs, length)]))
        blocks.append(pd.concat(block, ignore_index=True))
    table = pd.concat(blocks, ignore_index=True).reindex(columns=list(HEADERS))
    shown = table.astype(object)
    numeric = ["fps", *SCORED, *(f"{m}.half" for m in SCORED)]
    shown[numeric] = table[numeric].map(number)
    shown["videos"] = table["videos"].map(lambda n: f"{n:.0f}" if pd.notna(n) else n)
    shown["training_free"] = table["training_free"].map({True: "yes", False: "no"})
    shown["length_s"] = table["length_s"].map(lambda s: f"{s:g} s")
    return shown.fillna(MISSING).rename(columns=HEADERS)


def measured_note(runs: pd.DataFrame) -> str:
    """Where the measured rows come from: models, devices, commits, and what ± means."""
    done = runs[runs["status"] == "complete"]
    where = "; ".join(
        f"{what}: {', '.join(map(str, done[column].unique()))}"
        for what, column in (("measured with", "model"), ("on", "device"), ("commit", "commit"))
    )
    return f"{where}; {SPREAD_NOTE}"


def to_markdown(table: pd.DataFrame, note: str) -> str:
    """One Markdown table per length, under a heading."""
    parts = ["# Table 1: paper vs measured", "", f"Scores x100. {PAPER_NOTE}. {note}.", ""]
    for length, block in table.groupby("Length", sort=False):
        parts += [f"## {length}", "", block.drop(columns="Length").to_markdown(index=False), ""]
    return "\n".join(parts)


def to_latex(table: pd.DataFrame, note: str) -> str:
    """Table 1 as one booktabs table (`booktabs_table`)."""
    return booktabs_table(table, f"Table 1, paper vs measured (scores x100; {PAPER_NOTE}; {note}).", "tab:table1")


def booktabs_table(table: pd.DataFrame, caption: str, label: str) -> str:
    """One booktabs table, lengths as multirow groups (needs \\usepackage{booktabs,multirow})."""
    styler = table.set_index(["Length", "Method"]).style
    styler = styler.format(escape="latex").format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    return styler.to_latex(
        hrules=True,
        clines="skip-last;data",
        multirow_align="t",
        position_float="centering",
        caption=caption,
        label=label,
    )
