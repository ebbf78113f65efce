"""Benchmark (c): overhead of running the sample as a batchai job. One epoch of ConvNet_MNIST on full MNIST as
a job (create sent -> the job's end time as the server records it; the client polls once a second, since
polling faster would itself slow the training on two cores) against the same command run directly,
interleaved A, B, A, B, ... so that the machine's drift cancels; the ratio of each pair is reported.

    python bench/overhead.py [--runs 20] [--mnist ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness import PYTHON, server, stats, wait_for

from batchai.samples import CONVNET_MNIST_SCRIPT, mnist_data

ROOT = Path(__file__).resolve().parents[1]


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--mnist", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-mnist-"))
    mnist_data.prepare(args.mnist, data)
    script = str(CONVNET_MNIST_SCRIPT)
    job_times, direct_times, ratios = [], [], []
    with server(nodes=1) as bench:
        for i in range(args.runs):
            out = Path(tempfile.mkdtemp(prefix="bench-out-"))
            sent = bench.submit(
                f"epoch{i}",
                "",
                pyTorchSettings={"pythonScriptFilePath": script, "commandLineArgs": f"{data} {out}/job --epochs 1"},
            )
            # A slow poll (its load would slow the training), and the server's own record of the end.
            wait_for(lambda n=f"epoch{i}": bench.state(n) in ("succeeded", "failed"), timeout=3600, interval=1.0)
            props = bench.http.get(bench.job_path(f"epoch{i}") + "?api-version=2018-05-01").json()["properties"]
            assert props["executionState"] == "succeeded", props
            a = _time(props["executionInfo"]["endTime"]) - sent
            started = time.time()
            subprocess.run(
                [PYTHON, script, str(data), str(out / "direct"), "--epochs", "1"], check=True, capture_output=True
            )
            b = time.time() - started
            job_times.append(a)
            direct_times.append(b)
            ratios.append(a / b)
            print(f"pair {i + 1}: job {a:.2f}s, direct {b:.2f}s, ratio {a / b:.3f}", flush=True)
    sa, sb, sr = stats(job_times), stats(direct_times), stats(ratios)
    print(f"runs: {sr['n']}")
    print(f"as a job   median {sa['median']:.2f}s  p90 {sa['p90']:.2f}s")
    print(f"directly   median {sb['median']:.2f}s  p90 {sb['p90']:.2f}s")
    print(
        f"ratio      median {sr['median']:.3f}  p90 {sr['p90']:.3f}  mean {statistics.mean(ratios):.3f} "
        "(target: median <= 1.03)"
    )


if __name__ == "__main__":
    main()
