"""Storage accounts (ARM-style paths of Microsoft.Storage) and batchai's own storage data plane:
``/storage/{account}/shares/{share}/files/{path}`` and ``/storage/{account}/containers/{container}/blobs/{name}``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from batchai.api import render
from batchai.api.deps import any_api_version, page, respond, run
from batchai.api.routes import GROUP, SUB
from batchai.errors import InvalidInput
from batchai.models.resources import StorageAccountInput
from batchai.services import storage, storage_accounts
from batchai.services.context import Ctx
from batchai.storage.base import (
    Entry,
    Volume,
    VolumeKind,
    check_account_name,
    check_volume_name,
    iter_file,
    size_of,
)

accounts = APIRouter(dependencies=[Depends(any_api_version)], tags=["storage accounts"])
ACCOUNT = GROUP + "/providers/Microsoft.Storage/storageAccounts/{account}"


def _endpoint(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@accounts.put(ACCOUNT)
def put_account(sub: str, group: str, account: str, body: StorageAccountInput, request: Request) -> Any:
    def work(ctx: Ctx) -> tuple[dict[str, Any], bool]:
        row, created = storage_accounts.put(ctx, sub, group, account, body)
        return render.storage_account(row, _endpoint(request)), created

    rendered, created = run(request, work)
    return respond(rendered, 201 if created else 200)


@accounts.get(ACCOUNT)
def get_account(sub: str, group: str, account: str, request: Request) -> Any:
    return respond(
        run(
            request,
            lambda ctx: render.storage_account(storage_accounts.get(ctx, sub, group, account), _endpoint(request)),
        )
    )


@accounts.get(GROUP + "/providers/Microsoft.Storage/storageAccounts")
def list_accounts_in_group(sub: str, group: str, request: Request) -> Any:
    return page(
        request,
        run(
            request,
            lambda ctx: [
                render.storage_account(r, _endpoint(request)) for r in storage_accounts.list_in_group(ctx, sub, group)
            ],
        ),
    )


@accounts.get(SUB + "/providers/Microsoft.Storage/storageAccounts")
def list_accounts(sub: str, request: Request) -> Any:
    return page(
        request,
        run(
            request,
            lambda ctx: [
                render.storage_account(r, _endpoint(request)) for r in storage_accounts.list_in_subscription(ctx, sub)
            ],
        ),
    )


@accounts.post(ACCOUNT + "/listKeys")
def list_account_keys(sub: str, group: str, account: str, request: Request) -> Any:
    secret = request.app.state.signing_key
    return respond({"keys": run(request, lambda ctx: storage_accounts.keys(ctx, sub, group, account, secret))})


@accounts.delete(ACCOUNT)
def delete_account(sub: str, group: str, account: str, request: Request) -> Response:
    deleted = run(request, lambda ctx: storage_accounts.delete(ctx, sub, group, account))
    return Response(status_code=200 if deleted else 204)


class Collection(StrEnum):
    shares = "shares"
    containers = "containers"


class Items(StrEnum):
    files = "files"
    blobs = "blobs"


KINDS = {
    Collection.shares: (VolumeKind.SHARE, Items.files),
    Collection.containers: (VolumeKind.CONTAINER, Items.blobs),
}


def valid_names(request: Request) -> None:
    """Every data-plane route first checks its account and volume names by the rules they were created by, so a
    name such as ``..`` (also sent as ``%2e%2e``) is a 400 before anything is looked up or touched."""
    params = request.path_params
    check_account_name(params["account"])
    if "volume" in params:
        kind = VolumeKind.SHARE if params.get("collection") == Collection.shares else VolumeKind.CONTAINER
        check_volume_name(kind, params["volume"])


data = APIRouter(tags=["storage"], dependencies=[Depends(valid_names)])


def _kind(collection: Collection, items: Items | None = None) -> VolumeKind:
    kind, expected = KINDS[collection]
    if items is not None and items is not expected:
        raise InvalidInput(f"{collection.value} hold {expected.value}, not {items.value}.", target="path")
    return kind


def _entry(entry: Entry) -> dict[str, Any]:
    return {
        "name": entry.path,
        "type": "directory" if entry.is_directory else "file",
        "contentLength": entry.size,
        "lastModified": entry.modified.isoformat().replace("+00:00", "Z"),
    }


@data.get("/storage/{account}/{collection}")
def list_volumes(account: str, collection: Collection, request: Request) -> Any:
    names = run(request, lambda ctx: storage.list_volumes(ctx, account, _kind(collection)))
    return page(request, [{"name": n} for n in names])


@data.put("/storage/{account}/{collection}/{volume}")
def create_volume(account: str, collection: Collection, volume: str, request: Request, response: Response) -> Any:
    created = run(request, lambda ctx: storage.create_volume(ctx, account, _kind(collection), volume))
    response.status_code = 201 if created else 200
    return {"name": volume, "created": created}


@data.get("/storage/{account}/{collection}/{volume}")
def show_volume(account: str, collection: Collection, volume: str, request: Request) -> Any:
    run(request, lambda ctx: storage.volume(ctx, account, _kind(collection), volume))
    return {"name": volume}


@data.delete("/storage/{account}/{collection}/{volume}")
def delete_volume(account: str, collection: Collection, volume: str, request: Request) -> Any:
    deleted = run(request, lambda ctx: storage.delete_volume(ctx, account, _kind(collection), volume))
    return {"deleted": deleted}


def _volume(request: Request, account: str, collection: Collection, volume: str, items: Items | None = None) -> Volume:
    return run(request, lambda ctx: storage.volume(ctx, account, _kind(collection, items), volume))


@data.get("/storage/{account}/{collection}/{volume}/{items}")
def list_entries(
    account: str,
    collection: Collection,
    volume: str,
    items: Items,
    request: Request,
    path: str = "",
    recursive: bool = False,
) -> Any:
    """Entries under ``path`` (a directory; for blobs, a prefix folder)."""
    vol = _volume(request, account, collection, volume, items)
    entries = run(request, lambda ctx: storage.list_entries(ctx, vol, path, recursive))
    return page(request, [_entry(e) for e in entries])


@data.put("/storage/{account}/{collection}/{volume}/directories/{path:path}")
def make_directory(
    account: str, collection: Collection, volume: str, path: str, request: Request, response: Response
) -> Any:
    vol = _volume(request, account, collection, volume)
    created = run(request, lambda ctx: ctx.storage.make_directory(vol, path))
    response.status_code = 201 if created else 200
    return {"name": path, "created": created}


@data.delete("/storage/{account}/{collection}/{volume}/directories/{path:path}")
def remove_directory(
    account: str, collection: Collection, volume: str, path: str, request: Request, recursive: bool = False
) -> Any:
    vol = _volume(request, account, collection, volume)
    if not run(request, lambda ctx: ctx.storage.stat(vol, path)).is_directory:
        raise InvalidInput(f"'{path}' is a file, not a directory.", target="path")
    return {"deleted": run(request, lambda ctx: ctx.storage.remove(vol, path, recursive=recursive))}


@data.put("/storage/{account}/{collection}/{volume}/{items}/{path:path}")
async def upload(account: str, collection: Collection, volume: str, items: Items, path: str, request: Request) -> Any:
    """Stream the body into the file; it appears, whole, only when the upload completes."""
    vol = await run_in_threadpool(_volume, request, account, collection, volume, items)
    entry = await request.app.state.storage.write(vol, path, request.stream())
    return Response(content=_json(_entry(entry)), status_code=201, media_type="application/json")


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


@data.get("/storage/{account}/{collection}/{volume}/{items}/{path:path}", response_model=None)
def download(
    account: str, collection: Collection, volume: str, items: Items, path: str, request: Request, comp: str = ""
) -> StreamingResponse | Any:
    """The file's content; with ``?comp=properties``, what it is (a file or a directory, size, time)."""
    if comp not in ("", "properties"):
        raise InvalidInput(f"comp='{comp}' is not known here; 'properties' is.", target="comp")
    vol = _volume(request, account, collection, volume, items)
    if comp:
        return respond(_entry(run(request, lambda ctx: ctx.storage.stat(vol, path))))
    handle = run(request, lambda ctx: storage.open_file(ctx, vol, path))
    return StreamingResponse(
        iter_file(handle), media_type="application/octet-stream", headers={"Content-Length": str(size_of(handle))}
    )


@data.delete("/storage/{account}/{collection}/{volume}/{items}/{path:path}")
def delete_entry(account: str, collection: Collection, volume: str, items: Items, path: str, request: Request) -> Any:
    vol = _volume(request, account, collection, volume, items)
    if run(request, lambda ctx: ctx.storage.stat(vol, path)).is_directory:
        raise InvalidInput(f"'{path}' is a directory; delete it as a directory.", target="path")
    return {"deleted": run(request, lambda ctx: ctx.storage.remove(vol, path))}
