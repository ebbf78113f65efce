"""``batchai storage ...`` through the real CLI against a real server: the quickstart's storage steps and more."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.conftest import Server

SCRIPT = b"import cntk\nprint('training ConvNet on MNIST')\n"


def account(srv: Server, group: str, name: str) -> None:
    srv.ok("group", "create", "-n", group, "-l", "eastus")
    srv.ok("storage", "account", "create", "-n", name, "-g", group)


def test_quickstart_storage_steps(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    assert srv.ok("group", "create", "-n", "batchai.quickstart", "-l", "eastus")["location"] == "eastus"
    created = srv.ok(
        "storage", "account", "create", "-n", "qsstorage1", "--sku", "Standard_LRS", "-g", "batchai.quickstart"
    )
    assert (created["name"], created["location"], created["sku"]["name"]) == ("qsstorage1", "eastus", "Standard_LRS")
    assert created["resourceGroup"] == "batchai.quickstart"
    assert created["provisioningState"] == "Succeeded"  # flattened as az shows it
    acct = ("--account-name", "qsstorage1")

    assert srv.ok("storage", "share", "create", "-n", "scripts", *acct) == {"created": True}
    assert srv.ok("storage", "share", "create", "-n", "logs", *acct) == {"created": True}
    assert srv.ok("storage", "directory", "create", "-n", "cntk", "-s", "scripts", *acct) == {"created": True}
    script = tmp_path / "ConvNet_MNIST.py"
    script.write_bytes(SCRIPT)
    uploaded = srv.ok(
        "storage",
        "file",
        "upload",
        "-s",
        "scripts",
        "--source",
        "ConvNet_MNIST.py",
        "--path",
        "cntk",
        *acct,
        cwd=tmp_path,
    )
    assert uploaded["name"] == "cntk/ConvNet_MNIST.py"
    assert uploaded["contentLength"] == len(SCRIPT) and uploaded["lastModified"]

    assert srv.ok("storage", "container", "create", "-n", "data", *acct) == {"created": True}
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    (mnist / "Train-28x28_cntk_text.txt").write_bytes(b"train " * 1000)
    (mnist / "Test-28x28_cntk_text.txt").write_bytes(b"test " * 500)
    (mnist / "other.txt").write_bytes(b"not this one")
    result = srv.cli(
        "storage",
        "blob",
        "upload-batch",
        "-s",
        ".",
        "--pattern",
        "*28x28_cntk*",
        "--destination",
        "data",
        "--destination-path",
        "mnist_cntk",
        *acct,
        cwd=mnist,
    )
    assert result.code == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    batch = result.json()
    assert sorted(item["Blob"].rsplit("/", 1)[-1] for item in batch) == [
        "Test-28x28_cntk_text.txt",
        "Train-28x28_cntk_text.txt",
    ]
    assert all(
        item["Blob"].startswith(f"{srv.endpoint}/storage/qsstorage1/containers/data/blobs/mnist_cntk/")
        for item in batch
    )

    blobs = srv.ok("storage", "blob", "list", "-c", "data", *acct)
    assert [b["name"] for b in blobs] == ["mnist_cntk/Test-28x28_cntk_text.txt", "mnist_cntk/Train-28x28_cntk_text.txt"]
    assert [b["properties"]["contentLength"] for b in blobs] == [2500, 6000]
    files = srv.ok("storage", "file", "list", "-s", "scripts", "-p", "cntk", *acct)
    assert [(f["name"], f["type"]) for f in files] == [("ConvNet_MNIST.py", "file")]
    assert files[0]["properties"]["contentLength"] == len(SCRIPT)
    assert [(f["name"], f["type"]) for f in srv.ok("storage", "file", "list", "-s", "scripts", *acct)] == [
        ("cntk", "dir")
    ]

    # Download roundtrips, into a file path and into a directory (keeping the name).
    out = tmp_path / "out"
    out.mkdir()
    downloaded = srv.ok(
        "storage",
        "file",
        "download",
        "-s",
        "scripts",
        "-p",
        "cntk/ConvNet_MNIST.py",
        "--dest",
        str(out / "copy.py"),
        *acct,
    )
    assert downloaded["contentLength"] == len(SCRIPT)
    assert (out / "copy.py").read_bytes() == SCRIPT
    srv.ok(
        "storage", "blob", "download", "-c", "data", "-n", "mnist_cntk/Train-28x28_cntk_text.txt", "-f", str(out), *acct
    )
    assert (out / "Train-28x28_cntk_text.txt").read_bytes() == b"train " * 1000
    assert sorted(p.name for p in out.iterdir()) == ["Train-28x28_cntk_text.txt", "copy.py"]  # no temp files

    # --query, -o tsv and -o table work on storage output as on everything else.
    names = srv.ok("storage", "blob", "list", "-c", "data", "--query", "[].name", *acct)
    assert names == ["mnist_cntk/Test-28x28_cntk_text.txt", "mnist_cntk/Train-28x28_cntk_text.txt"]
    tsv = srv.cli("storage", "share", "list", "-o", "tsv", *acct)
    assert tsv.code == 0 and tsv.stdout.splitlines() == ["logs", "scripts"]
    table = srv.cli("storage", "file", "list", "-s", "scripts", "-p", "cntk", "-o", "table", *acct)
    assert table.code == 0, table.stderr
    header, rule, *rows = table.stdout.splitlines()  # az's: a header, a rule of dashes, the rows
    assert header.split() == ["Name", "Content", "Length", "Type", "Last", "Modified"] and set(rule) == {"-", " "}
    assert rows[0].split()[:3] == ["ConvNet_MNIST.py", str(len(SCRIPT)), "file"]
    blob_table = srv.cli("storage", "blob", "list", "-c", "data", "-o", "table", *acct).stdout.splitlines()
    assert blob_table[0].split()[:3] == ["Name", "Blob", "Type"] and len(blob_table) == 4
    # No table of its own: az's automatic one, the scalar properties by name.
    accounts = srv.cli("storage", "account", "list", "-g", "batchai.quickstart", "-o", "table").stdout.splitlines()
    assert accounts[0].split() == ["CreationTime", "Kind", "Location", "Name", "ProvisioningState", "ResourceGroup"]
    assert accounts[2].split()[1:] == ["StorageV2", "eastus", "qsstorage1", "Succeeded", "batchai.quickstart"]


def test_account_commands(shared_server: Server) -> None:
    srv = shared_server
    srv.ok("group", "create", "-n", "cli-sa", "-l", "westus2")
    created = srv.ok(
        "storage", "account", "create", "-n", "clisa1", "-g", "cli-sa", "--tags", "team=ml", "--kind", "StorageV2"
    )
    assert (created["location"], created["tags"], created["kind"]) == ("westus2", {"team": "ml"}, "StorageV2")
    srv.ok(
        "storage",
        "account",
        "create",
        "--name",
        "clisa2",
        "--resource-group",
        "cli-sa",
        "-l",
        "eastus",
        "--sku",
        "Premium_LRS",
    )
    assert srv.ok("storage", "account", "show", "-n", "clisa2", "-g", "cli-sa")["sku"]["name"] == "Premium_LRS"
    assert srv.ok("storage", "account", "list", "-g", "cli-sa", "--query", "[].name") == ["clisa1", "clisa2"]
    assert {"clisa1", "clisa2"} <= set(srv.ok("storage", "account", "list", "--query", "[].name"))

    # Keys as the recipes' setup.sh reads them (`az storage account keys list ... | jq -r '.[0].value'`): two
    # 512-bit keys, the same at every call, none shared between accounts; and a connection string naming one.
    keys = srv.ok("storage", "account", "keys", "list", "-n", "clisa1", "-g", "cli-sa")
    assert [(k["keyName"], k["permissions"], len(base64.b64decode(k["value"]))) for k in keys] == [
        ("key1", "FULL", 64),
        ("key2", "FULL", 64),
    ]
    assert srv.ok("storage", "account", "keys", "list", "-n", "clisa1", "-g", "cli-sa") == keys
    other = srv.ok("storage", "account", "keys", "list", "-n", "clisa2", "-g", "cli-sa", "--query", "[].value")
    assert not set(other) & {k["value"] for k in keys}
    connection = srv.ok("storage", "account", "show-connection-string", "-n", "clisa1", "-g", "cli-sa")
    assert f"AccountName=clisa1;AccountKey={keys[0]['value']}" in connection["connectionString"]
    srv.ok("storage", "share", "create", "-n", "bykey", "--connection-string", connection["connectionString"])
    assert "StorageAccountNotFound" in srv.fails("storage", "account", "keys", "list", "-n", "nosuch", "-g", "cli-sa")

    # az prompts before deleting; with no terminal to prompt on, it refuses without -y (knack's NoTTYException).
    declined = srv.cli("storage", "account", "delete", "-n", "clisa2", "-g", "cli-sa", input="y\n")
    assert declined.code == 1
    assert declined.stderr == "ERROR: Unable to prompt for confirmation as no tty available. Use --yes.\n"
    assert srv.ok("storage", "account", "show", "-n", "clisa2", "-g", "cli-sa")["name"] == "clisa2"
    assert srv.ok("storage", "account", "delete", "-n", "clisa2", "-g", "cli-sa", "-y") is None
    assert srv.ok("storage", "account", "list", "-g", "cli-sa", "--query", "[].name") == ["clisa1"]
    assert "StorageAccountNotFound" in srv.fails("storage", "account", "show", "-n", "clisa2", "-g", "cli-sa")
    assert "InvalidResourceName" in srv.fails("storage", "account", "create", "-n", "Bad_Name", "-g", "cli-sa")
    srv.ok("group", "create", "-n", "cli-sa-other")
    assert "StorageAccountAlreadyTaken" in srv.fails(
        "storage", "account", "create", "-n", "clisa1", "-g", "cli-sa-other"
    )
    assert "ResourceGroupNotFound" in srv.fails("storage", "account", "create", "-n", "clisa3", "-g", "nogroup")


def test_exists_show_delete(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    account(srv, "cli-crud", "clicrud1")
    env = {"AZURE_STORAGE_ACCOUNT": "clicrud1"}  # as az, the account may come from the environment
    (tmp_path / "a.txt").write_bytes(b"aaa")

    assert srv.ok("storage", "share", "exists", "-n", "work", env=env) == {"exists": False}
    assert srv.ok("storage", "share", "create", "-n", "work", "--quota", "10", env=env) == {"created": True}
    assert srv.ok("storage", "share", "create", "-n", "work", env=env) == {"created": False}
    assert "already exists" in srv.fails("storage", "share", "create", "-n", "work", "--fail-on-exist", env=env)
    assert srv.ok("storage", "share", "exists", "-n", "work", env=env) == {"exists": True}

    assert srv.ok("storage", "directory", "exists", "-s", "work", "-n", "d1", env=env) == {"exists": False}
    assert srv.ok("storage", "directory", "create", "-s", "work", "-n", "d1/d2", env=env) == {"created": True}
    assert srv.ok("storage", "directory", "exists", "-s", "work", "-n", "d1", env=env) == {"exists": True}
    assert srv.ok("storage", "directory", "show", "-s", "work", "-n", "d1/d2", env=env)["name"] == "d1/d2"
    listed = srv.ok("storage", "directory", "list", "-s", "work", "-n", "d1", env=env)
    assert [(d["name"], d["type"]) for d in listed] == [("d2", "dir")]

    # --path naming a file (not a directory) uploads to that path.
    srv.ok(
        "storage", "file", "upload", "-s", "work", "--source", str(tmp_path / "a.txt"), "-p", "d1/renamed.txt", env=env
    )
    srv.ok("storage", "file", "upload", "-s", "work", "--source", str(tmp_path / "a.txt"), env=env)  # to the root
    assert srv.ok("storage", "file", "exists", "-s", "work", "-p", "d1/renamed.txt", env=env) == {"exists": True}
    assert srv.ok("storage", "file", "exists", "-s", "work", "-p", "a.txt", env=env) == {"exists": True}
    assert srv.ok("storage", "file", "exists", "-s", "work", "-p", "d1/d2", env=env) == {"exists": False}
    assert srv.ok("storage", "file", "exists", "-s", "work", "-p", "no/such.txt", env=env) == {"exists": False}
    assert srv.ok("storage", "file", "exists", "-s", "noshare", "-p", "a.txt", env=env) == {"exists": False}
    shown = srv.ok("storage", "file", "show", "-s", "work", "-p", "d1/renamed.txt", env=env)
    assert shown["properties"]["contentLength"] == 3
    assert "ResourceNotFound" in srv.fails("storage", "file", "show", "-s", "work", "-p", "d1/none.txt", env=env)
    listed = srv.ok("storage", "file", "list", "-s", "work", "-p", "d1", "--exclude-dir", env=env)
    assert [f["name"] for f in listed] == ["renamed.txt"]

    assert "not empty" in srv.fails("storage", "directory", "delete", "-s", "work", "-n", "d1", env=env)
    assert srv.ok("storage", "file", "delete", "-s", "work", "-p", "d1/renamed.txt", env=env) == {"deleted": True}
    assert srv.ok("storage", "directory", "delete", "-s", "work", "-n", "d1/d2", env=env) == {"deleted": True}
    assert "does not exist" in srv.fails(
        "storage", "directory", "delete", "-s", "work", "-n", "d1/d2", "--fail-not-exist", env=env
    )

    # Containers and blobs; the account may also come from a connection string.
    conn = ("--connection-string", "DefaultEndpointsProtocol=https;AccountName=clicrud1;AccountKey=abc==;")
    assert srv.ok("storage", "container", "create", "-n", "models", *conn) == {"created": True}
    assert srv.ok("storage", "container", "exists", "-n", "models", *conn) == {"exists": True}
    assert srv.ok("storage", "container", "show", "-n", "models", *conn) == {"name": "models"}
    assert srv.ok("storage", "container", "list", *conn) == [{"name": "models"}]
    uploaded = srv.ok(
        "storage",
        "blob",
        "upload",
        "-c",
        "models",
        "-f",
        str(tmp_path / "a.txt"),
        "-n",
        "v1/a.txt",
        "--account-name",
        "clicrud1",
        "--account-key",
        "ignored",
        "--auth-mode",
        "key",
    )
    assert uploaded["name"] == "v1/a.txt"
    assert srv.ok("storage", "blob", "exists", "-c", "models", "-n", "v1/a.txt", *conn) == {"exists": True}
    assert srv.ok("storage", "blob", "exists", "-c", "models", "-n", "v1/b.txt", *conn) == {"exists": False}
    assert (
        srv.ok("storage", "blob", "show", "-c", "models", "-n", "v1/a.txt", *conn)["properties"]["contentLength"] == 3
    )
    assert srv.ok("storage", "blob", "list", "-c", "models", "--prefix", "v1/a", *conn)[0]["name"] == "v1/a.txt"
    assert srv.ok("storage", "blob", "list", "-c", "models", "--prefix", "v2/", *conn) == []
    assert srv.ok("storage", "blob", "delete", "-c", "models", "-n", "v1/a.txt", *conn) is None
    assert srv.ok("storage", "blob", "list", "-c", "models", *conn) == []
    assert srv.ok("storage", "container", "delete", "-n", "models", *conn) == {"deleted": True}
    assert srv.ok("storage", "share", "delete", "-n", "work", env=env) == {"deleted": True}
    assert srv.ok("storage", "share", "list", env=env) == []
    assert "ShareNotFound" in srv.fails("storage", "share", "show", "-n", "work", env=env)


def test_batches_and_a_large_file(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    account(srv, "cli-batch", "clibatch1")
    acct = ("--account-name", "clibatch1")
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    big = os.urandom(3 * (1 << 20) + 99)
    (src / "big.bin").write_bytes(big)
    (src / "sub" / "a.txt").write_bytes(b"a")
    (src / "sub" / "deeper" / "b.txt").write_bytes(b"b")
    (src / "empty.txt").write_bytes(b"")

    srv.ok("storage", "share", "create", "-n", "runs", *acct)
    uploaded = srv.ok(
        "storage", "file", "upload-batch", "-d", "runs", "-s", str(src), "--destination-path", "in", *acct
    )
    assert sorted(u["File"].split("/files/", 1)[1] for u in uploaded) == [
        "in/big.bin",
        "in/empty.txt",
        "in/sub/a.txt",
        "in/sub/deeper/b.txt",
    ]
    dry = srv.ok(
        "storage", "file", "upload-batch", "-d", "runs", "-s", str(src), "--pattern", "*.txt", "--dryrun", *acct
    )
    assert len(dry) == 3
    out = tmp_path / "out"
    got = srv.ok("storage", "file", "download-batch", "-s", "runs", "-d", str(out), "--pattern", "in/sub/*", *acct)
    assert got == ["in/sub/a.txt", "in/sub/deeper/b.txt"]
    assert (out / "in" / "sub" / "deeper" / "b.txt").read_bytes() == b"b"
    assert not (out / "in" / "big.bin").exists()

    srv.ok("storage", "container", "create", "-n", "blobs", *acct)
    srv.ok("storage", "blob", "upload", "-c", "blobs", "-f", str(src / "big.bin"), *acct)  # named as the file
    srv.ok("storage", "blob", "upload-batch", "-s", str(src / "sub"), "-d", "blobs", *acct)
    assert srv.ok("storage", "blob", "list", "-c", "blobs", "--query", "[].name", *acct) == [
        "a.txt",
        "big.bin",
        "deeper/b.txt",
    ]
    whole = tmp_path / "whole"
    assert srv.ok("storage", "blob", "download-batch", "-s", "blobs", "-d", str(whole), *acct) == [
        "a.txt",
        "big.bin",
        "deeper/b.txt",
    ]
    assert (whole / "big.bin").read_bytes() == big
    assert (
        srv.ok("storage", "file", "download", "-s", "runs", "-p", "in/empty.txt", "--dest", str(whole), *acct)[
            "contentLength"
        ]
        == 0
    )
    assert (whole / "empty.txt").read_bytes() == b""
    assert sorted(p.relative_to(whole).as_posix() for p in whole.rglob("*")) == [
        "a.txt",
        "big.bin",
        "deeper",
        "deeper/b.txt",
        "empty.txt",
    ]


def test_batches_take_a_folder_or_a_url_as_their_share_or_container(shared_server: Server, tmp_path: Path) -> None:
    """As az and the recipes give them: ``-d data/unlabeled`` (Batch-Scoring's upload), or the container's URL
    (which names the account, so that --account-name may be left out)."""
    srv = shared_server
    account(srv, "cli-batch-url", "clibatchurl1")
    acct = ("--account-name", "clibatchurl1")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a")
    (src / "sub" / "b.txt").write_bytes(b"b")
    srv.ok("storage", "container", "create", "-n", "data", *acct)
    srv.ok("storage", "blob", "upload-batch", "--destination", "data/unlabeled_images", "--source", str(src), *acct)
    url = "https://clibatchurl1.blob.core.windows.net/data/by-url"
    srv.ok("storage", "blob", "upload-batch", "-d", url, "-s", str(src), "--destination-path", "more")
    assert srv.ok("storage", "blob", "list", "-c", "data", "--query", "[].name", *acct) == [
        "by-url/more/a.txt",
        "by-url/more/sub/b.txt",
        "unlabeled_images/a.txt",
        "unlabeled_images/sub/b.txt",
    ]
    down = tmp_path / "down"
    assert srv.ok("storage", "blob", "download-batch", "-s", "data/unlabeled_images", "-d", str(down), *acct) == [
        "unlabeled_images/a.txt",
        "unlabeled_images/sub/b.txt",
    ]
    assert (down / "unlabeled_images" / "sub" / "b.txt").read_bytes() == b"b"
    srv.ok("storage", "share", "create", "-n", "logs", *acct)
    share_url = "https://clibatchurl1.file.core.windows.net/logs"
    srv.ok("storage", "file", "upload-batch", "-d", f"{share_url}/x", "-s", str(src))
    assert srv.ok("storage", "file", "download-batch", "-s", "logs/x/sub", "-d", str(down), *acct) == ["x/sub/b.txt"]
    assert srv.fails(
        "storage", "blob", "upload-batch", "-d", "https://other.blob.core.windows.net/data", "-s", str(src), *acct
    ) == ("ERROR: argument --destination: the URL is of account 'other', not 'clibatchurl1'")
    assert "storage account is missing" in srv.fails("storage", "blob", "upload-batch", "-d", "data/x", "-s", str(src))
    ours = f"{srv.endpoint}/storage/clibatchurl1/shares/logs"  # this server's own URL of the share
    assert srv.ok("storage", "file", "download-batch", "-s", ours, "-d", str(tmp_path / "ours")) == [
        "x/a.txt",
        "x/sub/b.txt",
    ]
    assert srv.fails("storage", "blob", "download-batch", "-s", ours, "-d", str(tmp_path / "no")) == (
        "ERROR: argument --source: the URL names a file share, not a container"
    )
    assert srv.fails("storage", "blob", "upload", "-c", "data/x", "-f", str(src / "a.txt"), *acct) == (
        "ERROR: the container name 'data/x' cannot contain '/' (a folder goes in the blob's or file's path)"
    )


def test_a_batch_download_skips_a_name_it_cannot_fetch_and_says_so(shared_server: Server, tmp_path: Path) -> None:
    """A job on a mount may name a file with a '\\', which no link can carry: the others still come down."""
    srv = shared_server
    account(srv, "cli-odd-names", "clioddnames1")
    acct = ("--account-name", "clioddnames1")
    srv.ok("storage", "share", "create", "-n", "res", *acct)
    share = srv.home / "storage" / "clioddnames1" / "shares" / "res"  # as a job writes it through its mount
    (share / "ok.txt").write_text("ok")
    (share / "a\\b.txt").write_text("odd")
    got = srv.cli("storage", "file", "download-batch", "-s", "res", "-d", str(tmp_path / "down"), *acct)
    assert got.code == 0 and json.loads(got.stdout) == ["ok.txt"], got.stderr
    assert got.stderr == "skipped 'a\\b.txt': a name that cannot be downloaded (a '\\' in it)\n"
    assert (tmp_path / "down" / "ok.txt").read_text() == "ok"


def test_bad_inputs_are_one_line_errors(shared_server: Server, tmp_path: Path) -> None:
    srv = shared_server
    account(srv, "cli-bad", "clibad1")
    acct = ("--account-name", "clibad1")
    source = tmp_path / "f.txt"
    source.write_bytes(b"f")
    srv.ok("storage", "share", "create", "-n", "scripts", *acct)

    assert "--account-name" in srv.fails("storage", "share", "create", "-n", "scripts")
    assert "--account-name" in srv.fails(
        "storage", "file", "list", "-s", "scripts", "--connection-string", "DefaultEndpointsProtocol=https;AccountKey=x"
    )
    assert "ShareNotFound" in srv.fails("storage", "file", "upload", "-s", "nope", "--source", str(source), *acct)
    assert "ShareNotFound" in srv.fails(
        "storage", "file", "upload", "-s", "nope", "--source", str(source), "-p", "dir/x.txt", *acct
    )
    assert "ContainerNotFound" in srv.fails("storage", "blob", "upload", "-c", "nope", "-f", str(source), *acct)
    assert "ContainerNotFound" in srv.fails("storage", "blob", "upload-batch", "-s", str(tmp_path), "-d", "nope", *acct)
    assert "StorageAccountNotFound" in srv.fails("storage", "share", "list", "--account-name", "nosuchacct")
    assert "StorageAccountNotFound" in srv.fails(
        "storage", "file", "upload", "-s", "scripts", "--source", str(source), "--account-name", "nosuchacct"
    )
    assert "'..' is not allowed" in srv.fails(
        "storage", "file", "upload", "-s", "scripts", "--source", str(source), "--path", "../x", *acct
    )
    assert "'..' is not allowed" in srv.fails(
        "storage", "file", "download", "-s", "scripts", "-p", "a/../../x", "--dest", str(tmp_path / "x"), *acct
    )
    assert "absolute" in srv.fails("storage", "file", "list", "-s", "scripts", "-p", "/etc", *acct)
    assert "InvalidResourceName" in srv.fails("storage", "share", "create", "-n", "Bad_Share", *acct)
    assert "not a file" in srv.fails(
        "storage", "file", "upload", "-s", "scripts", "--source", str(tmp_path / "missing.txt"), *acct
    )
    assert "not a directory" in srv.fails("storage", "blob", "upload-batch", "-s", str(source), "-d", "scripts", *acct)
    assert "ResourceNotFound" in srv.fails(
        "storage", "file", "download", "-s", "scripts", "-p", "none.txt", "--dest", str(tmp_path / "none.txt"), *acct
    )
    assert "ResourceNotFound" in srv.fails("storage", "file", "list", "-s", "scripts", "-p", "nodir", *acct)
    assert not (tmp_path / "none.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # no partial downloads left behind
    assert srv.ok("storage", "file", "list", "-s", "scripts", *acct) == []  # nothing was uploaded
