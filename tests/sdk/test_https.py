"""HTTPS for remote servers: ``batchai server start --certfile --keyfile``; the SDK's stock bearer-token
policy (which refuses plain http) and the CLI work against it."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, SUB, answer_through, assert_nothing_left, free_port, url, wait_for
from tests.sdk.conftest import SdkEnv

STOCK_CLIENT = textwrap.dedent("""
    import sys, time
    from azure.core.credentials import AccessToken
    from azure.mgmt.batchai import BatchAI

    endpoint, token, cert, group = sys.argv[1:5]

    class Token:  # any azure-core credential: the stock BearerTokenCredentialPolicy asks it for a token
        def get_token(self, *scopes, **kwargs):
            return AccessToken(token, int(time.time()) + 3600)

    client = BatchAI(Token(), "00000000-0000-0000-0000-000000000000", base_url=endpoint, connection_verify=cert)
    workspace = client.workspaces.begin_create(group, "secure", {"location": "eastus"}).result()
    print("workspace", workspace.name, workspace.provisioning_state)
    print("operations", len(list(client.operations.list())) > 0)
""")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    home, port = tmp_path / "home", free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            str(BIN / "batchai"),
            "server",
            "start",
            "--home",
            str(home),
            "--port",
            str(port),
            "--certfile",
            str(cert),
            "--keyfile",
            str(key),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ},
    )
    endpoint = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return (
                httpx.get(
                    endpoint + "/openapi.json", verify=ssl.create_default_context(cafile=cert), timeout=1
                ).status_code
                == 200
                and (home / "credentials.json").exists()
            )
        except httpx.HTTPError:
            return False

    try:
        wait_for(ready, timeout=60, message="the TLS server")
        yield endpoint, json.loads((home / "credentials.json").read_text())["token"], cert
    finally:
        process.terminate()
        process.wait(30)
        log.close()
        assert_nothing_left(home)


def test_stock_sdk_and_cli_over_https(
    tls_server: tuple[str, str, Path], sdk_env: Callable[[str], SdkEnv], tmp_path: Path, service_port: int
) -> None:
    endpoint, token, cert = tls_server
    assert json.loads((cert.parent / "home" / "credentials.json").read_text())["endpoint"] == endpoint
    with httpx.Client(
        base_url=endpoint, verify=ssl.create_default_context(cafile=cert), headers={"Authorization": f"Bearer {token}"}
    ) as http:
        created = http.put(url(f"/subscriptions/{SUB}/resourceGroups/tls", "2021-04-01"), json={"location": "eastus"})
    assert created.status_code == 201
    with pytest.raises(httpx.ConnectError):  # the certificate is checked
        httpx.get(endpoint + "/openapi.json")
    script = tmp_path / "stock_client.py"
    script.write_text(STOCK_CLIENT)
    env = sdk_env("7.0.0")
    run = subprocess.run(
        [str(env.python), str(script), endpoint, token, str(cert), "tls"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert "workspace secure succeeded" in run.stdout and "operations True" in run.stdout
    client_env = {
        "PATH": "/usr/bin:/bin",
        "BATCHAI_ENDPOINT": endpoint,
        "BATCHAI_TOKEN": token,
        "BATCHAI_CA_BUNDLE": str(cert),
        "BATCHAI_HOME": str(tmp_path / "client"),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "batchai"), *args], capture_output=True, text=True, env=client_env)

    listed = cli("workspace", "list", "-g", "tls", "--query", "[].name")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == ["secure"]
    # Port forwarding goes over wss:// with the same certificate check.
    w = ("-g", "tls", "-w", "secure")
    assert cli("cluster", "create", *w, "-n", "c", "-s", "STANDARD_D1", "-t", "1").returncode == 0
    wait_for(lambda: cli("cluster", "show", *w, "-n", "c", "--query", "nodeStateCounts.idleNodeCount").stdout == "1\n")
    local = free_port()
    ran = cli(
        "cluster",
        "node",
        "exec",
        *w,
        "-c",
        "c",
        "-L",
        f"{local}:localhost:{service_port}",
        "--exec",
        answer_through(local, "over tls"),
    )
    assert (ran.returncode, ran.stdout) == (0, "OVER TLS\n"), ran.stderr
