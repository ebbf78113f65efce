"""Benchmark: dispatch latency of a trivial job on the Ray provider, against Ray's own job submission.

One real Ray cluster on this machine (``tests.raykit.RayCluster``: a head with no CPUs and its dashboard,
two worker nodes with one unit of the ``batchai`` resource each), and two batchai servers, each with a
2-node cluster: one on the Ray provider (its nodes are the two Ray nodes), one on the local provider (the
default). Variants, interleaved round by round so that machine drift cancels (three warm-up rounds are
discarded):

- ``jsc``: ``JobSubmissionClient.submit_job`` of the command on the same Ray cluster (the baseline);
- ``ray-1``/``ray-2``: a batchai job on the Ray provider, 1 and 2 nodes (1 node: ``customToolkitSettings``;
  2 nodes: ``pyTorchSettings`` with the same snippet as its script, a process on each node);
- ``local-1``/``local-2``: the same on the local provider.

The command is ``python -c 'import time; print(repr(time.time()))'``. "Started" is the time it prints minus
time.time() just before the create/submit request was sent (for a 2-node job the later of the two
processes, i.e. both running); "succeeded" is sent -> the job seen succeeded by a client polling every
10 ms. Ratios are each variant's median over the ``jsc`` median.

    python bench/ray_dispatch.py [--runs 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.raykit

from harness import API, PYTHON, Bench, free_port, ms, server, stats, wait_for

from tests.raykit import RAY_ENV, RayCluster  # sets Ray's environment before ray is imported

SNIPPET = "import time; print(repr(time.time()))"
COMMAND = f"{PYTHON} -c '{SNIPPET}'"
WARMUP = 3
POLL = 0.01
VARIANTS = ("jsc", "ray-1", "ray-2", "local-1", "local-2")
LABELS = {
    "jsc": "Ray `JobSubmissionClient` (baseline)",
    "ray-1": "batchai, Ray provider, 1 node",
    "ray-2": "batchai, Ray provider, 2 nodes",
    "local-1": "batchai, local provider, 1 node",
    "local-2": "batchai, local provider, 2 nodes",
}


def jsc_client(url: str) -> JobSubmissionClient:
    """A JobSubmissionClient once the head's dashboard answers (it comes up a little after the head)."""
    from ray.job_submission import JobSubmissionClient

    def attempt() -> JobSubmissionClient | None:
        try:
            client = JobSubmissionClient(url)
            client.list_jobs()
            return client
        except Exception:
            return None

    return wait_for(attempt, timeout=120, interval=0.25)


def jsc_once(client: JobSubmissionClient) -> tuple[float, float]:
    from ray.job_submission import JobStatus

    sent = time.time()
    job_id = client.submit_job(entrypoint=COMMAND, entrypoint_num_cpus=0)
    deadline = time.monotonic() + 120
    while not (status := client.get_job_status(job_id)).is_terminal():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray job {job_id} still {status} after 120 s")
        time.sleep(POLL)
    finished = time.time()
    logs = client.get_job_logs(job_id)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"Ray job {job_id} ended {status}: {logs}")
    return float(logs.strip().splitlines()[-1]) - sent, finished - sent


def batchai_once(bench: Bench, name: str, nodes: int) -> tuple[float, float]:
    if nodes == 1:
        sent = bench.submit(name, COMMAND)
    else:  # a process on each node (a custom toolkit's command runs on the first node only)
        script = bench.home / "snippet.py"
        script.write_text(SNIPPET + "\n")
        settings = {"pythonScriptFilePath": str(script), "pythonInterpreterPath": PYTHON}
        sent = bench.submit(name, "", node_count=nodes, pyTorchSettings=settings)
    state = wait_for(
        lambda: (s := bench.state(name)) in ("succeeded", "failed") and s,
        interval=POLL,
    )
    finished = time.time()
    properties = bench.http.get(bench.job_path(name) + API).json()["properties"]
    if state != "succeeded":
        raise RuntimeError(f"batchai job {name} ended {state}: {properties.get('executionInfo')}")
    out = bench.home / "logs" / properties["jobOutputDirectoryPathSegment"] / "stdouterr"
    files = ["stdout.txt"] if nodes == 1 else [f"stdout-{rank}.txt" for rank in range(nodes)]  # one per rank
    started = max(float((out / f).read_text()) for f in files)  # both processes running
    return started - sent, finished - sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    started: dict[str, list[float]] = {v: [] for v in VARIANTS}
    done: dict[str, list[float]] = {v: [] for v in VARIANTS}

    cluster = RayCluster(2, dashboard_port=free_port())
    try:
        assert cluster.dashboard_url is not None
        client = jsc_client(cluster.dashboard_url)
        ray_env = {**RAY_ENV, "BATCHAI_RAY_ADDRESS": cluster.address}
        with server(nodes=2, env=ray_env, ready_timeout=180) as on_ray, server(nodes=2) as local:
            for i in range(args.runs + WARMUP):
                results = {
                    "jsc": jsc_once(client),
                    "ray-1": batchai_once(on_ray, f"r1-{i}", 1),
                    "ray-2": batchai_once(on_ray, f"r2-{i}", 2),
                    "local-1": batchai_once(local, f"l1-{i}", 1),
                    "local-2": batchai_once(local, f"l2-{i}", 2),
                }
                if i >= WARMUP:
                    for variant, (s, d) in results.items():
                        started[variant].append(s)
                        done[variant].append(d)
    finally:
        cluster.shutdown()

    s_stats = {v: stats(started[v]) for v in VARIANTS}
    d_stats = {v: stats(done[v]) for v in VARIANTS}
    base_s, base_d = s_stats["jsc"]["median"], d_stats["jsc"]["median"]
    print(f"{args.runs} rounds (+{WARMUP} warm-up), command: python -c '{SNIPPET}'")
    print()
    print(
        f"| {args.runs} runs | sent -> started, median | p90 | sent -> `succeeded` seen, median | p90 "
        "| started median / JSC | succeeded median / JSC |"
    )
    print("|---|---|---|---|---|---|---|")
    for v in VARIANTS:
        s, d = s_stats[v], d_stats[v]
        print(
            f"| {LABELS[v]} | {ms(s['median'])} | {ms(s['p90'])} | {ms(d['median'])} | {ms(d['p90'])} "
            f"| {s['median'] / base_s:.2f} | {d['median'] / base_d:.2f} |"
        )


if __name__ == "__main__":
    main()
