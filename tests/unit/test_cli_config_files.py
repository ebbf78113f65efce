"""The CLI's checks of what a configuration file and the connection settings hold."""

from __future__ import annotations

from typing import Any

import pytest

from batchai.cli.client import checked_endpoint, checked_token
from batchai.cli.config_files import add_mounts, check_shapes
from batchai.cli.errors import CliError


def test_add_mounts_extends_a_null_list_and_leaves_the_file_alone() -> None:
    from_file: dict[str, Any] = {"azureFileShares": None, "fileServers": [{"fileServer": {"id": "f"}}]}
    mounts = add_mounts(from_file, "acct", "share", "afs", None, "bfs", "/nfs/id", "nfs")
    assert mounts is not None
    assert [m["azureFileUrl"] for m in mounts["azureFileShares"]] == ["https://acct.file.core.windows.net/share"]
    assert [m["fileServer"]["id"] for m in mounts["fileServers"]] == ["f", "/nfs/id"]
    assert from_file == {"azureFileShares": None, "fileServers": [{"fileServer": {"id": "f"}}]}


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        ("x", "'mountVolumes' must be a JSON object, not a string"),
        ([{"a": 1}], "'mountVolumes' must be a JSON object, not a list"),
        ({"azureBlobFileSystems": {"a": 1}}, "'mountVolumes.azureBlobFileSystems' must be a JSON list of objects"),
        ({"fileServers": [{}, 3]}, "'mountVolumes.fileServers[1]' must be a JSON object, not a number"),
    ],
)
def test_add_mounts_refuses_mounts_of_the_wrong_shape(mounts: Any, message: str) -> None:
    with pytest.raises(CliError, match=message.replace("[", r"\[").replace("]", r"\]")):
        add_mounts(mounts, "acct", "share", "afs", None, "bfs", None, "nfs")


def test_shapes_allow_nulls_and_objects_and_name_the_file() -> None:
    check_shapes({"nodeSetup": None, "mountVolumes": {"azureFileShares": []}, "cluster": {"id": "c"}})
    with pytest.raises(CliError, match=r"^job.json: 'sshConfiguration.userAccountSettings' must be a JSON object"):
        check_shapes({"sshConfiguration": {"userAccountSettings": True}}, "job.json: ")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8600", "https://host.example/prefix/", "http://[::1]:80"])
def test_good_endpoints_pass(endpoint: str) -> None:
    assert checked_endpoint(endpoint) == endpoint.rstrip("/")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:1:2", "127.0.0.1:8600", "ftp://h", "http://", "http://h:0"])
def test_bad_endpoints_fail(endpoint: str) -> None:
    with pytest.raises(CliError, match="the batchai endpoint"):
        checked_endpoint(endpoint, "$BATCHAI_ENDPOINT")


@pytest.mark.parametrize("token", ["caf\u00e9", "a b", "a\nb", "a\x00"])
def test_tokens_that_cannot_be_a_header_fail(token: str) -> None:
    with pytest.raises(CliError, match="visible ASCII"):
        checked_token(token)
    assert checked_token("abc-_.~+/=") == "abc-_.~+/="
