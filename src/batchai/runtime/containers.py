"""Jobs that ask for a container image (``containerSettings``): run in docker or podman where one runs on
the node, or a clear error."""

from __future__ import annotations

import shlex
import shutil
import subprocess

from batchai.runtime import launch


def image(plan: launch.LaunchPlan) -> str:
    """The image a job's ``containerSettings`` names ('' if none)."""
    return str((plan.container or {}).get("imageSourceRegistry", {}).get("image", ""))


def wrap(plan: launch.LaunchPlan, command: str) -> str:
    """``command`` run in the job's container image with docker or podman; LaunchError if neither runs here."""
    name = image(plan)
    for engine in ("docker", "podman"):
        binary = shutil.which(engine)
        if binary and subprocess.run([binary, "info"], capture_output=True, timeout=30).returncode == 0:
            mounts = " ".join(
                f"-v {shlex.quote(str(p))}:{shlex.quote(str(p))}"
                for p in {plan.job_temp, plan.stdouterr, *[t for _, t in plan.links]}
            )
            env = " ".join(f"-e {shlex.quote(k)}" for k in plan.env if k.startswith(("AZ_BATCHAI_", "CUDA_")))
            return (
                f"{binary} run --rm --network host {mounts} {env} -w {shlex.quote(plan.env['AZ_BATCHAI_JOB_TEMP'])} "
                f"{shlex.quote(name)} bash -c {shlex.quote(command)}"
            )
    raise launch.LaunchError(
        "ContainerEngineNotFound",
        f"The job asks for the container image '{name}' (containerSettings), but no container engine (docker or "
        "podman) runs on this node. Install one, remove containerSettings, or start the server with "
        "--containers-on-host to run such jobs on the host.",
    )
