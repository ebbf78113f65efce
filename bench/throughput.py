"""Benchmark (b): throughput of 200 trivial jobs on a 2-node local cluster against the same 200 commands
run by ``xargs -P2``, both in the same run: each batchai round between two xargs runs, against their mean.
Each job's command is ``python -c pass``; jobs are submitted as fast as the API takes them and the clock stops
when a client polling the API sees the last one end.

    python bench/throughput.py [--jobs 200] [--rounds 20] [--command 'python -c pass']

``--command`` runs another command as every job (both under batchai and under xargs), e.g. one that sleeps
50 ms, to see the ratio for jobs that do something.

``--phases`` also prints, for each round, how long the client took to create the jobs, how many ended meanwhile,
and the rate of the rest (the jobs' end times as the API tells them).

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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


@dataclass
class Round:
    seconds: float  # from the first PUT until the client saw the last job end
    submit_seconds: float  # the PUTs alone
    ended_while_submitting: int  # jobs that ended before the last PUT returned


def batchai_seconds(bench, jobs: int, prefix: str, command: str = COMMAND) -> float:  # type: ignore[no-untyped-def]
    return batchai_round(bench, jobs, prefix, command).seconds


def batchai_round(bench, jobs: int, prefix: str, command: str = COMMAND) -> Round:  # type: ignore[no-untyped-def]
    bench.use_experiment(prefix.rstrip("-"))
    start = time.perf_counter()
    for i in range(jobs):
        bench.submit(f"{prefix}{i}", command)
    submitted, submitted_at = time.perf_counter() - start, time.time()
    jobs_path = f"{bench.ws}/experiments/{bench.experiment}/jobs?api-version=2018-05-01"

    def listed_once_done() -> list[dict[str, Any]] | None:
        """The round's jobs as the API lists them, once they have all ended."""
        listed = [j for j in bench.wire.call("GET", jobs_path)["value"] if j["name"].startswith(prefix)]
        done = len(listed) == jobs and all(j["properties"]["executionState"] in ("succeeded", "failed") for j in listed)
        return listed if done else None

    # Polling costs the server CPU the jobs need, and seeing the end late costs time: poll a job a dozen from
    # the end every 100 ms while it waits (the last dozen take about 100 ms); once it no longer does, the last
    # job every 5 ms, so that its end is seen within 5 ms; then the job beside it (on the other node), and
    # the whole list to confirm. The clock stops when the job beside the last was seen ended, if no job ended
    # after that (the list of 200 jobs takes the server about as long as a job); else when the list says so.
    last = f"{prefix}{jobs - 1}"
    wait_for(lambda: bench.state(f"{prefix}{max(0, jobs - 1 - LEAD)}") != "queued", timeout=600, interval=0.1)
    wait_for(lambda: bench.state(last) in ("succeeded", "failed"), timeout=600, interval=0.005)
    tail = [f"{prefix}{i}" for i in range(max(0, jobs - NODES), jobs)]
    wait_for(lambda: all(bench.state(name) in ("succeeded", "failed") for name in tail), timeout=600, interval=0.005)
    seen, seen_at = time.perf_counter() - start, time.time()
    listed = wait_for(listed_once_done, timeout=600, interval=0.05)
    elapsed = time.perf_counter() - start
    failed = [j["name"] for j in listed if j["properties"]["executionState"] != "succeeded"]
    assert not failed, f"failed jobs: {failed[:5]}"
    ends = [datetime.fromisoformat(j["properties"]["executionInfo"]["endTime"]).timestamp() for j in listed]
    if max(ends) <= seen_at:
        elapsed = seen
    return Round(elapsed, submitted, sum(1 for end in ends if end <= submitted_at))


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
    parser.add_argument("--phases", action="store_true", help="also the time the PUTs took, and the rate after them")
    args = parser.parse_args()
    if args.compare:
        compare(args.rounds, args.jobs, args.compare)
        return
    ratios = []
    with server(nodes=NODES) as bench:
        # Each batchai round lies between two xargs runs, and its baseline is their mean: the machine's pace
        # drifts by tens of percent within minutes here, and a baseline from before the round only would carry
        # that drift into the ratio.
        after = xargs_seconds(args.jobs, args.command)
        for r in range(args.rounds):
            before = after
            measured = batchai_round(bench, args.jobs, f"r{r}-", args.command)
            after = xargs_seconds(args.jobs, args.command)
            base, ours = (before + after) / 2, measured.seconds
            ratios.append(base / ours)
            print(
                f"round {r + 1}: xargs -P2 {args.jobs / before:.1f} and {args.jobs / after:.1f} jobs/s (before and "
                f"after), batchai {args.jobs / ours:.1f} jobs/s, ratio {base / ours:.2f}"
            )
            if args.phases:
                during, rest = measured.ended_while_submitting, args.jobs - measured.ended_while_submitting
                print(
                    f"  the PUTs took {measured.submit_seconds:.2f} s ({during} jobs ended meanwhile, "
                    f"{during / measured.submit_seconds:.1f} jobs/s); the other {rest} ended at "
                    f"{rest / (ours - measured.submit_seconds):.1f} jobs/s"
                )
    ordered = sorted(ratios)
    p10 = ordered[int(0.1 * (len(ordered) - 1))]
    print(
        f"rounds: {len(ratios)}; ratio batchai/xargs: median {statistics.median(ratios):.2f}, "
        f"p90 (the worst tenth) {p10:.2f} (target: median >= 0.7)"
    )


if __name__ == "__main__":
    main()
