"""A whole ``gradremedy eval``, this checkout against an older commit, side by side on one model and data set.

    python benchmarks/eval_speed.py --exp EXP --data DATA                 # against main
    python benchmarks/eval_speed.py --exp EXP --data DATA --old-ref e7afec9 --serial

Each path is the command a user runs, ``python -m gradremedy.cli eval --exp EXP --data DATA --out ...``, in
a fresh process (start-up, model loading, decoding, scoring and writing included), with ``PYTHONPATH`` set to
the ``src`` of the code under test: ``old`` is the ``src`` of ``--old-ref`` (``git archive``, unpacked in a
temporary directory), ``new`` is this checkout with its defaults (half the cores score in worker
processes). ``--serial`` adds ``new --workers 0`` (the enhancer runs once, but everything runs in one
process, with torch's threads as they are by default). The paths run in alternating order, A B B A
(A B C C B A with ``--serial``), ``--rounds`` times; each run's elapsed time and CPU
time (user + system of the process and its workers) is printed, with what the rest of the
machine used meanwhile (``others``: busy cores from /proc/stat, less this run's CPU time). Before each run
the script waits (up to ``--quiet-wait`` seconds) for a second in which other processes use less than
0.25 of a core. It checks that every run wrote the same hypotheses and the same report (but for its
timings) and stops otherwise. The last line is ``eval_speedup: X.XX``: the old path's fastest elapsed time
over the new path's (the runs least disturbed by other jobs); means are printed too. On a shared machine
elapsed time includes waiting for a core, and a starved run also burns CPU time in torch's waiting threads.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradremedy.provenance import available_cores, cpu_name, git_commit

ROOT = Path(__file__).resolve().parents[1]


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat (0 where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit: float) -> float:
    """Wait until one second passes with less than 0.25 busy cores (at most ``limit`` s); the wait."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        before = busy_seconds()
        time.sleep(1.0)
        if busy_seconds() - before < 0.25:
            break
        time.sleep(2.0)
    return time.perf_counter() - started


def run_eval(src: Path, args: argparse.Namespace, out: Path, extra: list[str]) -> tuple[float, float, float]:
    """(elapsed s, CPU s of the eval process and its workers, busy cores of other processes meanwhile) of
    one ``gradremedy eval``."""
    command = [
        sys.executable,
        "-m",
        "gradremedy.cli",
        "eval",
        "--exp",
        str(args.exp),
        "--data",
        str(args.data),
    ]
    command += ["--out", str(out), *extra]
    env = {**os.environ, "PYTHONPATH": str(src), "TQDM_DISABLE": "1"}
    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds() - busy
    if done.returncode != 0:
        sys.exit(f"eval_speed: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, max(0.0, busy - cpu) / elapsed


def results(out: Path) -> tuple[dict, str]:
    """A run's report without its timings and file names, and its hypotheses."""
    report = json.loads(out.read_text())
    kept = {k: v for k, v in report.items() if k not in ("seconds", "rtf", "hyp_file")}
    return kept, out.with_name(out.stem + ".hyp.txt").read_text()


def check_imports(paths: dict[str, tuple[Path, list[str]]]) -> None:
    """Each path must import gradremedy from its own ``src`` (not from an installed copy)."""
    for name, (src, _) in paths.items():
        probe = [sys.executable, "-c", "import gradremedy; print(gradremedy.__file__)"]
        found = subprocess.run(
            probe, env={**os.environ, "PYTHONPATH": str(src)}, capture_output=True, text=True
        )
        if not found.stdout.strip().startswith(str(src)):
            sys.exit(f"eval_speed: {name}: gradremedy comes from {found.stdout.strip()}, not {src}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exp", type=Path, required=True, help="a trained experiment directory")
    parser.add_argument("--data", type=Path, required=True, help="the data directory to evaluate")
    parser.add_argument("--old-ref", default="main", help="git commit or branch of the old path (main)")
    parser.add_argument("--rounds", type=int, default=1, help="A B B A rounds (1)")
    parser.add_argument("--serial", action="store_true", help="also time this checkout with --workers 0")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="longest wait for a quiet machine (s)")
    args = parser.parse_args()

    old_commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.old_ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"machine: {cpu_name()}, {available_cores()} cores; python {sys.version.split()[0]}")
    print(f"new: {ROOT} at {git_commit()}; old: {args.old_ref} ({old_commit})")
    print(f"exp: {args.exp}; data: {args.data}")
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        old_tree = Path(tmp) / "old"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", old_commit, "src"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        paths = {"old": (old_tree / "src", []), "new": (ROOT / "src", [])}
        if args.serial:
            paths["new --workers 0"] = (ROOT / "src", ["--workers", "0"])
        check_imports(paths)
        names = list(paths)
        order = (names + names[::-1]) * args.rounds
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        reference = None
        for i, name in enumerate(order):
            src, extra = paths[name]
            waited = wait_for_quiet(args.quiet_wait)
            load = os.getloadavg()[0]
            out = Path(tmp) / f"run{i}.json"
            elapsed, cpu, others = run_eval(src, args, out, extra)
            times[name].append((elapsed, cpu))
            print(
                f"run {i + 1}: {name:16s} elapsed {elapsed:6.2f} s  CPU {cpu:6.2f} s  "
                f"others {others:.2f} cores  (load {load:.2f}, waited {waited:.0f} s)",
                flush=True,
            )
            got = results(out)
            if reference is None:
                reference = got
            elif got != reference:
                sys.exit(f"eval_speed: run {i + 1} ({name}) differs from run 1: reports or hypotheses")
    print(f"same hypotheses and report in all {len(order)} runs")
    print(
        f"{'path':16s}  {'elapsed s: fastest':>18s}  {'mean':>7s}  {'CPU s: least':>12s}  {'mean':>7s}  runs"
    )
    for name in names:
        walls, cpus = [t[0] for t in times[name]], [t[1] for t in times[name]]
        print(
            f"{name:16s}  {min(walls):18.2f}  {statistics.mean(walls):7.2f}  {min(cpus):12.2f}  "
            f"{statistics.mean(cpus):7.2f}  {len(walls)}"
        )
    old, new = times["old"], times["new"]
    mean_ratio = statistics.mean(t[0] for t in old) / statistics.mean(t[0] for t in new)
    print(f"mean_elapsed_old_over_new: {mean_ratio:.2f}")
    print(f"least_cpu_old_over_new: {min(t[1] for t in old) / min(t[1] for t in new):.2f}")
    print(f"eval_speedup: {min(t[0] for t in old) / min(t[0] for t in new):.2f}")


if __name__ == "__main__":
    main()
