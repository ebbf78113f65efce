"""Benchmark (b): throughput of 200 trivial jobs on a 2-node local cluster against the same 200 commands
run by ``xargs -P2``, both in the same run. Each job's command is ``python -c pass``; jobs are submitted
as fast as the API takes them and the clock stops when a client polling the API sees the last one end.

    python bench/throughput.py [--jobs 200] [--rounds 20] [--command 'python -c pass']

``--command`` runs another command as every job (both under batchai and under xargs), e.g. one that sleeps
50 ms, to see the ratio for jobs that do something.

With ``--compare SRC`` it measures this tree against another checkout's ``src`` instead (two servers,
rounds alternating between them): the machine's drift then cancels out of a change's effect.

    git worktree add /tmp/before HEAD~1 && python bench/throughput.py --rounds 8 --compare /tmp/before/src
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import time

from harness import PYTHON, server, wait_for

COMMAND = f"{PYTHON} -c pass"
NODES = 2  # the cluster's size
LEAD = 12  # how many jobs from the end the poll starts looking closely


def xargs_seconds(jobs: int, command: str = COMMAND) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P2", "-I{}", "sh", "-c", command],
        input="\n".join(str(i) for i in range(jobs)),
        text=True,
        check=True,
    )
    return time.perf_counter() - start


def batchai_seconds(bench, jobs: int, prefix: str, command: str = COMMAND) -> float:  # type: ignore[no-untyped-def]
    bench.use_experiment(prefix.rstrip("-"))
    start = time.perf_counter()
    for i in range(jobs):
        bench.submit(f"{prefix}{i}", command)
    jobs_path = f"{bench.ws}/experiments/{bench.experiment}/jobs?api-version=2018-05-01"

    def all_done() -> bool:
        states = [
            j["properties"]["executionState"]
            for j in bench.wire.call("GET", jobs_path)["value"]
            if j["name"].startswith(prefix)
        ]
        return len(states) == jobs and all(s in ("succeeded", "failed") for s in states)

    # Polling costs the server CPU the jobs need, and seeing the end late costs time: poll a job a dozen from
    # the end every 100 ms while it waits (the last dozen take about 100 ms); once it no longer does, the last
    # job every 5 ms, so that its end is seen within 5 ms; then the job beside it (on the other node), and
    # the whole list to confirm.
    last = f"{prefix}{jobs - 1}"
    wait_for(lambda: bench.state(f"{prefix}{max(0, jobs - 1 - LEAD)}") != "queued", timeout=600, interval=0.1)
    wait_for(lambda: bench.state(last) in ("succeeded", "failed"), timeout=600, interval=0.005)
    tail = [f"{prefix}{i}" for i in range(max(0, jobs - NODES), jobs)]
    wait_for(lambda: all(bench.state(name) in ("succeeded", "failed") for name in tail), timeout=600, interval=0.005)
    wait_for(all_done, timeout=600, interval=0.05)
    elapsed = time.perf_counter() - start
    failed = [
        j["name"]
        for j in bench.wire.call("GET", jobs_path)["value"]
        if j["name"].startswith(prefix) and j["properties"]["executionState"] != "succeeded"
    ]
    assert not failed, f"failed jobs: {failed[:5]}"
    return elapsed


def compare(rounds: int, jobs: int, other_src: str) -> None:
    """This tree against ``other_src``, alternating rounds between a server of each."""
    with contextlib.ExitStack() as stack:
        benches = {
            "this tree": stack.enter_context(server(nodes=NODES)),
            other_src: stack.enter_context(server(nodes=NODES, env={"PYTHONPATH": other_src})),
        }
        rates: dict[str, list[float]] = {name: [] for name in benches}
        for r in range(rounds):
            for name in list(benches) if r % 2 == 0 else list(benches)[::-1]:
                rates[name].append(jobs / batchai_seconds(benches[name], jobs, f"r{r}-"))
        for name, values in rates.items():
            print(f"{name}: median {statistics.median(values):.1f} jobs/s over {rounds} rounds")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--compare", metavar="SRC", help="another checkout's src directory to measure against")
    parser.add_argument("--command", default=COMMAND, help="the command every job runs (default: python -c pass)")
    args = parser.parse_args()
    if args.compare:
        compare(args.rounds, args.jobs, args.compare)
        return
    ratios = []
    with server(nodes=NODES) as bench:
        for r in range(args.rounds):
            base = xargs_seconds(args.jobs, args.command)
            ours = batchai_seconds(bench, args.jobs, f"r{r}-", args.command)
            ratios.append(base / ours)
            print(
                f"round {r + 1}: xargs -P2 {args.jobs / base:.1f} jobs/s, batchai {args.jobs / ours:.1f} jobs/s, "
                f"ratio {base / ours:.2f}"
            )
    ordered = sorted(ratios)
    p10 = ordered[int(0.1 * (len(ordered) - 1))]
    print(
        f"rounds: {len(ratios)}; ratio batchai/xargs: median {statistics.median(ratios):.2f}, "
        f"p90 (the worst tenth) {p10:.2f} (target: median >= 0.7)"
    )


if __name__ == "__main__":
    main()
