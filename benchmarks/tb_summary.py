"""Print the last value of chosen TensorBoard tags for each run folder, as a markdown table.

    python benchmarks/tb_summary.py runs/* --tags cpc/loss cpc/accuracy_k1 cpc/accuracy_k12 time/fps
    python benchmarks/tb_summary.py runs/* --at 100000 --window 10000   # mean of the points in (90k, 100k]

``--at STEP`` reads the values logged at or before STEP instead of the last ones (runs stopped at different
steps then compare at the same step); ``--window W`` averages the points logged in ``(STEP - W, STEP]``.

Run folders are those written by the agent scripts (events under ``<run>/tb``); a tag a run lacks shows "-".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalar_points(run_dir: Path, tags):
    """Every logged (step, value) of each tag, over all event files of the run (a resumed run has several)."""
    points = {tag: {} for tag in tags}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in tags:
            if tag in accumulator.Tags()["scalars"]:
                points[tag].update((event.step, event.value) for event in accumulator.Scalars(tag))
    return points


def last_values(run_dir: Path, tags, at=None, window=0):
    """Per tag: the value logged last (at or before ``at`` when given), or the mean of the values logged in
    ``(at - window, at]``; tags without such a point are left out."""
    values = {}
    for tag, points in scalar_points(run_dir, tags).items():
        steps = sorted(step for step in points if at is None or step <= at)
        if not steps:
            continue
        chosen = [step for step in steps if step > at - window] if window > 0 else steps[-1:]
        if chosen:
            values[tag] = sum(points[step] for step in chosen) / len(chosen)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tags", nargs="+", default=["cpc/loss", "cpc/accuracy_k1", "cpc/accuracy_k12", "time/fps"])
    parser.add_argument("--at", type=int, default=None, help="read the values logged at or before this env step")
    parser.add_argument("--window", type=int, default=0, help="with --at: average the points in (at - window, at]")
    args = parser.parse_args()
    if args.window and args.at is None:
        parser.error("--window goes with --at")
    print("| run | " + " | ".join(args.tags) + " |")
    print("|---" * (len(args.tags) + 1) + "|")
    for run in args.runs:
        values = last_values(run, args.tags, args.at, args.window)
        cells = [f"{values[t]:.3f}" if t in values else "-" for t in args.tags]
        print(f"| {run.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
