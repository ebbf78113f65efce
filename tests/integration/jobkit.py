"""Helpers for tests that run jobs: a workspace with a cluster, job submission and waiting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import SUB, Server, url, wait_for

TERMINAL = ("succeeded", "failed")


@dataclass
class Bench:
    """A resource group with a workspace ``ws`` and an experiment ``exp`` on one server."""

    server: Server
    group: str
    tmp: Path

    @property
    def ws(self) -> str:
        return f"/subscriptions/{SUB}/resourceGroups/{self.group}/providers/Microsoft.BatchAI/workspaces/ws"

    def cluster(
        self,
        name: str = "c",
        target: int | None = 1,
        auto: tuple[int, int] | None = None,
        option: str = "requeue",
        **props: Any,
    ) -> str:
        scale: dict[str, Any] = (
            {"autoScale": {"minimumNodeCount": auto[0], "maximumNodeCount": auto[1]}}
            if auto
            else {"manual": {"targetNodeCount": target, "nodeDeallocationOption": option}}
        )
        body = {"properties": {"vmSize": "STANDARD_NC6", "scaleSettings": scale, **props}}
        response = self.server.http.put(url(f"{self.ws}/clusters/{name}"), json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def cluster_state(self, name: str = "c") -> dict[str, Any]:
        return dict(self.server.http.get(url(f"{self.ws}/clusters/{name}")).json()["properties"])

    def wait_nodes(
        self, name: str = "c", idle: int | None = None, total: int | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            props = self.cluster_state(name)
            counts = props["nodeStateCounts"]
            ok = (idle is None or counts["idleNodeCount"] == idle) and (
                total is None or props["currentNodeCount"] == total
            )
            return props if ok and props["allocationState"] == "steady" else None

        return dict(wait_for(ready, timeout=timeout, message=f"cluster {name} with idle={idle} total={total}"))

    def job_path(self, name: str) -> str:
        return f"{self.ws}/experiments/exp/jobs/{name}"

    def submit(self, name: str, cluster: str = "c", node_count: int = 1, **props: Any) -> dict[str, Any]:
        body = {
            "properties": {
                "cluster": {"id": f"{self.ws}/clusters/{cluster}"},
                "nodeCount": node_count,
                "stdOutErrPathPrefix": str(self.tmp / "logs"),
                **props,
            }
        }
        if not any(k.endswith("Settings") and k != "containerSettings" for k in props):
            body["properties"]["customToolkitSettings"] = {"commandLine": "true"}
        response = self.server.http.put(url(self.job_path(name)), json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def job(self, name: str) -> dict[str, Any]:
        response = self.server.http.get(url(self.job_path(name)))
        assert response.status_code == 200, response.text
        return dict(response.json()["properties"])

    def wait_job(self, name: str, states: tuple[str, ...] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            props = self.job(name)
            return props if props["executionState"] in states else None

        return dict(wait_for(reached, timeout=timeout, interval=0.05, message=f"job {name} to be {states}"))

    def terminate(self, name: str) -> None:
        assert self.server.http.post(url(self.job_path(name) + "/terminate")).status_code == 200

    def stdouterr(self, name: str) -> Path:
        props = self.job(name)
        return self.tmp / "logs" / str(props["jobOutputDirectoryPathSegment"]) / "stdouterr"

    def files(self, name: str, directory: str = "stdouterr", path: str = ".") -> dict[str, dict[str, Any]]:
        response = self.server.http.post(
            url(self.job_path(name) + "/listOutputFiles") + f"&outputdirectoryid={directory}&directory={path}"
        )
        assert response.status_code == 200, response.text
        return {f["name"]: f for f in response.json()["value"]}


def write_script(bench: Bench, text: str, name: str) -> Path:
    script = bench.tmp / "scripts" / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    return script


def outputs(bench: Bench) -> list[dict[str, Any]]:
    """One output directory, OUT, under the bench's temporary directory."""
    return [{"id": "OUT", "pathPrefix": str(bench.tmp / "out")}]


def make_bench(server: Server, group: str, tmp: Path) -> Bench:
    http = server.http
    assert http.put(
        url(f"/subscriptions/{SUB}/resourceGroups/{group}", "2021-04-01"), json={"location": "eastus"}
    ).status_code in (200, 201)
    bench = Bench(server, group, tmp)
    assert http.put(url(bench.ws), json={"location": "eastus"}).status_code == 200
    assert http.put(url(f"{bench.ws}/experiments/exp")).status_code == 200
    return bench
