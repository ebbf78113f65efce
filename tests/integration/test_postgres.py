"""The real server on a real PostgreSQL (``batchai server start --database-url postgresql+psycopg://...``).

The same resources, storage and a job as on SQLite, over HTTP and through the CLI; they survive a restart, bad input
creates nothing, deleting a group cascades, and the schema in PostgreSQL is the one the Alembic migrations make.
The PostgreSQL server comes from ``tests/pg.py`` (a throwaway one per session, in a non-UTC time zone).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from batchai.scheduler import statements
from batchai.store.db import MIGRATIONS, Database
from batchai.store.tables import Base, UtcDateTime
from tests.conftest import API, BIN, SUB, Server, arm_error, assert_nothing_left, free_port, url, wait_for
from tests.pg import TIME_ZONE, PgServer, postgres_server, postgres_url  # noqa: F401 - fixtures used here
from tests.unit.test_prepared import populate, run_both_ways
from tests.unit.test_store_db import reads_around_a_commit

RG_API = "2021-04-01"
BATCHAI_API = API
SA_API = "2023-01-01"
GROUPS = f"/subscriptions/{SUB}/resourceGroups"


@dataclass
class PgBatchServer(Server):
    """``Server`` started with ``--database-url``."""

    database_url: str = ""

    def start(self) -> None:
        log = open(self.home / "test-server.log", "ab")  # noqa: SIM115 - closed with the process
        command = [str(BIN / "batchai"), "server", "start", "--home", str(self.home), "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--database-url", self.database_url],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "BATCHAI_GRACE_SECONDS": "3", **self.env},
        )

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, (
                "server exited: " + (self.home / "test-server.log").read_text()[-2000:]
            )
            try:
                return (
                    httpx.get(f"{self.endpoint}/openapi.json", timeout=1).status_code == 200
                    and (self.home / "credentials.json").exists()
                )
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, message="the server to answer")
        self.http = httpx.Client(base_url=self.endpoint, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)


@pytest.fixture(scope="module")
def db(postgres_url: str) -> Iterator[sa.Engine]:  # noqa: F811 - the fixture imported above
    engine = sa.create_engine(postgres_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBatchServer]:  # noqa: F811
    """One server on the session's PostgreSQL database for this module (each test uses its own group)."""
    srv = PgBatchServer(home=tmp_path_factory.mktemp("pg-home"), port=free_port(), database_url=postgres_url)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        assert_nothing_left(srv.home)


def fresh(srv: Server) -> httpx.Client:
    """A client on a new connection: the server drops a keep-alive connection after answering a 500."""
    return httpx.Client(base_url=srv.endpoint, headers={"Authorization": f"Bearer {srv.token}"}, timeout=30)


def rows(engine: sa.Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(sql), params)]


def ws_path(group: str, ws: str = "ws") -> str:
    return f"{GROUPS}/{group}/providers/Microsoft.BatchAI/workspaces/{ws}"


def account_path(group: str, account: str) -> str:
    return f"{GROUPS}/{group}/providers/Microsoft.Storage/storageAccounts/{account}"


def cluster_body(target: int = 1) -> dict[str, Any]:
    return {"properties": {"vmSize": "STANDARD_NC6", "scaleSettings": {"manual": {"targetNodeCount": target}}}}


def job_body(cluster_id: str, logs: Path, command: str = "echo hi") -> dict[str, Any]:
    return {
        "properties": {
            "cluster": {"id": cluster_id},
            "nodeCount": 1,
            "stdOutErrPathPrefix": str(logs),
            "customToolkitSettings": {"commandLine": command},
        }
    }


def wait_idle(srv: Server, cluster: str) -> None:
    def idle() -> bool:
        return bool(srv.http.get(url(cluster)).json()["properties"]["nodeStateCounts"]["idleNodeCount"] == 1)

    wait_for(idle, message=f"the node of {cluster} to be idle")


def wait_job(srv: Server, path: str, states: tuple[str, ...] = ("succeeded", "failed")) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        response = srv.http.get(url(path))
        assert response.status_code == 200, response.text
        props = response.json()["properties"]
        return dict(props) if props["executionState"] in states else None

    return dict(wait_for(ended, timeout=60, message=f"{path} to be one of {states}"))


@dataclass
class Estate:
    """What ``build`` made in one group: ARM paths by kind, the storage account, where job output goes."""

    group: str
    account: str
    paths: dict[str, str]
    logs: Path


def build(srv: Server, group: str, account: str, logs: Path, job: bool = True) -> Estate:
    """A group with a workspace, experiment, cluster, storage account (share and file) and a succeeded job."""
    assert srv.ok("group", "create", "-n", group, "-l", "eastus")["name"] == group
    srv.ok("workspace", "create", "-g", group, "-n", "ws", "-l", "eastus")
    srv.ok("experiment", "create", "-g", group, "-w", "ws", "-n", "exp")
    ws = ws_path(group)
    cluster = srv.http.put(url(f"{ws}/clusters/c1"), json=cluster_body())
    assert cluster.status_code == 200, cluster.text
    wait_idle(srv, f"{ws}/clusters/c1")
    created = srv.ok("storage", "account", "create", "-n", account, "--sku", "Standard_LRS", "-g", group)
    assert created["name"] == account and created["resourceGroup"] == group
    assert srv.ok("storage", "share", "create", "-n", "scripts", "--account-name", account) == {"created": True}
    logs.mkdir(parents=True, exist_ok=True)
    source = logs / "hello.txt"
    source.write_bytes(b"hello postgres\n")
    share = ("-s", "scripts", "--account-name", account)
    uploaded = srv.ok("storage", "file", "upload", *share, "--source", str(source), "-p", "dir/hello.txt")
    assert (uploaded["name"], uploaded["contentLength"]) == ("dir/hello.txt", 15)
    paths = {
        "group": f"{GROUPS}/{group}",
        "workspace": ws,
        "experiment": f"{ws}/experiments/exp",
        "cluster": f"{ws}/clusters/c1",
        "account": account_path(group, account),
    }
    if job:
        paths["job"] = f"{ws}/experiments/exp/jobs/j1"
        submitted = srv.http.put(url(paths["job"]), json=job_body(cluster.json()["id"], logs))
        assert submitted.status_code == 200, submitted.text
        ended = wait_job(srv, paths["job"])
        assert (ended["executionState"], ended["executionInfo"]["exitCode"]) == ("succeeded", 0), ended
    return Estate(group, account, paths, logs)


def api_version(kind: str) -> str:
    return {"group": RG_API, "account": SA_API}.get(kind, BATCHAI_API)


def snapshot(srv: Server, estate: Estate) -> dict[str, Any]:
    """The resources as the API shows them, without what the engine may change at any time."""
    found: dict[str, Any] = {}
    for kind, path in estate.paths.items():
        response = srv.http.get(url(path, api_version(kind)))
        assert response.status_code == 200, f"{kind}: {response.text}"
        body = response.json()
        if kind == "cluster":
            for volatile in ("nodeStateCounts", "currentNodeCount", "allocationState", "allocationStateTransitionTime"):
                body["properties"].pop(volatile, None)
        found[kind] = body
    return found


def check_estate(srv: Server, estate: Estate) -> None:
    """Everything ``build`` made is there, over HTTP and through the CLI, with the job still succeeded."""
    group, account = estate.group, estate.account
    g = ("-g", group, "-w", "ws")
    assert srv.ok("group", "show", "-n", group.upper())["name"] == group
    assert srv.ok("workspace", "list", "-g", group, "--query", "[].name") == ["ws"]
    assert srv.ok("experiment", "show", *g, "-n", "EXP")["name"] == "exp"
    assert srv.ok("cluster", "list", *g, "--query", "[].name") == ["c1"]
    assert srv.ok("job", "show", *g, "-e", "exp", "-n", "j1", "--query", "executionState") == "succeeded"
    assert srv.ok("job", "list", *g, "-e", "exp", "--query", "[].name") == ["j1"]
    outputs = srv.ok("job", "file", "list", *g, "-e", "exp", "-j", "j1", "--query", "[].name")
    assert "stdout.txt" in outputs, outputs
    segment = srv.http.get(url(estate.paths["job"])).json()["properties"]["jobOutputDirectoryPathSegment"]
    assert (estate.logs / segment / "stdouterr" / "stdout.txt").read_text() == "hi\n"
    assert srv.ok("storage", "account", "list", "-g", group, "--query", "[].name") == [account]
    files = srv.ok("storage", "file", "list", "-s", "scripts", "-p", "dir", "--account-name", account)
    assert [(f["name"], f["type"]) for f in files] == [("hello.txt", "file")]
    download = srv.http.get(f"/storage/{account}/shares/scripts/files/dir/hello.txt")
    assert download.status_code == 200 and download.content == b"hello postgres\n"


def counts(db: sa.Engine) -> dict[str, int]:
    return {t: rows(db, f"SELECT count(*) FROM {t}")[0][0] for t in Base.metadata.tables}


def pg_type(kind: Any) -> str:
    """The ``information_schema`` data type PostgreSQL should have for a column of the models."""
    for python_type, name in (
        (sa.JSON, "json"),
        (UtcDateTime, "timestamp with time zone"),
        (sa.String, "character varying"),
        (sa.Double, "double precision"),
        (sa.Integer, "integer"),
    ):
        if isinstance(kind, python_type):
            return name
    raise AssertionError(f"no PostgreSQL type known for {kind!r}")


def test_the_migrations_made_the_schema_in_postgres(pg: PgBatchServer, db: sa.Engine) -> None:
    assert not (pg.home / "batchai.db").exists(), "the server must not fall back to SQLite"
    public = "table_schema = 'public'"
    tables = rows(db, f"SELECT table_name FROM information_schema.tables WHERE {public} AND table_type = 'BASE TABLE'")
    assert {t for (t,) in tables} == {*Base.metadata.tables, "alembic_version"}
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert rows(db, "SELECT version_num FROM alembic_version") == [(head,)]
    # Every column is there with the type its model asks for (JSON as json, times with their zone).
    columns = {
        f"{table}.{column}": (data_type, length)
        for table, column, data_type, length in rows(
            db,
            "SELECT table_name, column_name, data_type, character_maximum_length"
            f" FROM information_schema.columns WHERE {public} AND table_name <> 'alembic_version'",
        )
    }
    expected = {
        f"{table.name}.{column.name}": (pg_type(column.type), getattr(column.type, "length", None))
        for table in Base.metadata.tables.values()
        for column in table.columns
    }
    assert columns == expected
    # ... and nothing differs from the models as Alembic sees it.
    with db.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    rules = dict(
        rows(
            db,
            "SELECT tc.table_name || '.' || kcu.column_name, rc.delete_rule"
            " FROM information_schema.referential_constraints rc"
            " JOIN information_schema.table_constraints tc ON tc.constraint_name = rc.constraint_name"
            " JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name",
        )
    )
    assert rules == {
        "workspaces.group_id": "CASCADE",
        "storage_accounts.group_id": "CASCADE",
        "clusters.workspace_id": "CASCADE",
        "experiments.workspace_id": "CASCADE",
        "file_servers.workspace_id": "CASCADE",
        "jobs.experiment_id": "CASCADE",
        "jobs.cluster_id": "SET NULL",
        "nodes.cluster_id": "CASCADE",
        "nodes.job_id": "SET NULL",
        "nodes.next_job_id": "SET NULL",
        "tasks.job_id": "CASCADE",
        "tasks.node_id": "SET NULL",
    }


def test_resources_storage_and_a_job_survive_a_restart(pg: PgBatchServer, db: sa.Engine, tmp_path: Path) -> None:
    estate = build(pg, "PG.Restart", "pgrestart1", tmp_path / "logs")
    check_estate(pg, estate)
    before = snapshot(pg, estate)
    assert rows(db, "SELECT name, location FROM resource_groups WHERE key = 'pg.restart'") == [("PG.Restart", "eastus")]
    in_group = (
        "SELECT j.execution_state, j.exit_code FROM jobs j JOIN experiments e ON j.experiment_id = e.id"
        " JOIN workspaces w ON e.workspace_id = w.id JOIN resource_groups g ON w.group_id = g.id WHERE g.key = :k"
    )
    assert rows(db, in_group, k="pg.restart") == [("succeeded", 0)]
    token = pg.token
    pg.restart()
    assert pg.token == token
    assert snapshot(pg, estate) == before
    check_estate(pg, estate)
    assert not (pg.home / "batchai.db").exists(), "the server must not fall back to SQLite"


def test_names_are_looked_up_case_insensitively(pg: PgBatchServer) -> None:
    http = pg.http
    created = http.put(url(f"{GROUPS}/PG-Case", RG_API), json={"location": "eastus"})
    assert created.status_code == 201, created.text
    again = http.put(url(f"{GROUPS}/pg-CASE", RG_API), json={"location": "EastUS"})
    assert again.status_code == 200 and again.json()["name"] == "PG-Case"
    assert http.get(url(f"/subscriptions/{SUB}/resourcegroups/pg-case", RG_API)).json()["name"] == "PG-Case"
    assert http.put(url(ws_path("pg-case", "MyWs")), json={"location": "eastus"}).status_code == 200
    assert http.put(url(ws_path("PG-CASE", "myws")), json={"location": "eastus"}).json()["name"] == "MyWs"
    listed = http.get(url(f"{GROUPS}/PG-Case/providers/Microsoft.BatchAI/workspaces")).json()["value"]
    assert [w["name"] for w in listed] == ["MyWs"]
    assert pg.ok("group", "exists", "-n", "PG-CASE") is True
    assert http.delete(url(f"{GROUPS}/pg-case", RG_API)).status_code == 200
    assert pg.ok("group", "exists", "-n", "PG-Case") is False


def test_bad_names_give_400_and_create_nothing(pg: PgBatchServer, db: sa.Engine, tmp_path: Path) -> None:
    http = pg.http
    assert http.put(url(f"{GROUPS}/pg-bad", RG_API), json={"location": "eastus"}).status_code == 201
    ws = ws_path("pg-bad")
    assert http.put(url(ws), json={"location": "eastus"}).status_code == 200
    assert http.put(url(f"{ws}/experiments/exp")).status_code == 200
    cluster_id = http.put(url(f"{ws}/clusters/c1"), json=cluster_body()).json()["id"]
    wait_idle(pg, f"{ws}/clusters/c1")
    before = counts(db)
    account = {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
    bad = [
        http.put(url(f"{GROUPS}/bad name!", RG_API), json={"location": "eastus"}),
        http.put(url(f"{GROUPS}/{'g' * 91}", RG_API), json={"location": "eastus"}),
        http.put(url(ws_path("pg-bad", "bad name!")), json={"location": "eastus"}),
        http.put(url(ws_path("pg-bad", "w" * 65)), json={"location": "eastus"}),
        http.put(url(f"{ws}/experiments/bad name!")),
        http.put(url(f"{ws}/clusters/bad name!"), json=cluster_body()),
        http.put(url(f"{ws}/experiments/exp/jobs/bad name!"), json=job_body(cluster_id, tmp_path)),
        http.put(url(account_path("pg-bad", "Bad_Name"), SA_API), json=account),
    ]
    for response in bad:
        assert arm_error(response, 400)["code"] == "InvalidResourceName", response.text
    error = pg.fails("workspace", "create", "-g", "pg-bad", "-n", "bad name!", "-l", "eastus")
    assert "InvalidResourceName" in error
    assert counts(db) == before
    assert http.get(url(f"{ws}/experiments/exp/jobs")).json()["value"] == []


def test_values_postgres_cannot_store_give_400_and_create_nothing(pg: PgBatchServer, db: sa.Engine) -> None:
    with fresh(pg) as http:
        assert http.put(url(f"{GROUPS}/pg-long", RG_API), json={"location": "eastus"}).status_code == 201
    before = counts(db)
    sku = {"sku": {"name": "Standard_LRS"}, "kind": "StorageV2"}
    requests: list[tuple[str, dict[str, Any]]] = [
        (url(f"{GROUPS}/pg-long-location", RG_API), {"location": "x" * 65}),
        (url(f"{GROUPS}/pg-nul", RG_API), {"location": "east\u0000us"}),
        (url(f"/subscriptions/{'s' * 65}/resourceGroups/pg-sub", RG_API), {"location": "eastus"}),
        (url(ws_path("pg-long")), {"location": "y" * 65}),
        (url(account_path("pg-long", "pglong1"), SA_API), {"location": "z" * 65, **sku}),
        (url(account_path("pg-long", "pglong2"), SA_API), {"location": "eastus", "sku": {"name": "S" * 33}}),
    ]
    statuses = {}
    for path, body in requests:
        with fresh(pg) as http:  # a 500 drops the connection
            response = http.put(path, json=body)
            statuses[path.split("?")[0]] = response.status_code
            if response.status_code < 500:
                arm_error(response, response.status_code)
    assert {p: s for p, s in statuses.items() if s not in (400, 404)} == {}
    assert counts(db) == before


def test_deleting_a_group_cascades(pg: PgBatchServer, db: sa.Engine, tmp_path: Path) -> None:
    check_cascade(pg, db, build(pg, "pg-cascade", "pgcascade1", tmp_path / "logs", job=False))


def test_deleting_a_group_with_a_job_cascades(pg: PgBatchServer, db: sa.Engine, tmp_path: Path) -> None:
    check_cascade(pg, db, build(pg, "pg-cascade-job", "pgcascade2", tmp_path / "logs"))


def check_cascade(srv: Server, db: sa.Engine, estate: Estate) -> None:
    """Deleting the group through the CLI removes every row it owned, and the storage account's data."""
    key = estate.group.lower()
    ((group_id,),) = rows(db, "SELECT id FROM resource_groups WHERE key = :k", k=key)
    in_ws = "workspace_id IN (SELECT id FROM workspaces WHERE group_id = :g)"
    in_exp = f"experiment_id IN (SELECT id FROM experiments WHERE {in_ws})"
    owned = {
        "resource_groups": "id = :g",
        "workspaces": "group_id = :g",
        "storage_accounts": "group_id = :g",
        "experiments": in_ws,
        "clusters": in_ws,
        "nodes": f"cluster_id IN (SELECT id FROM clusters WHERE {in_ws})",
        "jobs": in_exp,
        "tasks": f"job_id IN (SELECT id FROM jobs WHERE {in_exp})",
    }

    def left() -> dict[str, int]:
        return {t: rows(db, f"SELECT count(*) FROM {t} WHERE {where}", g=group_id)[0][0] for t, where in owned.items()}

    before = left()
    expected = {"nodes": 1, "jobs": 1, "tasks": 1} if "job" in estate.paths else {"nodes": 1, "jobs": 0, "tasks": 0}
    assert before == {**dict.fromkeys(owned, 1), **expected}
    # The group goes with every row under it: ids of the deleted rows are not reused.
    row_ids = {t: {i for (i,) in rows(db, f"SELECT id FROM {t} WHERE {w}", g=group_id)} for t, w in owned.items()}
    assert srv.ok("group", "delete", "-n", estate.group.upper(), "-y") is None
    for table, ids in row_ids.items():
        assert rows(db, f"SELECT id FROM {table} WHERE id = ANY(:ids)", ids=list(ids)) == [], table
    for kind, path in estate.paths.items():
        arm_error(srv.http.get(url(path, api_version(kind))), 404)
    assert arm_error(srv.http.get(f"/storage/{estate.account}/shares"), 404)["code"] == "StorageAccountNotFound"
    assert srv.ok("group", "exists", "-n", estate.group) is False


def test_times_are_utc_whatever_the_database_time_zone(pg: PgBatchServer, db: sa.Engine, tmp_path: Path) -> None:
    # tests/pg.py runs PostgreSQL in a non-UTC zone: times read back must still be UTC ("Z"), as on SQLite.
    assert rows(db, "SHOW TimeZone") == [(TIME_ZONE,)]
    estate = build(pg, "pg-times", "pgtimes1", tmp_path / "logs")
    pg.restart()  # nothing cached: every row comes from the database
    stamps = {}
    for kind, body in snapshot(pg, estate).items():
        props = body.get("properties", {})
        for key, value in {**props, **props.get("executionInfo", {})}.items():
            if key.endswith("Time"):
                stamps[f"{kind}.{key}"] = value
    assert {"workspace.creationTime", "account.creationTime", "job.creationTime", "job.endTime"} <= set(stamps)
    assert {k: v for k, v in stamps.items() if not v.endswith("Z")} == {}


@pytest.mark.parametrize("snapshot,seen", [(True, (1, 1)), (False, (1, 2))])
def test_a_snapshot_session_reads_one_moment_on_postgres(
    postgres_url: str,  # noqa: F811 - the fixture imported above
    snapshot: bool,
    seen: tuple[int, int],
) -> None:
    database = Database(postgres_url)
    try:
        assert reads_around_a_commit(database, snapshot) == seen
    finally:
        database.dispose()


def test_the_engine_s_prepared_statements_do_what_sqlalchemy_does_on_postgres(
    postgres_server: PgServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    """``store.prepared`` on psycopg, in a database of its own: the same rows, types and changes as SQLAlchemy's
    execution of each of the engine's statements (``tests/unit/test_prepared.py`` on SQLite)."""
    postgres_server.create_database("prepared")
    database = Database(postgres_server.url("prepared"))
    try:
        database.upgrade()
        run_both_ways(database.engine, populate(database, tmp_path / "logs", tmp_path / "storage"))
    finally:
        database.dispose()


def test_a_prepared_statement_on_a_lost_connection_lets_it_go(
    postgres_server: PgServer,  # noqa: F811 - the fixture imported above
) -> None:
    """The database server ends a connection (as a restart would): the engine's statement fails with SQLAlchemy's
    error saying the connection was invalidated, and the pool hands out a working one after."""
    postgres_server.create_database("lost")
    database = Database(postgres_server.url("lost"))
    try:
        database.upgrade()
        with database.engine.connect() as connection:
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with database.engine.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
            with pytest.raises(sa.exc.DBAPIError) as caught:
                statements.ACTIVE_TASKS.run(connection)
            assert caught.value.connection_invalidated
        with database.engine.connect() as connection:
            assert statements.ACTIVE_TASKS.run(connection).all() == []
    finally:
        database.dispose()


def test_a_second_server_on_the_database_is_refused(pg: PgBatchServer, tmp_path: Path) -> None:
    """Two homes given one database would start the same jobs twice: the second server does not start."""
    home, port = str(tmp_path / "second"), str(free_port())
    second = subprocess.run(
        [str(BIN / "batchai"), "server", "start", "--home", home, "--port", port, "--database-url", pg.database_url],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    assert second.stderr.strip().splitlines()[-1].startswith("ERROR: another batchai server runs on the database")
    assert pg.http.get(url(GROUPS, RG_API)).status_code == 200  # the first one serves on


def test_jobs_staged_behind_each_other_run_in_turn_on_postgres(
    pg: PgBatchServer, db: sa.Engine, tmp_path: Path
) -> None:
    """The staging statements (a node's next job, handed over as the job ahead ends) on PostgreSQL."""
    estate = build(pg, "pg-staged", "pgstaged1", tmp_path / "logs", job=False)
    cluster_id = pg.http.get(url(estate.paths["cluster"])).json()["id"]
    gate, marks = tmp_path / "gate", tmp_path / "marks"
    names = ["first", "second", "third"]
    for name in names:
        command = f"echo {name} >> {marks}; while [ ! -e {gate} ]; do sleep 0.05; done"
        path = f"{estate.paths['experiment']}/jobs/{name}"
        assert pg.http.put(url(path), json=job_body(cluster_id, estate.logs, command)).status_code == 200
    wait_for(
        lambda: rows(db, "SELECT execution_state FROM jobs WHERE name = 'second'") == [("staged",)],
        message="the second job to be staged behind the first",
    )
    gate.touch()
    for name in names:
        ended = wait_job(pg, f"{estate.paths['experiment']}/jobs/{name}")
        assert ended["executionState"] == "succeeded", ended
    assert marks.read_text().split() == names
    ours = "SELECT id FROM jobs WHERE name IN ('first', 'second', 'third')"
    assert rows(db, f"SELECT count(*) FROM nodes WHERE job_id IN ({ours}) OR next_job_id IN ({ours})") == [(0,)]
