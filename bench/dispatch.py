"""Benchmark (a): dispatch latency of a trivial job on the local provider.

Measures, per run: ``job create`` sent -> the user's process starts (it prints ``time.time()`` first thing),
and ``job create`` sent -> ``succeeded`` seen by a client polling the API. Baseline, in the same run:
spawning the same Python command directly (``python -c 'import time; print(time.time())'``), sent -> started.

    python bench/dispatch.py [--runs 30]
"""

from __future__ import annotations

import argparse
import subprocess
import time

from harness import PYTHON, ms, server, stats, wait_for

SNIPPET = "import time; print(repr(time.time()))"


def baseline_once() -> float:
    before = time.time()
    out = subprocess.run([PYTHON, "-c", SNIPPET], capture_output=True, text=True, check=True).stdout
    return float(out) - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    base, started, done = [], [], []
    with server(nodes=1) as bench:
        command = f"{PYTHON} -c '{SNIPPET}'"
        for i in range(args.runs + 3):  # three warm-up rounds
            b = baseline_once()
            name = f"d{i}"
            sent = bench.submit(name, command)
            wait_for(lambda n=name: bench.state(n) == "succeeded", interval=0.01)
            finished = time.time()
            segment = bench.http.get(bench.job_path(name) + "?api-version=2018-05-01").json()["properties"][
                "jobOutputDirectoryPathSegment"
            ]
            first = float((bench.home / "logs" / segment / "stdouterr" / "stdout.txt").read_text())
            if i >= 3:
                base.append(b)
                started.append(first - sent)
                done.append(finished - sent)
    sb, ss, sd = stats(base), stats(started), stats(done)
    print(f"runs: {sb['n']}")
    print(f"baseline spawn python -c   median {ms(sb['median'])}  p90 {ms(sb['p90'])}")
    print(f"create -> process started  median {ms(ss['median'])}  p90 {ms(ss['p90'])}")
    print(f"create -> succeeded (poll) median {ms(sd['median'])}  p90 {ms(sd['p90'])}")
    print(f"started - baseline at the median: {ms(ss['median'] - sb['median'])} (target <= 50 ms)")


if __name__ == "__main__":
    main()
