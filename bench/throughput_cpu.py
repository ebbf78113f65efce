"""Where the two cores go in benchmark (b): rounds of the throughput benchmark with the CPU each part used per
job, from the OS's counters (the server, by thread; the node launcher; the jobs it ran; the benchmark's client; the
cores' idle time). A rate drifts with the machine from day to day; these counts drift much less, so they say
better what a change to the per-job path saved.

    python bench/throughput_cpu.py [--rounds 3] [--jobs 200]

The server's threads are named when ``py-spy`` is on PATH (it tells their names); otherwise by thread id.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections import Counter

import psutil
from harness import server
from throughput import NODES, batchai_seconds, xargs_seconds


def thread_seconds(process: psutil.Process) -> Counter[str]:
    """CPU seconds (user and system) of each of the process's threads, by thread id."""
    return Counter({str(t.id): t.user_time + t.system_time for t in process.threads()})


def idle_seconds() -> float:
    times = psutil.cpu_times()
    return float(times.idle + times.iowait)  # all cores


def thread_names(pid: int) -> dict[str, str]:
    """The server's threads' names by thread id, as py-spy tells them (none without py-spy)."""
    spy = shutil.which("py-spy")
    if not spy:
        return {}
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+\): "(.*?)"', dump)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with server(nodes=NODES) as bench:
        batchai_seconds(bench, 20, "warm-")  # (the launcher starts with the first job)
        found = subprocess.check_output(["pgrep", "-f", f"server start --home {bench.home}"]).split()
        served = psutil.Process(int(found[0]))
        launcher = next(p for p in served.children() if "batchai.runtime.launcher" in " ".join(p.cmdline()))
        me = psutil.Process()
        threads: Counter[str] = Counter()
        parts: Counter[str] = Counter()
        for r in range(args.rounds):
            start = me.cpu_times()
            base = xargs_seconds(args.jobs)
            parts["xargs"] += me.cpu_times().children_user + me.cpu_times().children_system
            parts["xargs"] -= start.children_user + start.children_system
            before = thread_seconds(served), launcher.cpu_times(), idle_seconds(), me.cpu_times()
            ours = batchai_seconds(bench, args.jobs, f"r{r}-")
            after = thread_seconds(served), launcher.cpu_times(), idle_seconds(), me.cpu_times()
            threads.update({tid: seconds - before[0].get(tid, 0.0) for tid, seconds in after[0].items()})
            parts["launcher"] += after[1].user + after[1].system - before[1].user - before[1].system
            parts["jobs"] += after[1].children_user + after[1].children_system
            parts["jobs"] -= before[1].children_user + before[1].children_system
            parts["idle"] += after[2] - before[2]
            parts["client"] += after[3].user + after[3].system - before[3].user - before[3].system
            print(f"round {r + 1}: {args.jobs / ours:.1f} jobs/s, ratio to xargs -P2 {base / ours:.2f}")
        names = thread_names(served.pid)

    def per_job(seconds: float) -> str:
        return f"{1000 * seconds / (args.jobs * args.rounds):6.2f} ms"

    print("CPU per job:")
    for tid, seconds in threads.most_common():
        if seconds > 0:
            print(f"  {per_job(seconds)}  server thread {names.get(tid, tid)}")
    print(f"  {per_job(sum(threads.values()))}  the server in all")
    print(f"  {per_job(parts['launcher'])}  the node launcher")
    print(f"  {per_job(parts['jobs'])}  the jobs (their processes, reaped by the launcher)")
    print(f"  {per_job(parts['xargs'])}  the same commands under xargs -P2 (with sh), for comparison")
    print(f"  {per_job(parts['client'])}  the benchmark's client")
    print(f"  {per_job(parts['idle'])}  idle time of the two cores, added up")


if __name__ == "__main__":
    main()
