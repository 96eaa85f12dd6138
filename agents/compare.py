"""Compare the same agent with and without CPC over several seeds, then build the report.

    python -m agents.compare --env MiniWorld-FourRooms-v0 --env MiniWorld-OneRoom-v0 --seeds 3 \\
        --total-timesteps 500000 --algo ppo --out results/fourrooms
    python -m agents.compare ... --out DIR -- --cpc-steps-ahead 8 --n-envs 16   # after --: agent flags
    python -m agents.compare ... --seeds 2 --first-seed 3 --out DIR2             # seeds 3 and 4 for DIR's study
    python -m agents.compare --from-runs runs/ other_runs/ --out DIR             # report only, no training
    python -m agents.compare --from-runs DIR2/runs --with-curves DIR/results.csv --out DIR3  # DIR's runs are gone
    python -m agents.compare --from-runs DIR/runs --report-steps 250000 --out DIR250k  # first 250k steps of each
    python -m agents.compare --from-runs runs/ --baseline cpu:off --out DIR  # also every group minus variant cpu, CPC off

Each (env, seed, CPC on/off) is one run of ``agents.<algo>_cpc`` in ``DIR/runs/<name>`` (log in
``DIR/logs/<name>.log``), up to ``--jobs`` at a time, each with ``cores / jobs`` torch threads. Then
``DIR/results.csv``, ``DIR/results.md`` and ``DIR/curves.png`` are written (see :mod:`agents.report`).

Running the same command again continues: completed runs are kept, interrupted ones resume from their
newest checkpoint, runs that failed before their first checkpoint start again. ``DIR`` must be new or hold
this same comparison; anything else there is refused, never overwritten. A failed run is listed in the
report and makes the command exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from agents.report import build_report, check_out_dir, find_run_dirs, parse_baseline
from agents.train import INTERRUPTED, raise_keyboard_interrupt, write_json

PLAN_FILE = "compare.json"
COMPARE_ENTRIES = ("runs", "logs", PLAN_FILE)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the comparison."""

    env_id: str
    seed: int
    cpc: bool
    name: str


def plan_runs(env_ids: Sequence[str], seeds: int, algo: str, first_seed: int = 0) -> List[RunSpec]:
    """Every (env, seed, CPC on/off), CPC runs and their baselines interleaved so partial results pair up."""
    return [
        RunSpec(env_id, seed, cpc, f"{env_id}__{algo}{'_cpc' if cpc else ''}__seed{seed}")
        for env_id in env_ids
        for seed in range(first_seed, first_seed + seeds)
        for cpc in (True, False)
    ]


def check_comparison_dir(out: Path, plan: Dict) -> None:
    """Refuse an output folder that holds anything but this same comparison."""
    check_out_dir(out, COMPARE_ENTRIES)
    if not out.exists():
        return
    plan_file = out / PLAN_FILE
    if any(out.iterdir()) and not plan_file.is_file():
        raise ValueError(f"--out {out} holds results without a {PLAN_FILE}; choose a new folder")
    if plan_file.is_file():
        earlier = json.loads(plan_file.read_text())
        if earlier != plan:
            changed = sorted(k for k in set(plan) | set(earlier) if plan.get(k) != earlier.get(k))
            raise ValueError(f"--out {out} holds a different comparison (differs in {', '.join(changed)}); choose a new folder")


def run_state(run_dir: Path) -> str:
    """``new``, ``completed``, ``resumable`` (has a checkpoint) or ``restart`` (stopped before any checkpoint)."""
    if not (run_dir / "config.json").is_file():
        return "new"
    try:
        status = json.loads((run_dir / "status.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        status = "unknown"
    if status == "completed":
        return "completed"
    return "resumable" if list((run_dir / "checkpoints").glob("step_*.zip")) else "restart"


def agent_command(spec: RunSpec, args: argparse.Namespace, out: Path, threads: int, agent_args: Sequence[str]) -> List[str]:
    runs = out / "runs"
    common = ["--no-progress", "--torch-threads", str(threads)]
    state = run_state(runs / spec.name)
    if state == "resumable":
        return [sys.executable, "-m", f"agents.{args.algo}_cpc", "--resume", str(runs / spec.name), *common]
    if state == "restart":
        shutil.rmtree(runs / spec.name)  # no checkpoint: nothing to keep; its log stays in logs/
    command = [
        sys.executable, "-m", f"agents.{args.algo}_cpc", "--env", spec.env_id, "--seed", str(spec.seed),
        "--total-timesteps", str(args.total_timesteps), "--log-dir", str(runs), "--run-name", spec.name, *common,
    ]
    if not spec.cpc:
        command.append("--no-cpc")
    return command + list(agent_args)


def run_all(specs: Sequence[RunSpec], args: argparse.Namespace, out: Path, agent_args: Sequence[str]) -> Dict[str, int]:
    """Run the specs, ``args.jobs`` at a time; returns each run's exit code (0 for runs already complete)."""
    (out / "logs").mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    pending = [s for s in specs if run_state(out / "runs" / s.name) != "completed"]
    codes = {s.name: 0 for s in specs if s not in pending}
    if codes:
        print(f"{len(codes)} run(s) already complete, kept", flush=True)
    running: Dict[str, tuple] = {}
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                spec = pending.pop(0)
                log = open(out / "logs" / f"{spec.name}.log", "a")
                command = agent_command(spec, args, out, threads, agent_args)
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                running[spec.name] = (process, log, time.time())
                print(f"started  {spec.name} ({'resume' if '--resume' in command else 'new'})", flush=True)
            time.sleep(1.0)
            for name, (process, log, start) in list(running.items()):
                if process.poll() is not None:
                    log.close()
                    codes[name] = process.returncode
                    if process.returncode == 0:
                        outcome = "done"
                    elif process.returncode == INTERRUPTED:
                        outcome = "interrupted (checkpoint saved; the same command continues it)"
                    else:
                        outcome = f"FAILED (exit {process.returncode}, see logs/{name}.log)"
                    print(f"finished {name} in {time.time() - start:.0f} s: {outcome}", flush=True)
                    del running[name]
    except KeyboardInterrupt:
        for process, log, _ in running.values():
            process.terminate()  # the agent saves a checkpoint on SIGTERM
        for process, log, _ in running.values():
            process.wait()
            log.close()
        print("interrupted: run the same command again to continue", file=sys.stderr)
        raise
    return codes


def parse(argv: Optional[Sequence[str]]):
    argv = list(sys.argv[1:] if argv is None else argv)
    agent_args: List[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, agent_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m agents.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", action="append", help="task id; repeat for several (default MiniWorld-OneRoom-v0)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per (env, CPC on/off): 0 .. seeds-1")
    parser.add_argument(
        "--first-seed", type=int, default=0, metavar="N",
        help="start the seeds at N (N .. N+seeds-1), to add seeds to an earlier comparison in a new --out; "
        "--from-runs then reports both folders together",
    )
    parser.add_argument("--total-timesteps", type=int, default=500_000, help="env steps per run")
    parser.add_argument("--algo", choices=("ppo", "a2c", "recurrent_ppo"), default="ppo")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel (default: the core count)")
    parser.add_argument("--out", required=True, type=Path, help="folder for runs/, logs/ and the report")
    parser.add_argument("--from-runs", nargs="+", type=Path, metavar="DIR", help="only build the report from these run folders")
    parser.add_argument(
        "--report-steps", type=int, default=None, metavar="STEPS",
        help="with --from-runs: measure every run over its first STEPS env steps, counting runs stopped after "
        "that many (see agents.report --steps)",
    )
    parser.add_argument(
        "--baseline", action="append", default=[], metavar="VARIANT:on|off",
        help="with --from-runs: also give every group's difference from this group (see agents.report --baseline)",
    )
    parser.add_argument(
        "--with-curves", action="append", default=[], type=Path, metavar="RESULTS_CSV",
        help="with --from-runs: also include the runs of an earlier report's results.csv whose folders are gone "
        "(see agents.report --with-curves)",
    )
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.total_timesteps < 1:
        parser.error("--seeds, --jobs and --total-timesteps must be positive")
    if args.first_seed < 0:
        parser.error("--first-seed must be 0 or more")
    if args.from_runs and (args.env or agent_args):
        parser.error("--from-runs builds a report only: it takes no --env or agent flags")
    if args.report_steps is not None and not args.from_runs:
        parser.error("--report-steps goes with --from-runs (a comparison reports its completed runs)")
    if args.with_curves and not args.from_runs:
        parser.error("--with-curves goes with --from-runs (a comparison reports the runs it trains)")
    if args.baseline and not args.from_runs:
        parser.error("--baseline goes with --from-runs (a comparison's runs have no variant: CPC on vs off is its table)")
    return args, agent_args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args, agent_args = parse(argv)
    out: Path = args.out
    try:
        if args.from_runs:
            check_out_dir(out)
            run_dirs = sorted({d for root in args.from_runs for d in find_run_dirs(root)})
            baselines = [parse_baseline(text) for text in args.baseline]
            paths = build_report(
                run_dirs, out, steps=args.report_steps, baselines=baselines, earlier_curves=args.with_curves
            )
            print(f"report: {paths.markdown}, {paths.csv}, {paths.figure}")
            return 0
        from envs import check_env_id

        env_ids = args.env or ["MiniWorld-OneRoom-v0"]
        for env_id in env_ids:
            check_env_id(env_id)
        plan = {"algo": args.algo, "env_ids": env_ids, "seeds": args.seeds, "total_timesteps": args.total_timesteps, "agent_args": agent_args}
        if args.first_seed:  # only when set, so folders of earlier comparisons still match their plan
            plan["first_seed"] = args.first_seed
        check_comparison_dir(out, plan)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / PLAN_FILE, plan)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    specs = plan_runs(env_ids, args.seeds, args.algo, args.first_seed)
    previous_sigterm = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        codes = run_all(specs, args, out, agent_args)
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    paths = build_report(find_run_dirs(out / "runs"), out, also_allowed=COMPARE_ENTRIES)
    failed = sorted(name for name, code in codes.items() if code not in (0, INTERRUPTED))
    interrupted = sorted(name for name, code in codes.items() if code == INTERRUPTED)
    if interrupted:
        print(f"{len(interrupted)} run(s) interrupted, not in the report yet: run the same command to continue", file=sys.stderr)
    print(f"report: {paths.markdown}, {paths.csv}, {paths.figure}")
    if failed:
        print(f"{len(failed)} run(s) failed and are listed in the report: {', '.join(failed)}", file=sys.stderr)
        return 1
    return INTERRUPTED if interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
