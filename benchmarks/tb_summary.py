"""Print the last value of chosen TensorBoard tags for each run folder, as a markdown table.

    python benchmarks/tb_summary.py runs/* --tags cpc/loss cpc/accuracy_k1 cpc/accuracy_k12 time/fps

Run folders are those written by the agent scripts (events under ``<run>/tb``); a tag a run lacks shows "-".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def last_values(run_dir: Path, tags):
    values = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in tags:
            if tag in accumulator.Tags()["scalars"]:
                last = accumulator.Scalars(tag)[-1]
                if tag not in values or last.step >= values[tag][0]:
                    values[tag] = (last.step, last.value)
    return {tag: value for tag, (_, value) in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--tags", nargs="+", default=["cpc/loss", "cpc/accuracy_k1", "cpc/accuracy_k12", "time/fps"])
    args = parser.parse_args()
    print("| run | " + " | ".join(args.tags) + " |")
    print("|---" * (len(args.tags) + 1) + "|")
    for run in args.runs:
        values = last_values(run, args.tags)
        cells = [f"{values[t]:.3f}" if t in values else "-" for t in args.tags]
        print(f"| {run.name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
