"""A stress run of staged jobs (not a timing): many short jobs with random priorities on a 2-node cluster, some
terminated or deleted while they wait (queued or staged), the cluster resized from 2 nodes to 1 and back while
they run. Checks that every job ends, that none runs twice but those the resize requeued, and that the nodes
end idle with nothing staged on them.

    python bench/stress_staging.py [--seed 1] [--jobs 300]
"""

from __future__ import annotations

import argparse
import collections
import random
import sqlite3
from typing import Any

from harness import API, server, wait_for


def resize(bench: Any, nodes: int) -> None:
    scale = {"manual": {"targetNodeCount": nodes, "nodeDeallocationOption": "requeue"}}
    bench.http.patch(f"{bench.ws}/clusters/c" + API, json={"properties": {"scaleSettings": scale}}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=300)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with server(nodes=2) as bench:
        bench.use_experiment("stress")
        marks = bench.home / "marks"
        names = [f"j{i}" for i in range(args.jobs)]
        stopped = set()
        for i, name in enumerate(names):
            priority = rng.choice(["low", "normal", "normal", "high"])
            bench.submit(
                name, f"echo {name} >> {marks}; sleep {rng.choice([0, 0.005, 0.01, 0.03])}", schedulingPriority=priority
            )
            if i > 5 and rng.random() < 0.08:
                victim = rng.choice(names[:i])
                if rng.random() < 0.5:
                    answer = bench.http.post(bench.job_path(victim) + "/terminate" + API)
                else:
                    answer = bench.http.delete(bench.job_path(victim) + API)
                if answer.status_code < 300:
                    stopped.add(victim)
            if i == args.jobs // 3:
                resize(bench, 1)
            if i == 2 * args.jobs // 3:
                resize(bench, 2)
        listing = f"{bench.ws}/experiments/stress/jobs" + API

        def ended() -> list[dict[str, Any]] | None:
            jobs = bench.wire.call("GET", listing)["value"]
            return jobs if all(j["properties"]["executionState"] in ("succeeded", "failed") for j in jobs) else None

        jobs = wait_for(ended, timeout=600, interval=0.2)
        runs = collections.Counter(line.split()[0] for line in marks.read_text().splitlines())
        requeued = {
            path.parts[-4]
            for path in (bench.home / "logs").rglob("execution.log")
            if "The job was requeued" in path.read_text()
        }
        twice = sorted(name for name, count in runs.items() if count > 1 and name not in requeued)
        lost = [
            j["name"]
            for j in jobs
            if (j["properties"]["executionState"] == "succeeded" and runs[j["name"]] < 1)
            or (j["properties"]["executionState"] == "failed" and j["name"] not in stopped)
        ]
        with sqlite3.connect(bench.home / "batchai.db") as db:
            nodes = db.execute("SELECT name, state, job_id, next_job_id FROM nodes").fetchall()
        states = collections.Counter(j["properties"]["executionState"] for j in jobs)
        print(f"jobs {dict(states)}; terminated or deleted {len(stopped)}; requeued by the resize {sorted(requeued)}")
        print(f"ran twice (not requeued): {twice}; failed unasked or succeeded without running: {lost}")
        print(f"nodes: {nodes}")
        assert not twice and not lost, "a job ran twice, or ended without reason"
        assert all(state == "idle" and job is None and staged is None for _, state, job, staged in nodes), nodes


if __name__ == "__main__":
    main()
