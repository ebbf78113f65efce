"""Bad input to the api versions before workspaces and to the CLI: a clear 400 / one-line error, nothing stored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SUB, Server, arm_error, url
from tests.integration.test_api_legacy import cluster_body

OLD = "2018-03-01"


def legacy_group(server: Server, name: str) -> str:
    """A new resource group; its ``Microsoft.BatchAI`` provider path."""
    group = f"/subscriptions/{SUB}/resourceGroups/{name}"
    assert server.http.put(url(group, "2021-04-01"), json={"location": "westus"}).status_code in (200, 201)
    return f"{group}/providers/Microsoft.BatchAI"


def job_body(p: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "location": "westus",
        "tags": {"team": "vision"},
        "properties": {
            "experimentName": "exp1",
            "priority": -5,
            "cluster": {"id": f"{p}/clusters/c1"},
            "nodeCount": 1,
            "stdOutErrPathPrefix": str(tmp_path / "logs"),
            "outputDirectories": [{"id": "MODEL", "pathPrefix": str(tmp_path / "model"), "type": "model"}],
            "customToolkitSettings": {"commandLine": "true"},
        },
    }


def changed(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``body`` with ``changes`` (``properties__x`` changes ``properties.x``)."""
    out: dict[str, Any] = json.loads(json.dumps(body))
    for key, value in changes.items():
        where = out
        *outer, last = key.split("__")
        for part in outer:
            where = where[part]
        where[last] = value
    return out


BAD_JOBS = [
    ({"properties": "abc"}, "properties"),
    ({"properties": [1, 2]}, "properties"),
    ({"properties": None}, "properties"),
    ("abc", None),
    ([1, 2], None),
    ({"properties__outputDirectories": "xy"}, "properties.outputDirectories"),
    ({"properties__outputDirectories": [1]}, "properties.outputDirectories[0]"),
    ({"properties__outputDirectories": {"id": "X"}}, "properties.outputDirectories"),
    (
        {"properties__outputDirectories": [{"id": "X", "pathPrefix": "/tmp/x", "createNew": "maybe"}]},
        "properties.outputDirectories[0].createNew",
    ),
    (
        {"properties__outputDirectories": [{"id": "X", "pathPrefix": "/tmp/x", "type": 5}]},
        "properties.outputDirectories[0].type",
    ),
    ({"properties__experimentName": 5}, "properties.experimentName"),
    ({"properties__experimentName": ["exp"]}, "properties.experimentName"),
    ({"properties__priority": "high"}, "properties.priority"),
    ({"properties__priority": True}, "properties.priority"),
    ({"properties__priority": 1001}, "properties.priority"),
    ({"properties__cluster": "c1"}, "properties.cluster"),
    ({"properties__cluster": {"id": 5}}, "properties.cluster.id"),
    ({"properties__mountVolumes": "x"}, "properties.mountVolumes"),
    ({"properties__nodeCount": [1]}, "properties.nodeCount"),
    ({"tags": "notadict"}, "tags"),
    ({"tags": {"team": 5}}, "tags.team"),
    ({"location": ["westus"]}, "location"),
    ({"location": "west/us?"}, "location"),
    ({"unknown": 1}, "unknown"),
]


@pytest.fixture(scope="module")
def legacy_cluster(shared_server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A group with a cluster of the old api versions (the provider path, and a directory for outputs)."""
    tmp_path = tmp_path_factory.mktemp("legacy")
    p = legacy_group(shared_server, "bad-legacy-jobs")
    created = shared_server.http.put(url(f"{p}/clusters/c1", OLD), json=cluster_body(tmp_path))
    assert created.status_code == 200, created.text
    return p, tmp_path


@pytest.mark.parametrize(("change", "target"), BAD_JOBS, ids=[str(i) for i in range(len(BAD_JOBS))])
def test_legacy_job_with_a_wrong_type_is_a_400_and_stores_nothing(
    shared_server: Server, legacy_cluster: tuple[str, Path], change: Any, target: str | None
) -> None:
    http = shared_server.http
    p, tmp_path = legacy_cluster
    body = changed(job_body(p, tmp_path), **change) if isinstance(change, dict) else change
    error = arm_error(http.put(url(f"{p}/jobs/j1", OLD), json=body), 400)
    assert error["code"] == "InvalidParameter" and error["target"] == target, error
    assert arm_error(http.get(url(f"{p}/jobs/j1", OLD)), 404)["code"] == "JobNotFound"
    assert http.get(url(f"{p}/jobs", OLD)).json()["value"] == []


def test_legacy_job_without_mistakes_is_taken(shared_server: Server, tmp_path: Path) -> None:
    """The control: the body the cases above spoil is taken, with what only the old versions have."""
    http = shared_server.http
    p = legacy_group(shared_server, "good-legacy-job")
    assert http.put(url(f"{p}/clusters/c1", OLD), json=cluster_body(tmp_path)).status_code == 200
    good = http.put(url(f"{p}/jobs/j1", OLD), json=job_body(p, tmp_path))
    assert good.status_code == 200, good.text
    job = good.json()
    assert job["tags"] == {"team": "vision"} and job["location"] == "westus"
    assert job["properties"]["experimentName"] == "exp1" and job["properties"]["priority"] == -5
    assert job["properties"]["cluster"]["id"] == f"{p}/clusters/c1"
    assert [o["id"] for o in job["properties"]["outputDirectories"]] == ["MODEL"]
    assert "type" not in job["properties"]["outputDirectories"][0]
    assert http.get(url(f"{p}/jobs/j1", OLD)).json()["tags"] == {"team": "vision"}


BAD_CLUSTERS = [
    ({"properties": "x"}, "properties"),
    ({"properties": [1]}, "properties"),
    ({"properties__nodeSetup": "x"}, "properties.nodeSetup"),
    ({"properties__nodeSetup": [1]}, "properties.nodeSetup"),
    ({"properties__nodeSetup__setupTask": "x"}, "properties.nodeSetup.setupTask"),
    ({"properties__nodeSetup__setupTask": [1]}, "properties.nodeSetup.setupTask"),
    ({"properties__nodeSetup__setupTask__runElevated": "x"}, "properties.nodeSetup.setupTask.runElevated"),
    ({"properties__nodeSetup__mountVolumes": "x"}, "properties.nodeSetup.mountVolumes"),
    ({"properties__scaleSettings": "x"}, "properties.scaleSettings"),
    ({"tags": "notadict"}, "tags"),
    ({"location": 5}, "location"),
]


@pytest.mark.parametrize(("change", "target"), BAD_CLUSTERS, ids=[str(i) for i in range(len(BAD_CLUSTERS))])
def test_legacy_cluster_with_a_wrong_type_is_a_400_and_stores_nothing(
    shared_server: Server, tmp_path: Path, change: dict[str, Any], target: str
) -> None:
    http = shared_server.http
    p = legacy_group(shared_server, "bad-legacy-clusters")
    error = arm_error(http.put(url(f"{p}/clusters/c1", OLD), json=changed(cluster_body(tmp_path), **change)), 400)
    assert error["target"] == target, error
    assert arm_error(http.get(url(f"{p}/clusters/c1", OLD)), 404)
    assert http.get(url(f"{p}/clusters", OLD)).json()["value"] == []


def test_legacy_cluster_patch_and_file_server_put_with_wrong_types_are_400s(
    shared_server: Server, tmp_path: Path
) -> None:
    http = shared_server.http
    p = legacy_group(shared_server, "bad-legacy-fs")
    fs_cases: list[tuple[dict[str, Any], str]] = [
        ({"properties": "x"}, "properties"),
        ({"properties": [1, 2]}, "properties"),
        ({"properties": {"vmSize": "STANDARD_D2_V2"}, "tags": "x"}, "tags"),
        ({"properties": {"vmSize": "STANDARD_D2_V2"}, "location": [1]}, "location"),
    ]
    for body, target in fs_cases:
        assert arm_error(http.put(url(f"{p}/fileServers/fs1", OLD), json=body), 400)["target"] == target
    assert arm_error(http.get(url(f"{p}/fileServers/fs1", OLD)), 404)
    assert http.get(url(f"{p}/fileServers", OLD)).json()["value"] == []

    assert http.put(url(f"{p}/clusters/c1", OLD), json=cluster_body(tmp_path)).status_code == 200
    patch_cases: list[tuple[dict[str, Any], str]] = [
        ({"properties": "x"}, "properties"),
        ({"properties": {"scaleSettings": "x"}}, "properties.scaleSettings"),
        ({"tags": "x"}, "tags"),
    ]
    for body, target in patch_cases:
        assert arm_error(http.patch(url(f"{p}/clusters/c1", OLD), json=body), 400)["target"] == target
    resized = http.patch(
        url(f"{p}/clusters/c1", OLD), json={"properties": {"scaleSettings": {"manual": {"targetNodeCount": 0}}}}
    )
    assert resized.status_code == 200, resized.text
    assert resized.json()["properties"]["scaleSettings"]["manual"]["targetNodeCount"] == 0


def test_a_method_the_server_does_not_serve_is_a_405_with_an_arm_body(shared_server: Server) -> None:
    # (A method name uvicorn's HTTP parser does not know, such as FOO, is refused by the parser before the
    # application sees the request: that plain-text 400 is uvicorn's.)
    response = shared_server.http.request("PROPFIND", url(f"/subscriptions/{SUB}/resourceGroups", "2021-04-01"))
    assert arm_error(response, 405)["code"] == "MethodNotAllowed"


# -- the CLI ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ws(shared_server: Server) -> tuple[str, ...]:
    """A workspace with an experiment ``exp``, made with the CLI: its ``-g``/``-w`` options."""
    shared_server.ok("group", "create", "-n", "bad-files", "-l", "westus")
    shared_server.ok("workspace", "create", "-g", "bad-files", "-n", "ws", "-l", "westus")
    shared_server.ok("experiment", "create", "-g", "bad-files", "-w", "ws", "-n", "exp")
    return ("-g", "bad-files", "-w", "ws")


BAD_FILES: list[tuple[str, bytes | dict[str, Any], str]] = [
    ("latin1", b'{"properties": {"nodeCount": 1, "note": "caf\xe9"}}', " is not UTF-8 text (byte 44)"),
    ("mounts-string", {"mountVolumes": "x"}, ": 'mountVolumes' must be a JSON object, not a string"),
    ("mounts-list", {"mountVolumes": [1]}, ": 'mountVolumes' must be a JSON object, not a list"),
    (
        "shares-string",
        {"mountVolumes": {"azureFileShares": "x"}},
        ": 'mountVolumes.azureFileShares' must be a JSON list of objects, not a string",
    ),
    (
        "share-entry",
        {"mountVolumes": {"azureBlobFileSystems": [{"containerName": "c"}, "x"]}},
        ": 'mountVolumes.azureBlobFileSystems[1]' must be a JSON object, not a string",
    ),
    ("node-setup", {"nodeSetup": "x"}, ": 'nodeSetup' must be a JSON object, not a string"),
    ("node-setup-list", {"nodeSetup": ["x"]}, ": 'nodeSetup' must be a JSON object, not a list"),
    (
        "node-setup-mounts",
        {"nodeSetup": {"mountVolumes": 5}},
        ": 'nodeSetup.mountVolumes' must be a JSON object, not a number",
    ),
    ("cluster", {"cluster": "c"}, ": 'cluster' must be a JSON object, not a string"),
    ("accounts", {"userAccountSettings": "me"}, ": 'userAccountSettings' must be a JSON object, not a string"),
    ("vm", {"virtualMachineConfiguration": [1]}, ": 'virtualMachineConfiguration' must be a JSON object, not a list"),
]


def write_file(tmp_path: Path, name: str, content: bytes | dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_bytes(content if isinstance(content, bytes) else json.dumps({"properties": content}).encode())
    return path


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_cli_create_with_a_bad_file_is_one_clear_line(
    shared_server: Server, ws: tuple[str, ...], tmp_path: Path, name: str, content: bytes | dict[str, Any], message: str
) -> None:
    w = ws
    path = write_file(tmp_path, name, content)
    job = shared_server.fails("job", "create", *w, "-e", "exp", "-n", "j", "-c", "c", "-f", str(path))
    cluster = shared_server.fails("cluster", "create", *w, "-n", "c", "-s", "local", "-t", "1", "-f", str(path))
    for line in (job, cluster):
        assert line.startswith(f"ERROR: {path}{message}"), line
    assert shared_server.ok("job", "list", *w, "-e", "exp") == []
    assert shared_server.ok("cluster", "list", *w) == []


def test_cli_file_server_create_with_a_bad_file_is_one_clear_line(
    shared_server: Server, ws: tuple[str, ...], tmp_path: Path
) -> None:
    w = ws
    latin = write_file(tmp_path, "latin", b'{"properties": {"vmSize": "caf\xe9"}}')
    ssh = write_file(tmp_path, "ssh", {"sshConfiguration": {"userAccountSettings": "me"}})
    args = ("file-server", "create", *w, "-n", "fs", "--disk-count", "1", "--disk-size", "1", "-s", "x", "-f")
    assert (
        shared_server.fails(*args, str(latin)) == f"ERROR: {latin} is not UTF-8 text (byte 30): save it as UTF-8 JSON"
    )
    assert shared_server.fails(*args, str(ssh)) == (
        f"ERROR: {ssh}: 'sshConfiguration.userAccountSettings' must be a JSON object, not a string"
    )
    assert shared_server.ok("file-server", "list", *w) == []


def test_cli_reads_a_file_with_a_byte_order_mark(shared_server: Server, ws: tuple[str, ...], tmp_path: Path) -> None:
    w = ws
    path = write_file(tmp_path, "bom", b'\xef\xbb\xbf{"properties": {"nodeCount": "many"}}')
    line = shared_server.fails("job", "create", *w, "-e", "exp", "-n", "j", "-c", "c", "-f", str(path))
    assert "properties.nodeCount" in line and "valid JSON" not in line, line  # read: the server judged it


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"BATCHAI_ENDPOINT": "http://127.0.0.1:1:2"},
            "the batchai endpoint 'http://127.0.0.1:1:2' ($BATCHAI_ENDPOINT) is not a valid URL",
        ),
        (
            {"BATCHAI_ENDPOINT": "http://[::1"},
            "the batchai endpoint 'http://[::1' ($BATCHAI_ENDPOINT) is not a valid URL",
        ),
        (
            {"BATCHAI_ENDPOINT": "localhost:8080"},
            "the batchai endpoint 'localhost:8080' ($BATCHAI_ENDPOINT) is not an http:// or https:// URL",
        ),
        (
            {"BATCHAI_ENDPOINT": "http://127.0.0.1:99999"},
            "the batchai endpoint 'http://127.0.0.1:99999' ($BATCHAI_ENDPOINT) has no valid port",
        ),
        ({"BATCHAI_TOKEN": "caf\u00e9"}, "the batchai token ($BATCHAI_TOKEN) must be visible ASCII"),
    ],
)
def test_cli_with_a_bad_endpoint_or_token_is_one_clear_line(
    shared_server: Server, variables: dict[str, str], message: str
) -> None:
    line = shared_server.fails("group", "list", env=variables)
    assert line.startswith(f"ERROR: {message}"), line


def test_cli_names_the_file_a_bad_endpoint_comes_from(shared_server: Server, tmp_path: Path) -> None:
    home = tmp_path / "client-home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"endpoint": "http://127.0.0.1:1:2", "token": "t"}))
    line = shared_server.fails("group", "list", env={"BATCHAI_HOME": str(home)})
    assert line.startswith("ERROR: the batchai endpoint 'http://127.0.0.1:1:2' ('endpoint' in "), line
    assert "config.json) is not a valid URL" in line, line
    # A blank variable is no setting: the next source is used.
    assert isinstance(shared_server.ok("group", "list", env={"BATCHAI_ENDPOINT": "  "}), list)
