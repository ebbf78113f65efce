"""``batchai.sdk`` without the Azure packages: where it finds the server, and its credential object.

(The clients themselves are exercised for real, per SDK version, by test_walkthroughs and test_sdk_behaviour.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchai import sdk
from batchai.config import DEFAULT_SUBSCRIPTION


def write(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_the_configuration_is_the_clis(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(home / "credentials.json", {"endpoint": "http://127.0.0.1:1", "token": "server-token", "signingKey": "k"})
    conn = sdk.connection(environ={"BATCHAI_HOME": str(home)})
    assert (conn.endpoint, conn.token, conn.subscription) == (
        "http://127.0.0.1:1",
        "server-token",
        DEFAULT_SUBSCRIPTION,
    )

    # batchai configure's file wins over the server's credentials, the variables over both; home= wins over
    # $BATCHAI_HOME.
    write(
        home / "config.json", {"endpoint": "https://batchai.example:8600/", "token": "configured", "subscription": "s"}
    )
    conn = sdk.connection(home, environ={"BATCHAI_HOME": str(tmp_path / "elsewhere")})
    assert (conn.endpoint, conn.token, conn.subscription) == ("https://batchai.example:8600", "configured", "s")
    environ = {
        "BATCHAI_HOME": str(home),
        "BATCHAI_ENDPOINT": "http://127.0.0.1:2",
        "BATCHAI_TOKEN": "from-env",
        "BATCHAI_SUBSCRIPTION": "sub-env",
    }
    conn = sdk.connection(environ=environ)
    assert (conn.endpoint, conn.token, conn.subscription) == ("http://127.0.0.1:2", "from-env", "sub-env")
    assert sdk.credentials(environ=environ).token == "from-env"


def test_no_server_configured_is_one_clear_error(tmp_path: Path) -> None:
    empty = {"BATCHAI_HOME": str(tmp_path / "empty")}
    with pytest.raises(sdk.NotConfigured, match="no batchai server is configured"):
        sdk.connection(environ=empty)
    # ImportError (naming what to install) where azure-mgmt-batchai is not installed
    with pytest.raises((sdk.NotConfigured, ImportError), match="batchai"):
        sdk.client(environ=empty)


def test_the_credential_serves_both_generations() -> None:
    credential = sdk.BatchaiCredential("t0k3n")
    assert "t0k3n" not in repr(credential)
    token = credential.get_token("https://management.azure.com/.default")
    assert token.token == "t0k3n" and token.expires_on > 0
    assert credential.authorization() == "Bearer t0k3n"
    with pytest.raises(ValueError):
        sdk.BatchaiCredential("")


def test_make_client_refuses_what_is_not_an_azure_client(tmp_path: Path) -> None:
    environ = {"BATCHAI_ENDPOINT": "http://127.0.0.1:1", "BATCHAI_TOKEN": "t", "BATCHAI_HOME": str(tmp_path)}

    class NotAClient:
        def __init__(self, endpoint: str) -> None:
            self.endpoint = endpoint

    with pytest.raises(TypeError, match="neither 'credential' nor 'credentials'"):
        sdk.make_client(NotAClient, environ=environ)
