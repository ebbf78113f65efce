"""The storage data plane, download links and upload batches against hostile names: ``..`` as a volume or
account, names too long for a file system, reserved names, file names that no header or URL takes as they are.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from tests.conftest import SUB, Server, arm_error, url
from tests.integration.test_cli_job_files import job_file

RG_API = "2021-04-01"
SA_API = "2023-01-01"


def make_account(
    srv: Server, group: str, account: str, shares: tuple[str, ...] = (), containers: tuple[str, ...] = ()
) -> None:
    """A group with a storage account and the given shares and containers."""
    response = srv.http.put(url(f"/subscriptions/{SUB}/resourceGroups/{group}", RG_API), json={"location": "eastus"})
    assert response.status_code in (200, 201), response.text
    account_id = f"/subscriptions/{SUB}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{account}"
    response = srv.http.put(url(account_id, SA_API), json={"location": "eastus", "sku": {"name": "Standard_LRS"}})
    assert response.status_code == 201, response.text
    for share in shares:
        assert srv.http.put(f"/storage/{account}/shares/{share}").status_code == 201
    for container in containers:
        assert srv.http.put(f"/storage/{account}/containers/{container}").status_code == 201


def tree(srv: Server) -> dict[str, bytes | None]:
    """Everything in the server's storage root: files with their content, directories as None."""
    root = srv.home / "storage"
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


DOTS = ("%2e%2e", "%2e", "%2E%2E", ".%2e")


@pytest.mark.parametrize("dots", DOTS)
def test_dot_volume_names_are_refused_by_every_route(shared_server: Server, dots: str) -> None:
    srv = shared_server
    account = f"dots{DOTS.index(dots)}"
    make_account(srv, f"dots-{DOTS.index(dots)}", account, shares=("logs",), containers=("data",))
    assert srv.http.put(f"/storage/{account}/shares/logs/files/f.txt", content=b"secret").status_code == 201
    assert srv.http.put(f"/storage/{account}/containers/data/blobs/b.txt", content=b"blob").status_code == 201
    before = tree(srv)
    for collection, items in (("shares", "files"), ("containers", "blobs")):
        base = f"/storage/{account}/{collection}/{dots}"
        requests = [
            ("PUT", base, None),
            ("GET", base, None),
            ("DELETE", base, None),
            ("GET", f"{base}/{items}", None),
            ("GET", f"{base}/{items}?recursive=true", None),
            ("GET", f"{base}/{items}/shares/logs/f.txt", None),
            ("GET", f"{base}/{items}/{collection}/logs/f.txt?comp=properties", None),
            ("PUT", f"{base}/{items}/new.txt", b"x"),
            ("DELETE", f"{base}/{items}/shares/logs/f.txt", None),
            ("PUT", f"{base}/directories/newdir", None),
            ("DELETE", f"{base}/directories/shares?recursive=true", None),
        ]
        for method, path, content in requests:
            response = srv.http.request(method, path, content=content)
            error = arm_error(response, 400)
            assert error["code"] == "InvalidResourceName", (method, path, error)
            assert "secret" not in response.text
    for path in (f"/storage/{dots}/shares", f"/storage/{dots}/containers/data", f"/storage/{dots}/shares/logs/files"):
        assert arm_error(srv.http.get(path), 400)["code"] == "InvalidResourceName"
    assert arm_error(srv.http.delete(f"/storage/{dots}/containers/data"), 400)["target"] == "storage account"
    assert tree(srv) == before  # nothing created, read through or deleted
    assert srv.http.get(f"/storage/{account}/shares/logs/files/f.txt").content == b"secret"


def test_account_names_follow_the_create_rule(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "acct-rule", "acctrule1", shares=("logs",))
    for bad in ("ACCTRULE1", "a_b", "x" * 25):
        error = arm_error(srv.http.get(f"/storage/{bad}/shares/logs/files"), 400)
        assert error["code"] == "InvalidResourceName" and "3 to 24 lowercase" in error["message"]
    assert arm_error(srv.http.get("/storage/nosuchacct/shares"), 404)["code"] == "StorageAccountNotFound"
    assert srv.http.get("/storage/acctrule1/shares").json()["value"] == [{"name": "logs"}]


def test_names_too_long_for_a_file_system_are_400(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "long-names", "longnames1", shares=("logs",), containers=("data",))
    share = "/storage/longnames1/shares/logs"
    longest = "n" * 255
    assert srv.http.put(f"{share}/files/{longest}", content=b"ok").status_code == 201  # the limit itself is fine
    assert srv.http.get(f"{share}/files/{longest}").content == b"ok"
    before = tree(srv)
    too_long = ["n" * 256, "文" * 86, "dir/" + "m" * 300]  # 86 three-byte characters: 258 bytes
    deep = "/".join(["d" * 250] * 9)  # every name allowed, the whole path not
    for name in [*too_long, deep]:
        for method, path, params in (
            ("PUT", f"{share}/files/{name}", None),
            ("GET", f"{share}/files/{name}", None),
            ("GET", f"{share}/files/{name}", {"comp": "properties"}),
            ("DELETE", f"{share}/files/{name}", None),
            ("GET", f"{share}/files", {"path": name}),
            ("PUT", f"{share}/directories/{name}", None),
            ("DELETE", f"{share}/directories/{name}", None),
            ("PUT", f"/storage/longnames1/containers/data/blobs/{name}", None),
        ):
            response = srv.http.request(method, path, params=params, content=b"x" if method == "PUT" else None)
            error = arm_error(response, 400)
            assert error["code"] == "InvalidPath", (method, path[:80], error)
            assert "255 bytes" in error["message"] or "2048 bytes" in error["message"]
    assert tree(srv) == before


def test_upload_temp_names_are_reserved(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "reserved", "reserved1", shares=("logs",), containers=("data",))
    before = tree(srv)
    for path in (
        "/storage/reserved1/shares/logs/files/.batchai-upload-x",
        "/storage/reserved1/shares/logs/files/dir/.batchai-upload-abc/f.txt",
        "/storage/reserved1/containers/data/blobs/.batchai-upload-x",
        "/storage/reserved1/shares/logs/directories/.batchai-upload-d",
    ):
        error = arm_error(srv.http.put(path, content=b"hidden"), 400)
        assert error["code"] == "InvalidPath" and "reserved" in error["message"]
    assert arm_error(srv.http.get("/storage/reserved1/shares/logs/files/.batchai-upload-x"), 400)
    assert tree(srv) == before
    # A name that only resembles the prefix is an ordinary name, listed like any other.
    assert srv.http.put("/storage/reserved1/shares/logs/files/.batchai-uploads", content=b"v").status_code == 201
    names = [e["name"] for e in srv.http.get("/storage/reserved1/shares/logs/files").json()["value"]]
    assert names == [".batchai-uploads"]


# RFC 6266: an ASCII fallback without quotes or backslashes, then the exact name percent-encoded (RFC 5987).
DISPOSITION = re.compile(r"^attachment; filename=\"[ !#-\[\]-~]*\"; filename\*=UTF-8''(?P<exact>[A-Za-z0-9%._~-]+)$")
NAMES = {
    "文件.txt": b"unicode\n",
    "new\nline.txt": b"newline\n",
    'quo"te; x=1.txt': b"quote\n",
    "plain.txt": b"plain\n",
}


def test_download_links_send_any_file_name_safely(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    e = ("-g", "links.rg", "-w", "ws", "-e", "exp")
    srv.ok("group", "create", "-n", "links.rg")
    srv.ok("workspace", "create", "-g", "links.rg", "-n", "ws")
    srv.ok("experiment", "create", "-g", "links.rg", "-w", "ws", "-n", "exp")
    srv.ok("cluster", "create", "-n", "c", "-g", "links.rg", "-w", "ws", "-s", "local", "-t", "1")
    script = tmp_path / "write.py"
    script.write_text(
        f"import os\nfor n, b in {NAMES!r}.items():\n    open(os.path.join(os.environ['OUT'], n), 'wb').write(b)\n"
    )
    command = f"OUT=$AZ_BATCHAI_OUTPUT_MODEL {sys.executable} {script}"
    spec = job_file(tmp_path, command, outputDirectories=[{"id": "MODEL", "pathPrefix": str(tmp_path / "out")}])
    srv.ok("job", "create", "-n", "names", "-c", "c", *e, "-f", spec)
    waited = srv.cli("job", "wait", "-n", "names", *e, "--interval", "0.1")
    assert waited.code == 0 and "Job state: succeeded" in waited.stderr, waited.stderr

    listed = {i["name"]: i["downloadUrl"] for i in srv.ok("job", "file", "list", "-j", "names", *e, "-d", "MODEL")}
    assert set(listed) == set(NAMES)
    for name, link in listed.items():
        response = srv.http.get(link)
        assert response.status_code == 200 and response.content == NAMES[name], name
        disposition = response.headers["content-disposition"]
        match = DISPOSITION.match(disposition)
        assert match and match["exact"] == quote(name, safe=""), disposition
        # The unsigned {name} of the link changes nothing: the file is sent under its own name.
        parts = urlsplit(link)
        forged = srv.http.get(f"/download/a%22%3B%20evil%3D1?{parts.query}")
        assert forged.status_code == 200 and forged.headers["content-disposition"] == disposition

    out = tmp_path / "downloaded"
    srv.ok("job", "file", "download", "-j", "names", *e, "-d", "MODEL", "--dest", str(out))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == NAMES


def test_upload_batch_checks_every_name_before_uploading(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    make_account(srv, "batch-names", "batchnames1", shares=("logs",), containers=("data",))
    acct = ("--account-name", "batchnames1")
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_bytes(b"a")
    (source / "z.txt").write_bytes(b"z")
    before = tree(srv)
    bad_names = [b"b\\c.txt", b"bad\xffname.txt", b".batchai-upload-x"]
    for bad in bad_names:
        path = os.path.join(os.fsencode(source), bad)
        with open(path, "wb") as handle:
            handle.write(b"bad")
        shown = bad.decode("utf-8", "backslashreplace")
        for args in (
            ("storage", "file", "upload-batch", "-s", str(source), "-d", "logs"),
            ("storage", "blob", "upload-batch", "-s", str(source), "-d", "data"),
            ("storage", "file", "upload-batch", "-s", str(source), "-d", "logs", "--dryrun"),
        ):
            line = srv.fails(*args, *acct)
            assert "cannot upload" in line and shown in line and "nothing was uploaded" in line, line
            assert "Unicode" not in line
        # A single upload under the file's own name is checked the same way.
        line = srv.fails("storage", "blob", "upload", "-c", "data", "-f", os.fsdecode(path), *acct)
        assert "cannot upload" in line and shown in line, line
        line = srv.fails("storage", "file", "upload", "-s", "logs", "--source", os.fsdecode(path), *acct)
        assert "cannot upload" in line and shown in line, line
        os.unlink(path)
        assert tree(srv) == before, bad
    # Too long a name, with the destination path: refused before anything is sent as well.
    line = srv.fails(
        "storage", "file", "upload-batch", "-s", str(source), "-d", "logs", "--destination-path", "d" * 300, *acct
    )
    assert "255 bytes" in line, line
    assert tree(srv) == before
    srv.ok("storage", "file", "upload-batch", "-s", str(source), "-d", "logs", *acct)
    assert [i["name"] for i in srv.ok("storage", "file", "list", "-s", "logs", *acct)] == ["a.txt", "z.txt"]


def test_cli_sends_dot_names_to_the_server_which_refuses_them(shared_server: Server) -> None:
    srv = shared_server
    make_account(srv, "cli-dots", "clidots1", shares=("logs",), containers=("data",))
    before = tree(srv)
    for noun in ("share", "container"):
        for dots in (".", ".."):
            for verb in ("delete", "show", "exists", "create"):
                line = srv.fails("storage", noun, verb, "-n", dots, "--account-name", "clidots1")
                assert "InvalidResourceName" in line, line
    assert "InvalidResourceName" in srv.fails("storage", "share", "list", "--account-name", "..")
    assert tree(srv) == before
