"""`python -m analysis.report <study dir> [--out DIR]`: a study's results.csv, table.md, table.tex,
long_horizon.csv/.md/.tex, plots/ (PNG and PDF) and report.html, written into the study folder
unless --out says otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import html, long_horizon, plots, tables
from .load import (
    StudyError,
    load_attention,
    load_chunks,
    load_clips,
    load_horizon,
    load_study,
    load_videos,
)


def report(study: Path, out: Path | None = None) -> dict[str, Path]:
    """Write every output of the report; returns their paths by name. A run that cannot be read, or a
    damaged file of a complete run, is one `warning:` line on stderr (and listed in report.html)."""
    runs = load_study(study)
    unreadable = runs.loc[runs["status"] == "unreadable", "error"] if "error" in runs else []
    damaged = runs["warning"].dropna() if "warning" in runs else []
    for message in [*unreadable, *damaged]:
        print(f"warning: {message}", file=sys.stderr)
    out = out or study
    out.mkdir(parents=True, exist_ok=True)
    videos = load_videos(runs, study)
    table = tables.table1(runs, videos)
    written = {"results.csv": out / "results.csv", "table.md": out / "table.md", "table.tex": out / "table.tex"}
    runs.to_csv(written["results.csv"], index=False)
    note = tables.measured_note(runs)
    written["table.md"].write_text(tables.to_markdown(table, note))
    written["table.tex"].write_text(tables.to_latex(table, note))
    horizon = load_horizon(runs, study)
    stats = long_horizon.horizon_stats(runs, horizon)
    horizon_table = long_horizon.horizon_table(stats, horizon)
    written |= {name: out / name for name in ("long_horizon.csv", "long_horizon.md", "long_horizon.tex")}
    stats.to_csv(written["long_horizon.csv"], index=False)
    written["long_horizon.md"].write_text(long_horizon.to_markdown(horizon_table))
    written["long_horizon.tex"].write_text(long_horizon.to_latex(horizon_table))
    chunks, clips, bench = load_chunks(runs, study), load_clips(runs, study), load_attention(study)
    figures = plots.all_plots(runs, chunks, clips, videos, bench, out / "plots")
    written |= {f"plots/{name}": path for name, path in figures.items()}
    written["report.html"] = html.render(study, runs, table, horizon_table, figures, out / "report.html")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("study", type=Path, help="folder of runs, e.g. outputs/studies/table1_30s_toy")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the study folder)")
    args = parser.parse_args(argv)
    try:
        written = report(args.study, args.out)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    for name, path in written.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
