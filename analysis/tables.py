"""Table 1 of Relax Forcing: the paper's rows and the measured ones side by side, per video length.

Scores are printed x100 like the paper; "Average" is the evaluation's `average6`, the plain mean of
the six dimensions (missing when any is missing). Under each length's measured rows a "backbone" row
says what produced each measured column, so a score from a substitute backbone is never read as a
VBench number.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

from .names import DIMENSIONS, TITLES, backbone_labels

SCORE_COLUMNS = ["fps", *DIMENSIONS, "average"]
HEADERS = {"length_s": "Length", "method": "Method", "source": "Source", "training_free": "Training-free"} | {
    c: TITLES[c] for c in SCORE_COLUMNS
}
MISSING = "–"
PAPER_NOTE = "paper: VBench-Long, 128 MovieGen prompts, Wan2.1-T2V-1.3B; FPS on the authors' GPU"


def paper_rows() -> pd.DataFrame:
    """The paper's Table 1 (packaged as analysis/data/paper_table1.csv)."""
    with resources.files("analysis").joinpath("data/paper_table1.csv").open() as f:
        return pd.read_csv(f).assign(source="paper")


def measured_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """One Table-1 row per complete run, in the paper's columns and units."""
    done = runs[runs["status"] == "complete"]
    rows = pd.DataFrame(
        {
            "length_s": done["seconds"],
            "method": done["label"],
            "training_free": done["policy"].ne("dense"),  # dense is the trained model's own memory
            "fps": done["fps"] if "fps" in done else float("nan"),
        }
        | {d: done[d].astype(float) * 100 if d in done else float("nan") for d in DIMENSIONS}
    )
    rows["average"] = done["average6"].astype(float) * 100 if "average6" in done else float("nan")
    return rows.assign(source="measured (" + done["model"].astype(str) + ")")


def backbone_row(runs: pd.DataFrame, length: float) -> dict:
    """What produced each measured score at this length, e.g. "opencv-dis (not VBench)"."""
    done = runs[(runs["status"] == "complete") & (runs["seconds"] == length)]
    row: dict = {"length_s": length, "method": "backbone of the measured scores", "source": "measured"}
    for d in DIMENSIONS:
        if d not in done or done[d].isna().all():
            row[d] = "not measured"
            continue
        row[d] = "; ".join(backbone_labels(done, d))
    if "average6.exact" in done and done["average6"].notna().any():
        row["average"] = "VBench" if done["average6.exact"].eq(True).all() else "includes substitutes"
    return row


def table1(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's rows then the measured rows and their backbone row, for every length, as text."""
    paper, measured = paper_rows(), measured_rows(runs)
    blocks = []
    for length in sorted(set(paper["length_s"]) | set(measured["length_s"])):
        mine = measured[measured["length_s"] == length]
        block = [paper[paper["length_s"] == length], mine]
        if not mine.empty:
            block.append(pd.DataFrame([backbone_row(runs, length)]))
        blocks.append(pd.concat(block, ignore_index=True))
    table = pd.concat(blocks, ignore_index=True)
    shown = table[list(HEADERS)].astype(object)
    shown[SCORE_COLUMNS] = table[SCORE_COLUMNS].map(lambda v: f"{v:.2f}" if isinstance(v, float) and pd.notna(v) else v)
    shown["training_free"] = table["training_free"].map({True: "yes", False: "no"})
    shown["length_s"] = table["length_s"].map(lambda s: f"{s:g} s")
    return shown.fillna(MISSING).rename(columns=HEADERS)


def measured_note(runs: pd.DataFrame) -> str:
    """Where the measured rows come from: models, devices, commits."""
    done = runs[runs["status"] == "complete"]
    return "; ".join(
        f"{what}: {', '.join(map(str, done[column].unique()))}"
        for what, column in (("measured with", "model"), ("on", "device"), ("commit", "commit"))
    )


def to_markdown(table: pd.DataFrame, note: str) -> str:
    """One Markdown table per length, under a heading."""
    parts = ["# Table 1: paper vs measured", "", f"Scores x100. {PAPER_NOTE}. {note}.", ""]
    for length, block in table.groupby("Length", sort=False):
        parts += [f"## {length}", "", block.drop(columns="Length").to_markdown(index=False), ""]
    return "\n".join(parts)


def to_latex(table: pd.DataFrame, note: str) -> str:
    """One booktabs table, lengths as multirow groups (needs \\usepackage{booktabs,multirow})."""
    styler = table.set_index(["Length", "Method"]).style
    styler = styler.format(escape="latex").format_index(escape="latex", axis=0).format_index(escape="latex", axis=1)
    return styler.to_latex(
        hrules=True,
        clines="skip-last;data",
        multirow_align="t",
        position_float="centering",
        caption=f"Table 1, paper vs measured (scores x100; {PAPER_NOTE}; {note}).",
        label="tab:table1",
    )
