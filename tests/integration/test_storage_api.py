"""Storage accounts and the storage data plane over HTTP, against a real server."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import SUB, Server, arm_error, url, wait_for

RG_API = "2021-04-01"
SA_API = "2023-01-01"
MB = 1 << 20


def group_path(group: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{group}"


def account_path(group: str, account: str) -> str:
    return f"{group_path(group)}/providers/Microsoft.Storage/storageAccounts/{account}"


def make_group(srv: Server, group: str, location: str = "eastus") -> None:
    response = srv.http.put(url(group_path(group), RG_API), json={"location": location})
    assert response.status_code in (200, 201), response.text


def put_account(srv: Server, group: str, account: str, **body: object) -> httpx.Response:
    request = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2", "tags": {}, **body}
    return srv.http.put(url(account_path(group, account), SA_API), json=request)


def make_account(srv: Server, group: str, account: str) -> None:
    make_group(srv, group)
    response = put_account(srv, group, account)
    assert response.status_code == 201, response.text


def make_share(srv: Server, account: str, share: str, collection: str = "shares") -> None:
    response = srv.http.put(f"/storage/{account}/{collection}/{share}")
    assert response.status_code == 201, response.text


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def chunked(data: bytes, size: int = MB) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_account_create_show_list_delete(shared_server: Server) -> None:
    srv = shared_server
    make_group(srv, "sa-life", location="westus2")
    first = put_account(srv, "sa-life", "salife1", location=None, tags={"team": "ml"})
    assert first.status_code == 201, first.text
    account = first.json()
    assert account["id"] == account_path("sa-life", "salife1")
    assert (account["name"], account["type"]) == ("salife1", "Microsoft.Storage/storageAccounts")
    assert account["location"] == "westus2"  # the group's, when none is given
    assert account["sku"]["name"] == "Standard_LRS" and account["kind"] == "StorageV2"
    assert account["tags"] == {"team": "ml"}
    assert account["properties"]["provisioningState"] == "Succeeded"
    endpoints = account["properties"]["primaryEndpoints"]
    assert endpoints["file"].endswith("/storage/salife1/shares/")
    assert endpoints["blob"].endswith("/storage/salife1/containers/")

    again = put_account(srv, "sa-life", "salife1", location="westus2", tags={"team": "vision"})
    assert again.status_code == 200, again.text
    assert again.json()["tags"] == {"team": "vision"}
    assert put_account(srv, "sa-life", "salife2").status_code == 201

    shown = srv.http.get(url(account_path("sa-life", "salife1"), SA_API))
    assert shown.status_code == 200 and shown.json()["tags"] == {"team": "vision"}
    in_group = srv.http.get(url(f"{group_path('sa-life')}/providers/Microsoft.Storage/storageAccounts", SA_API))
    assert [a["name"] for a in in_group.json()["value"]] == ["salife1", "salife2"]
    everywhere = srv.http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts", SA_API))
    assert {"salife1", "salife2"} <= {a["name"] for a in everywhere.json()["value"]}

    assert srv.http.delete(url(account_path("sa-life", "salife1"), SA_API)).status_code == 200
    assert srv.http.delete(url(account_path("sa-life", "salife1"), SA_API)).status_code == 204
    error = arm_error(srv.http.get(url(account_path("sa-life", "salife1"), SA_API)), 404)
    assert error["code"] == "StorageAccountNotFound"
    in_group = srv.http.get(url(f"{group_path('sa-life')}/providers/Microsoft.Storage/storageAccounts", SA_API))
    assert [a["name"] for a in in_group.json()["value"]] == ["salife2"]


def test_account_name_rules(shared_server: Server) -> None:
    srv = shared_server
    make_group(srv, "sa-rules")
    make_group(srv, "sa-rules-other")
    for bad in ("Bad_Name", "ab", "a" * 25, "UPPER123"):
        error = arm_error(put_account(srv, "sa-rules", bad), 400)
        assert error["code"] == "InvalidResourceName", error
        assert "lowercase letters and digits" in error["message"]
    assert put_account(srv, "sa-rules", "sarules1").status_code == 201
    taken = arm_error(put_account(srv, "sa-rules-other", "sarules1"), 409)
    assert taken["code"] == "StorageAccountAlreadyTaken"
    assert arm_error(put_account(srv, "no-such-group", "sarules2"), 404)["code"] == "ResourceGroupNotFound"
    missing_version = srv.http.put(account_path("sa-rules", "sarules3"), json={"location": "eastus"})
    assert arm_error(missing_version, 400)["code"] == "MissingApiVersionParameter"
    assert srv.http.get(url(account_path("sa-rules-other", "sarules1"), SA_API)).status_code == 404


def test_shares_and_containers(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-vol", "savol1")
    for collection, missing_code in (("shares", "ShareNotFound"), ("containers", "ContainerNotFound")):
        base = f"/storage/savol1/{collection}"
        first = srv.http.put(f"{base}/alpha")
        assert (first.status_code, first.json()) == (201, {"name": "alpha", "created": True})
        again = srv.http.put(f"{base}/alpha")
        assert (again.status_code, again.json()) == (200, {"name": "alpha", "created": False})
        assert srv.http.put(f"{base}/beta-2").status_code == 201
        assert srv.http.get(base).json() == {"value": [{"name": "alpha"}, {"name": "beta-2"}]}
        assert srv.http.get(f"{base}/alpha").json() == {"name": "alpha"}
        assert arm_error(srv.http.get(f"{base}/gamma"), 404)["code"] == missing_code
        for bad in ("Bad_Share", "ab", "-lead", "two--dashes"):
            assert arm_error(srv.http.put(f"{base}/{bad}"), 400)["code"] == "InvalidResourceName"
        assert srv.http.delete(f"{base}/beta-2").json() == {"deleted": True}
        assert srv.http.delete(f"{base}/beta-2").json() == {"deleted": False}
        assert srv.http.get(base).json() == {"value": [{"name": "alpha"}]}
    # Shares and containers are separate, and hold files and blobs respectively.
    assert srv.http.delete("/storage/savol1/shares/alpha").json() == {"deleted": True}
    assert srv.http.get("/storage/savol1/containers/alpha").status_code == 200
    assert arm_error(srv.http.get("/storage/savol1/containers/alpha/files"), 400)["code"] == "InvalidParameter"
    assert arm_error(srv.http.get("/storage/nosuchacct/shares"), 404)["code"] == "StorageAccountNotFound"
    assert arm_error(srv.http.put("/storage/nosuchacct/shares/alpha"), 404)["code"] == "StorageAccountNotFound"


def test_directories_and_files(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-dirs", "sadirs1")
    make_share(srv, "sadirs1", "scripts")
    base = "/storage/sadirs1/shares/scripts"
    made = srv.http.put(f"{base}/directories/cntk/sub")
    assert (made.status_code, made.json()) == (201, {"name": "cntk/sub", "created": True})
    assert srv.http.put(f"{base}/directories/cntk").json() == {"name": "cntk", "created": False}
    upload = srv.http.put(f"{base}/files/cntk/ConvNet_MNIST.py", content=b"print('hi')\n")
    assert upload.status_code == 201, upload.text
    entry = upload.json()
    assert (entry["name"], entry["type"], entry["contentLength"]) == ("cntk/ConvNet_MNIST.py", "file", 12)
    assert entry["lastModified"].endswith("Z")

    listing = srv.http.get(f"{base}/files", params={"path": "cntk"}).json()["value"]
    assert [(e["name"], e["type"]) for e in listing] == [("cntk/ConvNet_MNIST.py", "file"), ("cntk/sub", "directory")]
    everything = srv.http.get(f"{base}/files", params={"recursive": "true"}).json()["value"]
    assert [e["name"] for e in everything] == ["cntk", "cntk/ConvNet_MNIST.py", "cntk/sub"]
    missing_dir = arm_error(srv.http.get(f"{base}/files", params={"path": "nope"}), 404)
    assert missing_dir["code"] == "ResourceNotFound"

    # One entry's properties, without listing its directory (what 'storage file show/exists' read).
    props = {"comp": "properties"}
    shown = srv.http.get(f"{base}/files/cntk/ConvNet_MNIST.py", params=props).json()
    assert (shown["name"], shown["type"], shown["contentLength"]) == ("cntk/ConvNet_MNIST.py", "file", 12)
    assert srv.http.get(f"{base}/files/cntk/sub", params=props).json()["type"] == "directory"
    assert arm_error(srv.http.get(f"{base}/files/cntk/nope.py", params=props), 404)["code"] == "ResourceNotFound"
    missing_share = srv.http.get("/storage/sadirs1/shares/nope/files/a.py", params=props)
    assert arm_error(missing_share, 404)["code"] == "ShareNotFound"
    assert arm_error(srv.http.get(f"{base}/files/cntk/sub", params={"comp": "acl"}), 400)["target"] == "comp"

    # A directory is not deleted as a file, nor a file as a directory; a non-empty one needs ?recursive.
    assert "is a directory" in arm_error(srv.http.delete(f"{base}/files/cntk"), 400)["message"]
    assert "is a file" in arm_error(srv.http.delete(f"{base}/directories/cntk/ConvNet_MNIST.py"), 400)["message"]
    assert arm_error(srv.http.delete(f"{base}/directories/cntk"), 400)["code"] == "DirectoryNotEmpty"
    assert srv.http.delete(f"{base}/directories/cntk/sub").json() == {"deleted": True}
    assert srv.http.delete(f"{base}/files/cntk/ConvNet_MNIST.py").json() == {"deleted": True}
    assert arm_error(srv.http.get(f"{base}/files/cntk/ConvNet_MNIST.py"), 404)["code"] == "ResourceNotFound"
    srv.http.put(f"{base}/files/cntk/a/b.txt", content=b"b")  # parents are made
    assert srv.http.delete(f"{base}/directories/cntk", params={"recursive": "true"}).json() == {"deleted": True}
    assert srv.http.get(f"{base}/files").json() == {"value": []}


def test_upload_download_roundtrip_of_a_large_file(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-big", "sabig1")
    make_share(srv, "sabig1", "data", collection="containers")
    data = os.urandom(3 * MB + 12345)
    base = "/storage/sabig1/containers/data"
    upload = srv.http.put(f"{base}/blobs/mnist_cntk/Train-28x28_cntk_text.txt", content=chunked(data))
    assert upload.status_code == 201, upload.text
    assert upload.json()["contentLength"] == len(data)

    with srv.http.stream("GET", f"{base}/blobs/mnist_cntk/Train-28x28_cntk_text.txt") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["content-type"] == "application/octet-stream"
        received = b"".join(response.iter_bytes())
    assert received == data

    # Replacing a blob publishes the new content whole.
    assert srv.http.put(f"{base}/blobs/mnist_cntk/Train-28x28_cntk_text.txt", content=b"small").status_code == 201
    assert srv.http.get(f"{base}/blobs/mnist_cntk/Train-28x28_cntk_text.txt").content == b"small"

    for name in ("b.txt", "c.txt", "d.txt"):
        srv.http.put(f"{base}/blobs/mnist_cntk/{name}", content=name.encode())
    first = srv.http.get(f"{base}/blobs", params={"path": "mnist_cntk", "maxresults": "2"}).json()
    assert len(first["value"]) == 2 and first["nextLink"]
    second = srv.http.get(first["nextLink"]).json()
    names = [e["name"] for e in first["value"] + second["value"]]
    assert names == ["mnist_cntk/Train-28x28_cntk_text.txt", "mnist_cntk/b.txt", "mnist_cntk/c.txt", "mnist_cntk/d.txt"]


def test_names_with_spaces_and_unicode(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-names", "sanames1")
    make_share(srv, "sanames1", "scripts")
    base = "/storage/sanames1/shares/scripts"
    name = "my dir/résumé #1.txt"
    assert srv.http.put(f"{base}/files/{quote(name)}", content=b"cv").status_code == 201
    assert srv.http.get(f"{base}/files/{quote(name)}").content == b"cv"
    listing = srv.http.get(f"{base}/files", params={"path": "my dir"}).json()["value"]
    assert [e["name"] for e in listing] == [name]


@pytest.mark.parametrize(
    "method,path",
    [
        ("PUT", "/files/..%2F..%2Fetc"),
        ("PUT", "/files/..%2F..%2F..%2F..%2Fescaped.txt"),
        ("PUT", "/files/a%2F..%2F..%2Fescaped.txt"),
        ("PUT", "/files/%2Fetc%2Fpasswd"),
        ("PUT", "/files/%2Ftmp%2Fescaped.txt"),
        ("GET", "/files/..%2F..%2F..%2Fcredentials.json"),
        ("GET", "/files/%2Fetc%2Fpasswd"),
        ("GET", "/files?path=../.."),
        ("GET", "/files?path=%2Fetc"),
        ("PUT", "/directories/..%2F..%2Fescaped"),
        ("DELETE", "/directories/..%2F..%2F..?recursive=true"),
        ("DELETE", "/files/..%2F..%2F..%2Fcredentials.json"),
    ],
)
def test_paths_leaving_the_share_are_refused(shared_server: Server, method: str, path: str) -> None:
    srv = shared_server
    make_group(srv, "sa-escape")
    assert put_account(srv, "sa-escape", "saescape1").status_code in (200, 201)  # shared by the cases
    assert srv.http.put("/storage/saescape1/shares/scripts").status_code in (200, 201)
    before = tree(srv.home)
    content = b"escaped" if method == "PUT" else None
    response = srv.http.request(method, f"/storage/saescape1/shares/scripts{path}", content=content)
    error = arm_error(response, 400)
    assert error["code"] == "InvalidPath", error
    after = tree(srv.home)
    assert [p for p in after if not p.startswith("batchai.db")] == [p for p in before if not p.startswith("batchai.db")]
    assert (srv.home / "credentials.json").exists()
    assert not Path("/tmp/escaped.txt").exists()


def test_upload_to_a_missing_share_creates_nothing(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-missing", "samissing1")
    before = tree(srv.home / "storage")
    error = arm_error(srv.http.put("/storage/samissing1/shares/nope/files/a/b.txt", content=b"x"), 404)
    assert error["code"] == "ShareNotFound"
    error = arm_error(srv.http.put("/storage/samissing1/containers/nope/blobs/b.txt", content=b"x"), 404)
    assert error["code"] == "ContainerNotFound"
    error = arm_error(srv.http.put("/storage/samissing1/shares/nope/directories/a"), 404)
    assert error["code"] == "ShareNotFound"
    error = arm_error(srv.http.put("/storage/nosuchacct9/shares/scripts/files/b.txt", content=b"x"), 404)
    assert error["code"] == "StorageAccountNotFound"
    assert tree(srv.home / "storage") == before


def test_a_token_is_required(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-auth", "saauth1")
    make_share(srv, "saauth1", "scripts")
    requests = [
        ("GET", "/storage/saauth1/shares"),
        ("PUT", "/storage/saauth1/shares/other"),
        ("PUT", "/storage/saauth1/shares/scripts/files/x.txt"),
        ("GET", "/storage/saauth1/shares/scripts/files"),
        ("GET", url(account_path("sa-auth", "saauth1"), SA_API)),
        ("DELETE", url(account_path("sa-auth", "saauth1"), SA_API)),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {srv.token}"}):
        with httpx.Client(base_url=srv.endpoint, headers=headers, timeout=30) as anonymous:
            for method, path in requests:
                response = anonymous.request(method, path, content=b"x" if "files/" in path else None)
                error = arm_error(response, 401)
                assert error["code"] in ("AuthenticationFailed", "InvalidAuthenticationToken")
                assert response.headers["www-authenticate"] == "Bearer"
    assert srv.http.get("/storage/saauth1/shares").json() == {"value": [{"name": "scripts"}]}
    assert srv.http.get("/storage/saauth1/shares/scripts/files").json() == {"value": []}


def test_deleting_an_account_deletes_its_files(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-del", "sadel1")
    make_share(srv, "sadel1", "scripts")
    assert srv.http.put("/storage/sadel1/shares/scripts/files/a.txt", content=b"a").status_code == 201
    account_dir = srv.home / "storage" / "sadel1"
    assert (account_dir / "shares" / "scripts" / "a.txt").exists()
    assert srv.http.delete(url(account_path("sa-del", "sadel1"), SA_API)).status_code == 200
    wait_for(lambda: not account_dir.exists(), message="the account's files to go")
    assert arm_error(srv.http.get("/storage/sadel1/shares/scripts/files/a.txt"), 404)["code"] == (
        "StorageAccountNotFound"
    )
    # A new account of that name starts empty.
    assert put_account(srv, "sa-del", "sadel1").status_code == 201
    assert srv.http.get("/storage/sadel1/shares").json() == {"value": []}


def test_deleting_a_group_deletes_its_accounts(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "sa-gdel", "sagdel1")
    assert put_account(srv, "sa-gdel", "sagdel2").status_code == 201
    make_share(srv, "sagdel1", "data", collection="containers")
    srv.http.put("/storage/sagdel1/containers/data/blobs/x/y.bin", content=b"y")
    assert srv.http.delete(url(group_path("sa-gdel"), RG_API)).status_code in (200, 202)
    wait_for(lambda: srv.http.get(url(group_path("sa-gdel"), RG_API)).status_code == 404, message="the group to go")
    for name in ("sagdel1", "sagdel2"):
        assert arm_error(srv.http.get(f"/storage/{name}/containers"), 404)["code"] == "StorageAccountNotFound"
    wait_for(lambda: not (srv.home / "storage" / "sagdel1").exists(), message="the account's files to go")
    everywhere = srv.http.get(url(f"/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts", SA_API))
    assert not {"sagdel1", "sagdel2"} & {a["name"] for a in everywhere.json()["value"]}


def test_files_survive_a_restart(server: Server) -> None:
    make_account(server, "sa-persist", "sapersist1")
    make_share(server, "sapersist1", "scripts")
    data = os.urandom(MB + 7)
    response = server.http.put("/storage/sapersist1/shares/scripts/files/models/m.bin", content=chunked(data))
    assert response.status_code == 201, response.text
    server.restart()
    assert server.http.get(url(account_path("sa-persist", "sapersist1"), SA_API)).status_code == 200
    downloaded = server.http.get("/storage/sapersist1/shares/scripts/files/models/m.bin")
    assert downloaded.status_code == 200 and downloaded.content == data
    assert server.http.get("/storage/sapersist1/shares").json() == {"value": [{"name": "scripts"}]}


def test_what_an_upload_cut_by_a_server_kill_left_is_swept_at_the_next_start(server: Server) -> None:
    """An upload streams into a hidden temporary file beside its target; a server killed meanwhile leaves that
    file behind (never listed). The next server removes it as it starts."""
    make_account(server, "sa-swept", "saswept1")
    make_share(server, "saswept1", "scripts")
    share = server.home / "storage" / "saswept1" / "shares" / "scripts"
    resume = threading.Event()

    def body() -> Iterator[bytes]:
        yield os.urandom(MB)
        resume.wait(30)
        yield b"rest"

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):
            server.http.put("/storage/saswept1/shares/scripts/files/models/m.bin", content=body())

    uploading = threading.Thread(target=upload)
    uploading.start()
    (temporary,) = wait_for(lambda: list(share.rglob(".batchai-upload-*")), message="the upload's temporary file")
    server.stop(kill=True)
    resume.set()
    uploading.join(30)
    assert temporary.exists() and not (share / "models" / "m.bin").exists()
    server.start()
    wait_for(lambda: not temporary.exists(), message="the temporary file to be swept")
    assert server.http.get("/storage/saswept1/shares/scripts/files", params={"path": "models"}).status_code == 200
