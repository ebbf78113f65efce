"""The environment jobs start from (api.app.base_environment)."""

from __future__ import annotations

from batchai.api.app import base_environment


def test_credentials_stay_out_and_the_node_python_comes_first_on_path() -> None:
    server = {"PATH": "/usr/bin:/bin", "BATCHAI_HOME": "/h", "AZURE_STORAGE_KEY": "k", "LANG": "C"}
    env = base_environment(server, "/opt/venv/bin/python")
    assert env == {"PATH": "/opt/venv/bin:/usr/bin:/bin", "LANG": "C"}
    # A Python already on PATH (a system one, an activated virtual environment) leaves it as it is.
    assert base_environment(server, "/usr/bin/python3")["PATH"] == "/usr/bin:/bin"
    assert base_environment({}, "/opt/venv/bin/python") == {"PATH": "/opt/venv/bin"}
