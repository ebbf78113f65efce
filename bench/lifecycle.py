"""Where the time of benchmark (b) goes: one round of 200 trivial jobs on a 2-node cluster, traced with the
kernel's scheduler events (``perf record -e sched:*``, so it needs ``perf`` and the right to trace).

    python bench/lifecycle.py [--jobs 200] [--rounds 3]

It prints, over the round: how long 0, 1 or 2 jobs were running at once (a job: from the launcher's fork
to its exit), how long a job's exit is from the next job's fork, and the two cores' time per job split
between the jobs, the server, the launcher, the benchmark's client, other processes and idle. Each round is
one trace; rounds are printed one by one.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from harness import server
from throughput import batchai_seconds

EVENTS = "sched:sched_switch,sched:sched_process_fork,sched:sched_process_exit"
# perf script's line: comm pid/tid [cpu] time: sched:event: fields
LINE = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$")


def pid_of(pattern: str) -> int:
    return int(subprocess.check_output(["pgrep", "-f", "--", pattern]).split()[0])


def trace(bench, jobs: int, prefix: str, data: Path) -> float:  # type: ignore[no-untyped-def]
    """Run one round under ``perf record``; returns the jobs per second the client saw."""
    perf = subprocess.Popen(["perf", "record", "-q", "-a", "-e", EVENTS, "-o", str(data)])
    time.sleep(1.0)  # perf's start-up is not in the round
    elapsed = batchai_seconds(bench, jobs, prefix)
    perf.send_signal(2)
    perf.wait()
    return jobs / elapsed


def analyse(data: Path, server_pid: int, launcher_pid: int) -> None:
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "comm,pid,tid,cpu,time,event,trace"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    matches = [m for m in map(LINE.match, script.splitlines()) if m]
    events = [(float(m[5]), int(m[4]), int(m[2]), int(m[3]), m[6], m[7]) for m in matches]
    jobs: dict[int, list[float]] = {}  # the launcher's children: [fork, exit]
    process_of: dict[int, int] = {}  # thread id -> process id
    for when, _cpu, pid, tid, event, fields in events:
        process_of[tid] = pid
        if event == "sched_process_fork" and pid == launcher_pid:
            child = re.search(r"child_pid=(\d+)", fields)
            if child:
                jobs[int(child[1])] = [when, 0.0]
                process_of[int(child[1])] = int(child[1])
        elif event == "sched_process_exit" and pid in jobs:
            jobs[pid][1] = when
    ended = {pid: span for pid, span in jobs.items() if span[1]}
    start, end = min(s for s, _ in ended.values()), max(e for _, e in ended.values())
    count = len(ended)
    # How many jobs ran at once, over the round.
    changes = sorted([(s, 1) for s, _ in ended.values()] + [(e, -1) for _, e in ended.values()])
    running, last, spans = 0, start, collections.Counter[int]()
    for when, step in changes:
        spans[running] += when - last
        running, last = running + step, when
    total = sum(spans.values())
    at_once = ", ".join(f"{n}: {spans[n] / total:.1%}" for n in sorted(spans))
    rate = count / (end - start)
    print(f"{count} jobs in {end - start:.2f} s ({rate:.1f} jobs/s); time with n jobs running: {at_once}")
    # A node's wait between jobs: from a job's exit to the next fork (on either node: with two nodes and one job
    # ending at a time, nearly always its own node's next job, started by the launcher as a staged follower).
    forks = sorted(s for s, _ in ended.values())
    gaps = sorted(forks[i] - e for e in sorted(e for _, e in ended.values()) if (i := bisect.bisect(forks, e)) < count)
    if gaps:
        p50, p90 = (1000 * gaps[int(q * (len(gaps) - 1))] for q in (0.5, 0.9))
        print(
            f"  a job's exit to the next fork: median {p50:.2f} ms, p90 {p90:.2f} ms, {1000 * sum(gaps):.0f} ms in all"
        )

    def owner(tid: int, client_pid: int = os.getpid()) -> str:
        pid = process_of.get(tid, tid)
        if tid == 0:
            return "idle"
        return {server_pid: "server", launcher_pid: "launcher", client_pid: "client"}.get(
            pid, "job" if pid in ended else "other"
        )

    on_cpu: dict[int, tuple[float, int]] = {}
    used = collections.Counter[str]()
    for when, cpu, _pid, _tid, event, fields in events:
        if event != "sched_switch":
            continue
        following = re.search(r"next_pid=(\d+)", fields)
        if cpu in on_cpu:
            since, tid = on_cpu[cpu]
            overlap = min(when, end) - max(since, start)
            if overlap > 0:
                used[owner(tid)] += overlap
        if following:
            on_cpu[cpu] = (when, int(following[1]))
    shares = ", ".join(f"{who} {1000 * t / count:.2f} ms" for who, t in used.most_common())
    print(f"  the cores' time per job: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server(nodes=2) as bench, tempfile.TemporaryDirectory() as scratch:
        batchai_seconds(bench, 50, "warm-")  # the launcher is started, the caches warm
        server_pid = pid_of(f"server start --home {bench.home}")
        launcher_pid = pid_of(f"batchai.runtime.launcher {bench.home}")
        for r in range(args.rounds):
            data = Path(scratch) / f"round-{r}.data"
            rate = trace(bench, args.jobs, f"r{r}-", data)
            print(f"round {r + 1}: {rate:.1f} jobs/s as the client saw it")
            analyse(data, server_pid, launcher_pid)


if __name__ == "__main__":
    main()
