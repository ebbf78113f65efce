"""The launch plan of a job on one node: its environment, mounts, directories and command lines.

Building the plan runs nothing; it raises ``LaunchError`` (a message for the job's errors) when the job
cannot run here, e.g. a missing script or a toolkit this node lacks.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchai.runtime import distributed, node_python, supervisor
from batchai.services.mounts import parse_file_url
from batchai.storage.base import Volume, VolumeKind, clean_path

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")
# A command line of words bash passes on as they are (what shlex.quote leaves unquoted), apart by blanks.
_PLAIN_COMMAND = re.compile(r"[ \t]*[\w@%+=:,./-]+(?:[ \t]+[\w@%+=:,./-]+)*[ \t]*")
# Names bash runs itself (builtins, keywords) rather than as a program of that name.
_BASH_OWN = (
    ". : alias bg bind break builtin caller cd command compgen complete compopt continue coproc declare dirs "
    "disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout "
    "mapfile popd printf pushd pwd read readarray readonly return select set shift shopt source suspend test "
    "time times trap true type typeset ulimit umask unalias unset wait if then else elif fi case esac for "
    "while until do done in function"
)
_SHELL_NAMES = frozenset(_BASH_OWN.split())


class LaunchError(Exception):
    """The job cannot start; ``code`` and ``message`` go into the job's execution errors."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.started: list[Any] = []  # tasks that did start before the error (the engine stops them)


def expand(text: str, env: dict[str, str]) -> str:
    """``$VAR`` and ``${VAR}`` replaced from ``env``; unknown variables are left as they are."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def _node_path(text: str, env: dict[str, str], what: str) -> Path:
    """A directory batchai makes on the node, its variables expanded: absolute, without ``..``."""
    path = expand(text, env)
    if not path.startswith("/") or ".." in path.split("/"):
        raise LaunchError(
            "InvalidPath",
            f"{what} '{path}' is not an absolute path on the node without '..' (is a variable in it unset?).",
        )
    return Path(path)


def _relative(text: str, what: str) -> str:
    if ".." in text.split("/"):
        raise LaunchError("InvalidPath", f"{what} '{text}' may not contain '..'.")
    return text.strip("/")


@dataclass(frozen=True)
class NodeSlot:
    """One of a job's nodes: its directories, its place in the job, its GPUs and its address."""

    node_name: str
    node_dir: Path
    shared_dir: Path
    node_index: int
    gpus: tuple[int, ...] = ()
    address: str = "127.0.0.1"
    info: tuple[tuple[str, str], ...] = ()  # what the provider needs to reach the node (e.g. its Ray id)


@dataclass
class LaunchPlan:
    env: dict[str, str]
    links: list[tuple[Path, Path]]
    directories: list[Path]
    unmanaged: list[tuple[str, Path]]
    stdouterr: Path
    job_temp: Path
    prep_command: str | None
    command: str
    stdout_name: str
    stderr_name: str
    container: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    prep_marker: Path | None = None  # where the node's job preparation records its exit code
    prep_output: tuple[str, str] = ("stdout-job_prep.txt", "stderr-job_prep.txt")  # its files in stdouterr
    runs_prep: bool = True  # False: another process on this node runs it, this one waits for it
    mpi_hostfile: str | None = None
    # The other nodes' job preparation markers, by node name, waited for (mpirun).
    awaits: tuple[tuple[str, Path], ...] = ()
    python: str = "python"  # the Python of toolkits that name none: the node's


Resolver = Callable[[Volume], Path]
FileServerResolver = Callable[[str, str], Path]


def _mount_links(
    volumes: dict[str, Any] | None, root: Path, resolve: Resolver, file_server: FileServerResolver
) -> tuple[list[tuple[Path, Path]], list[tuple[str, Path]]]:
    links: list[tuple[Path, Path]] = []
    unmanaged: list[tuple[str, Path]] = []
    for share in (volumes or {}).get("azureFileShares") or []:
        account, name = parse_file_url(share["azureFileUrl"], "azureFileUrl")
        links.append((root / clean_path(share["relativeMountPath"]), resolve(Volume(account, VolumeKind.SHARE, name))))
    for blob in (volumes or {}).get("azureBlobFileSystems") or []:
        volume = Volume(blob["accountName"], VolumeKind.CONTAINER, blob["containerName"])
        links.append((root / clean_path(blob["relativeMountPath"]), resolve(volume)))
    for server in (volumes or {}).get("fileServers") or []:
        target = file_server(server["fileServer"]["id"], server.get("sourceDirectory") or "")
        links.append((root / clean_path(server["relativeMountPath"]), target))
    for fs in (volumes or {}).get("unmanagedFileSystems") or []:
        unmanaged.append((fs["mountCommand"], root / clean_path(fs["relativeMountPath"])))
    return links, unmanaged


def cluster_mounts(
    cluster_spec: dict[str, Any], mount_root: Path, resolve: Resolver, file_server: FileServerResolver
) -> tuple[list[tuple[Path, Path]], list[tuple[str, Path]]]:
    """The links (and unmanaged mounts) of a cluster's ``nodeSetup.mountVolumes`` under a node's mount root."""
    return _mount_links((cluster_spec.get("nodeSetup") or {}).get("mountVolumes"), mount_root, resolve, file_server)


def mount_script(command: str, path: Path) -> str:
    """Bash lines that run an unmanaged file system's mount command with the mount path appended, as Batch AI
    did, and end the script with its exit code if it fails (saying which command failed)."""
    quoted = shlex.quote(str(path))
    return (
        f"mkdir -p {quoted} && {command} {quoted}\n__batchai_mount=$?\n"
        f'if [ "$__batchai_mount" -ne 0 ]; then echo "batchai: the mount command {shlex.quote(command)} failed with '
        'exit code $__batchai_mount" >&2; exit "$__batchai_mount"; fi\n'
    )


def run_mount(command: str, path: Path, env: dict[str, str], log: Path) -> None:
    """Run a mount command now (a job's unmanaged file system), its output in ``log`` (a file, not a pipe: a
    mount helper that leaves a daemon behind does not hold it up), in its own session, with ``env``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                ["bash", "-c", mount_script(command, path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                timeout=300,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise LaunchError("MountFailed", f"The mount command '{command}' did not end within 300 s.") from exc
    if result.returncode != 0:
        last = supervisor.tail(log)[-1:] or ["no output"]
        raise LaunchError("MountFailed", f"The mount command '{command}' failed: {last[0]}")


def _python(settings: dict[str, Any], default_python: str) -> str:
    return str(settings.get("pythonInterpreterPath") or default_python)


# Checks of what a toolkit needs on the node (its script, its program). A job with a job preparation has them
# made in bash after the preparation, which may be what installs them (``pip install``, ``git clone``):
# ``Deferred`` collects those lines; without one they are made before the process starts.
Deferred = list[str] | None


def _fail_line(condition: str, message: str, code: int) -> str:
    return f"if {condition}; then echo {shlex.quote('batchai: ' + message)} >&2; exit {code}; fi"


def _script(settings: dict[str, Any], env: dict[str, str], deferred: Deferred) -> str:
    path = expand(settings["pythonScriptFilePath"], env)
    if "$" not in path:
        message = f"The script '{settings['pythonScriptFilePath']}' ({path}) does not exist on the node."
        if deferred is not None:
            deferred.append(_fail_line(f"[ ! -f {shlex.quote(path)} ]", message, 2))
        elif not Path(path).is_file():
            raise LaunchError("ScriptNotFound", message)
    return path


def _program(name: str, env: dict[str, str], who: str, deferred: Deferred) -> str:
    """The quoted path of a toolkit's program on the node's PATH (its name when the check is deferred), or a
    clear job error."""
    message = f"{who} need the '{name}' program, which is not installed on the node."
    if deferred is not None:
        deferred.append(_fail_line(f"! command -v {shlex.quote(name)} >/dev/null", message, 127))
        return shlex.quote(name)
    found = shutil.which(name, path=env.get("PATH"))
    if found is None:
        raise LaunchError("ToolkitNotInstalled", message)
    return shlex.quote(found)


def _single_command(
    key: str,
    settings: dict[str, Any],
    env: dict[str, str],
    default_python: str,
    process: distributed.Process,
    deferred: Deferred,
) -> str:
    """The command line of one process of the toolkit (what mpirun starts, for MPI jobs)."""
    args = expand(settings.get("commandLineArgs") or "", env)
    if key in ("customToolkitSettings", "customMpiSettings"):
        return str(settings.get("commandLine") or "")  # bash expands its variables
    if key == "cntkSettings" and settings.get("languageType") == "BrainScript":
        cntk = _program("cntk", env, "CNTK BrainScript jobs", deferred)
        return f"{cntk} configFile={shlex.quote(expand(settings['configFilePath'], env))} {args}"
    if key == "caffeSettings" and settings.get("configFilePath"):
        caffe = _program("caffe", env, "Caffe jobs with configFilePath", deferred)
        return f"{caffe} train --solver={shlex.quote(expand(settings['configFilePath'], env))} {args}"
    if key == "tensorFlowSettings":
        # The master is the single process, or worker 0 of a distributed job (as Batch AI's recipes use it).
        master = settings.get("masterCommandLineArgs")
        worker = settings.get("workerCommandLineArgs")
        is_master = process.role == "master" or (process.role == "worker" and process.role_index == 0)
        chosen = settings.get("parameterServerCommandLineArgs") if process.role == "ps" else None
        if process.role != "ps":
            chosen = (master or worker) if is_master else (worker or master)
        args = expand(chosen or "", env)
    python = _python(settings, default_python)
    return f"{shlex.quote(python)} {shlex.quote(_script(settings, env, deferred))} {args}".rstrip()


def toolkit_command(
    spec: dict[str, Any],
    env: dict[str, str],
    default_python: str,
    process: distributed.Process,
    deferred: Deferred = None,
) -> str:
    """The command line of one process of the job; MPI jobs get their ``mpirun`` here. Raises LaunchError if
    the node lacks what the toolkit needs, unless ``deferred`` (a list) takes those checks as bash lines."""
    try:
        key, settings = distributed.toolkit(spec)
    except ValueError:
        raise LaunchError("InvalidToolkit", "The job has no toolkit settings.") from None
    if process.role == "prep":
        return ""  # the job preparation is all it runs
    command = _single_command(key, settings, env, default_python, process, deferred)
    if process.role != "mpirun":
        return command
    who = f"{key} jobs run through mpirun (OpenMPI, e.g. apt-get install openmpi-bin) and"
    mpirun = _program("mpirun", env, who, deferred)
    exported = " ".join(f"-x {shlex.quote(name)}" for name in sorted(env) if _forwarded(name))
    inner = f"bash -c {shlex.quote(command)}" if key == "customMpiSettings" else command
    return (
        f'{shlex.quote(mpirun)} -np {distributed.process_count(spec)} --hostfile "$AZ_BATCHAI_MPI_HOST_FILE" '
        f"--bind-to none {exported} {inner}"
    )


def _forwarded(name: str) -> bool:
    """Variables mpirun hands to the processes it starts on other hosts (the local ones inherit them all); not
    the GPUs of this host's nodes (another host's ranks use their own)."""
    kept = ("HOME", "PWD", "SHLVL", "OLDPWD", "_", "CUDA_VISIBLE_DEVICES", "AZ_BATCHAI_NUM_GPUS")
    return name not in kept and not name.startswith(("OMPI_", "BASH_FUNC"))


def _gpu_env(gpus: tuple[int, ...]) -> dict[str, str]:
    return {"AZ_BATCHAI_NUM_GPUS": str(len(gpus)), "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus)}


# The folder of an output directory that names no pathSuffix: {pathPrefix}/{segment}/outputs, as Batch AI made
# it (its recipes' download links show it), so that the directory holds the job's output and not its stdouterr.
DEFAULT_OUTPUT_SUFFIX = "outputs"


def output_suffix(directory: dict[str, Any]) -> str:
    """The folder under the job's segment an output directory (``outputDirectories[i]``) is in."""
    return str(directory.get("pathSuffix") or DEFAULT_OUTPUT_SUFFIX)


def job_temp_dir(node_dir: Path, job_id: int) -> Path:
    """A job's directory on a node (its scripts, exit files, ``wd`` and job mounts)."""
    return node_dir / "jobs" / str(job_id)


def job_work_dir(node_dir: Path, job_id: int) -> Path:
    """A job's working directory on a node (``AZ_BATCHAI_JOB_TEMP``)."""
    return job_temp_dir(node_dir, job_id) / "wd"


def shared_job_temp_dir(shared_dir: Path, job_id: int) -> Path:
    """A job's directory on its cluster's shared storage (``AZ_BATCHAI_SHARED_JOB_TEMP``)."""
    return shared_dir / "jobs" / str(job_id)


def node_environment(base_env: dict[str, str], node_dir: Path, node_name: str) -> dict[str, str]:
    """What every process on a node starts from: the server's base environment with the node's own Python
    environment first on PATH (when it has one), the node's mount root and name."""
    return {
        **base_env,
        **node_python.environment(node_dir, base_env.get("PATH", "")),
        "AZ_BATCHAI_MOUNT_ROOT": str(node_dir / "mounts"),
        "AZ_BATCHAI_NODE_NAME": node_name,
    }


def prep_marker(job_temp: Path, attempt: int) -> Path:
    """Where a node's job preparation records its exit code (for the node's other processes to wait on)."""
    return job_temp / f"prep-{attempt}.rc"


def exit_file(job_temp: Path, index: int, attempt: int) -> Path:
    """Where task ``index`` records its exit code (its pid file beside it); unique per attempt."""
    return job_temp / f"task-{index}-{attempt}.exit"


def plan(
    *,
    job_id: int,
    spec: dict[str, Any],
    segment: str,
    cluster_spec: dict[str, Any],
    slot: NodeSlot,
    process: distributed.Process,
    wiring: dict[str, str],
    base_env: dict[str, str],
    runs_prep: bool = True,
    attempt: int = 1,
    mpi_hostfile: str | None = None,
    awaits: tuple[tuple[str, Path], ...] = (),
    gpus: tuple[int, ...] | None = None,
    resolve: Resolver,
    file_server: FileServerResolver,
    default_python: str,
) -> LaunchPlan:
    """Everything needed to start one process of a job on its node (``wiring``: its distributed variables;
    ``gpus``: the GPUs it sees when not its node's)."""
    job_temp = job_temp_dir(slot.node_dir, job_id)
    job_mounts = job_temp / "mounts"
    env = node_environment(base_env, slot.node_dir, slot.node_name)
    env.update(_gpu_env(slot.gpus if gpus is None else gpus))
    env.update(
        {
            "AZ_BATCHAI_JOB_MOUNT_ROOT": str(job_mounts),
            "AZ_BATCHAI_JOB_TEMP": str(job_work_dir(slot.node_dir, job_id)),
            "AZ_BATCHAI_JOB_TEMP_DIR": str(slot.node_dir / "jobs"),
            "AZ_BATCHAI_SHARED_JOB_TEMP": str(shared_job_temp_dir(slot.shared_dir, job_id)),
            "AZ_BATCHAI_TASK_INDEX": str(process.role_index),
        }
    )
    env.update(wiring)
    if mpi_hostfile is not None:
        env["AZ_BATCHAI_MPI_HOST_FILE"] = str(job_temp / "mpi_hostfile")
    links, unmanaged = _mount_links(spec.get("mountVolumes"), job_mounts, resolve, file_server)
    stdouterr = _node_path(spec["stdOutErrPathPrefix"], env, "stdOutErrPathPrefix") / segment / "stdouterr"
    env["AZ_BATCHAI_STDOUTERR_DIR"] = str(stdouterr)
    directories = [shared_job_temp_dir(slot.shared_dir, job_id), stdouterr]  # (and the job's: job_dirs.make)
    # AZ_BATCHAI_INPUT_<id> as the id is written, and upper case (as the recipes spell it).
    for item in spec.get("inputDirectories") or []:
        for name in {item["id"], item["id"].upper()}:
            env[f"AZ_BATCHAI_INPUT_{name}"] = expand(item["path"], env)
    for item in spec.get("outputDirectories") or []:
        path = _node_path(item["pathPrefix"], env, f"the pathPrefix of output directory {item['id']}") / segment
        path = path / _relative(expand(output_suffix(item), env), f"the pathSuffix of {item['id']}")
        for name in {item["id"], item["id"].upper()}:
            env[f"AZ_BATCHAI_OUTPUT_{name}"] = str(path)
        directories.append(path)
    for variable in spec.get("environmentVariables") or []:
        env[variable["name"]] = expand(variable["value"], env)
    for secret in spec.get("secrets") or []:
        if secret.get("value") is not None:
            env[secret["name"]] = secret["value"]
    suffix = process.suffix
    prep = (spec.get("jobPreparation") or {}).get("commandLine")
    # The job preparation runs once per node: its output is named by the node (none for the first).
    node = f"-node-{process.node}" if process.node else ""
    prep_output = (f"stdout-job_prep{node}.txt", f"stderr-job_prep{node}.txt")
    # A process that runs only the job preparation writes nothing else: its output is the preparation's.
    outputs = prep_output if process.role == "prep" else (f"stdout{suffix}.txt", f"stderr{suffix}.txt")
    return LaunchPlan(
        env=env,
        links=links,
        directories=directories,
        unmanaged=unmanaged,
        stdouterr=stdouterr,
        job_temp=job_temp,
        prep_command=prep,
        command="",  # the command is built once the mounts exist
        stdout_name=outputs[0],
        stderr_name=outputs[1],
        container=spec.get("containerSettings"),
        prep_marker=prep_marker(job_temp, attempt),
        prep_output=prep_output,
        runs_prep=runs_prep,
        mpi_hostfile=mpi_hostfile,
        awaits=awaits if prep else (),
        python=node_python.python_of(slot.node_dir, default_python),
    )


def plain_argv(plan: LaunchPlan, command: str) -> list[str] | None:
    """The process as an argument vector when running it needs no shell: nothing runs before the command
    (no job preparation, no MPI host file) and bash would run the command as it is written (no variables,
    quotes, globs, redirections or builtins); None otherwise. Run in ``AZ_BATCHAI_JOB_TEMP`` with the
    plan's environment, it is the same process ``script_body`` would start."""
    if plan.prep_command or plan.mpi_hostfile is not None or not _PLAIN_COMMAND.fullmatch(command):
        return None
    words = command.split()
    if "=" in words[0] or words[0] in _SHELL_NAMES or words[0].startswith("%"):
        return None  # a variable assignment, a builtin, or a job of the shell
    return words


def script_body(plan: LaunchPlan, command: str, checks: list[str] | None = None) -> str:
    """The bash body a process runs: the job preparation once per node (its output beside stdout; the
    node's other processes wait for it, and mpirun for every node's), the MPI host file if any, the
    ``checks`` deferred until after the preparation (``toolkit_command``), then the toolkit command (none
    for a process that only prepares its node)."""
    lines = ["set +e", f"cd {shlex.quote(plan.env['AZ_BATCHAI_JOB_TEMP'])} || exit 1"]
    marker = shlex.quote(str(plan.prep_marker))

    def fail(node: str) -> str:
        return (
            f'if [ "$__batchai_prep" -ne 0 ]; then echo "batchai: job preparation on {node} failed with exit code '
            '$__batchai_prep" >&2; exit "$__batchai_prep"; fi'
        )

    own = plan.env.get("AZ_BATCHAI_NODE_NAME", "this node")
    if plan.prep_command and plan.runs_prep:
        out, err = (shlex.quote(str(plan.stdouterr / name)) for name in plan.prep_output)
        lines += [
            f"bash -c {shlex.quote(plan.prep_command)} >> {out} 2>> {err}",
            "__batchai_prep=$?",
            f'printf "%s" "$__batchai_prep" > {marker}.tmp && mv {marker}.tmp {marker}',
            fail(own),
        ]
    waits = [(own, plan.prep_marker)] if plan.prep_command and not plan.runs_prep else []
    for node, path in [*waits, *plan.awaits]:
        quoted = shlex.quote(str(path))
        lines += [f"while [ ! -e {quoted} ]; do sleep 0.05; done", f"__batchai_prep=$(cat {quoted})", fail(node)]
    if plan.mpi_hostfile is not None:
        # (written whole, then renamed: the node's other processes may write it at the same time)
        lines.append(
            f"cat > \"$AZ_BATCHAI_MPI_HOST_FILE.$$\" <<'__BATCHAI_HOSTS__'\n{plan.mpi_hostfile}__BATCHAI_HOSTS__\n"
            'mv -f "$AZ_BATCHAI_MPI_HOST_FILE.$$" "$AZ_BATCHAI_MPI_HOST_FILE"'
        )
    if command:
        lines += [*(checks or []), command]
    return "\n".join(lines)


def describe(plan: LaunchPlan) -> str:
    """A JSON summary for the execution log (no environment values: they may hold secrets)."""
    return json.dumps(
        {
            "stdouterr": str(plan.stdouterr),
            "jobTemp": plan.env["AZ_BATCHAI_JOB_TEMP"],
            "mounts": {str(a): str(b) for a, b in plan.links},
        }
    )
