"""Server settings: where the home is, which database, which address. Built from arguments and an environ."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8600
DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_LOCATION = "local"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def resolve_home(home: str | Path | None, environ: Mapping[str, str]) -> Path:
    """``--home`` if given, else ``$BATCHAI_HOME``, else ``~/.batchai``."""
    if home:
        return Path(home).expanduser().resolve()
    if environ.get("BATCHAI_HOME"):
        return Path(environ["BATCHAI_HOME"]).expanduser().resolve()
    return (Path(environ.get("HOME", str(Path.home()))) / ".batchai").resolve()


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know about its place; passed in, never read from globals."""

    home: Path
    database_url: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    certfile: Path | None = None
    keyfile: Path | None = None
    # Seconds between SIGTERM and SIGKILL when a job is stopped.
    grace_seconds: float = 10.0
    # The Python that jobs get when they name none (the server's own, with batchai's environment).
    node_python: str = sys.executable
    # Run jobs that ask for a container image (containerSettings) directly on the host instead, without a
    # container engine. Off by default; each job it affects says so in its execution.log.
    containers_on_host: bool = False
    # Run clusters on a Ray cluster at this address instead of local processes (the Ray provider); the
    # Ray nodes that offer the custom resource ``ray_resource`` (one unit each) are the nodes it uses.
    ray_address: str | None = None
    ray_resource: str = "batchai"
    # A Ray node's agent leaves after this long with nothing running and no call from its server.
    ray_agent_idle_seconds: float = 600.0
    # How long a new auto-scale cluster keeps its initialNodeCount nodes when no job needs them.
    auto_scale_initial_seconds: float = 300.0
    # Stage the job next in line on each busy node of a fixed-size cluster, to start the moment the job there
    # ends (it is prepared meanwhile: its directories, its unmanaged mounts).
    stage_jobs: bool = True

    @classmethod
    def build(
        cls,
        environ: Mapping[str, str],
        *,
        home: str | Path | None = None,
        database_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        containers_on_host: bool | None = None,
        ray_address: str | None = None,
        ray_resource: str | None = None,
        stage_jobs: bool | None = None,
    ) -> Settings:
        root = resolve_home(home, environ)
        url = database_url or environ.get("BATCHAI_DATABASE_URL") or f"sqlite:///{root / 'batchai.db'}"
        grace = float(environ.get("BATCHAI_GRACE_SECONDS", "10"))
        if containers_on_host is None:
            containers_on_host = environ.get("BATCHAI_CONTAINERS_ON_HOST", "").strip().lower() in TRUE_WORDS
        if stage_jobs is None:
            stage_jobs = environ.get("BATCHAI_STAGE_JOBS", "1").strip().lower() in TRUE_WORDS
        return cls(
            home=root,
            database_url=url,
            host=host,
            port=port,
            grace_seconds=grace,
            containers_on_host=containers_on_host,
            ray_address=ray_address or environ.get("BATCHAI_RAY_ADDRESS") or None,
            ray_resource=ray_resource or environ.get("BATCHAI_RAY_RESOURCE") or "batchai",
            ray_agent_idle_seconds=float(environ.get("BATCHAI_RAY_AGENT_IDLE_SECONDS", "600")),
            auto_scale_initial_seconds=float(environ.get("BATCHAI_AUTO_SCALE_INITIAL_SECONDS", "300")),
            stage_jobs=stage_jobs,
        )

    @property
    def storage_root(self) -> Path:
        return self.home / "storage"

    @property
    def nodes_root(self) -> Path:
        return self.home / "nodes"

    @property
    def run_dir(self) -> Path:
        """The process launcher's socket and log (``runtime.launcher``)."""
        return self.home / "run"

    @property
    def credentials_file(self) -> Path:
        """Endpoint and admin token, written at first start with mode 0600."""
        return self.home / "credentials.json"

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"
