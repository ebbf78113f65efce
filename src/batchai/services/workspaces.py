"""Workspaces: the top-level Batch AI collection. Deleting one deletes its clusters, file servers,
experiments and their jobs (as Batch AI did)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import contains_eager

from batchai.errors import InvalidInput
from batchai.ids import check_name
from batchai.models.resources import WorkspaceInput, WorkspacePatch
from batchai.services import groups
from batchai.services.context import Ctx, find, find_to_delete, mark_deleting, refuse_if_deleting, require
from batchai.store.tables import Cluster, Experiment, FileServer, ResourceGroup, Workspace

Child = TypeVar("Child", Experiment, Cluster, FileServer)
AnySelect = TypeVar("AnySelect", bound="Select[*tuple[Any, ...]]")
_CHILD_QUERIES: dict[type[Any], Select[Any]] = {}


def get(ctx: Ctx, sub: str, group: str, name: str) -> Workspace:
    parent = groups.get(ctx, sub, group)
    return require(ctx.session, Workspace, name, "workspace", group_id=parent.id)


def under_workspace(statement: AnySelect, model: type[Child]) -> AnySelect:
    """``statement`` narrowed to the ``model`` row named by a path: binds ``sub``, ``group``, ``workspace``
    and ``name`` (lower case, see ``path_names``), in one query joined up to the group."""
    return (
        statement.join(model.workspace)
        .join(Workspace.group)
        .where(
            ResourceGroup.subscription == bindparam("sub"),
            ResourceGroup.key == bindparam("group"),
            Workspace.key == bindparam("workspace"),
            model.key == bindparam("name"),
        )
    )


def path_names(sub: str, group: str, workspace: str, name: str) -> dict[str, str]:
    """The parameters of ``under_workspace`` (names are matched case-insensitively, as ARM does)."""
    return {"sub": sub, "group": group.lower(), "workspace": workspace.lower(), "name": name.lower()}


def child(ctx: Ctx, model: type[Child], sub: str, group: str, workspace: str, name: str) -> Child | None:
    """A workspace's experiment, cluster or file server by its path, in one query that also loads its
    workspace and group; None if any part of the path is missing (``get`` then says which)."""
    statement = _CHILD_QUERIES.get(model)
    if statement is None:  # built once per kind
        loaded = select(model).options(contains_eager(model.workspace).contains_eager(Workspace.group))
        statement = _CHILD_QUERIES[model] = under_workspace(loaded, model)
    row: Child | None = ctx.session.scalars(statement, path_names(sub, group, workspace, name)).first()
    return row


def refuse_if_being_deleted(row: Workspace) -> None:
    """409 for a change in a workspace that is being deleted, or whose group is (what is made in it now would
    outlive the delete's first step, which asked its jobs to stop)."""
    refuse_if_deleting(row.group, "resource group")
    refuse_if_deleting(row, "workspace")


def put(ctx: Ctx, sub: str, group: str, name: str, body: WorkspaceInput) -> tuple[Workspace, bool]:
    check_name("workspace", name)
    parent = groups.get(ctx, sub, group)
    refuse_if_deleting(parent, "resource group")
    row = find(ctx.session, Workspace, name, group_id=parent.id)
    if row is not None:
        refuse_if_deleting(row, "workspace")
        if body.location.lower() != row.location.lower():
            raise InvalidInput(
                f"The workspace '{name}' exists in location '{row.location}'; its location cannot change.",
                code="LocationCannotBeChanged",
                target="location",
            )
        row.tags = dict(body.tags or {})
        return row, False
    now = ctx.clock()
    row = Workspace(
        group_id=parent.id,
        name=name,
        key=name.lower(),
        location=body.location,
        tags=dict(body.tags or {}),
        created_at=now,
        provisioning_state="succeeded",
        provisioning_state_time=now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    return row, True


def patch(ctx: Ctx, sub: str, group: str, name: str, body: WorkspacePatch) -> Workspace:
    row = get(ctx, sub, group, name)
    refuse_if_being_deleted(row)
    if body.tags is not None:
        row.tags = dict(body.tags)
    return row


def list_in_group(ctx: Ctx, sub: str, group: str) -> list[Workspace]:
    parent = groups.get(ctx, sub, group)
    return list(ctx.session.scalars(select(Workspace).filter_by(group_id=parent.id).order_by(Workspace.key)))


def list_in_subscription(ctx: Ctx, sub: str) -> list[Workspace]:
    query = (
        select(Workspace)
        .join(ResourceGroup)
        .filter(ResourceGroup.subscription == sub)
        .order_by(ResourceGroup.key, Workspace.key)
    )
    return list(ctx.session.scalars(query))


def stop_for_delete(ctx: Ctx, row: Workspace) -> list[int]:
    from batchai.services import clusters, jobs

    mark_deleting(ctx, row)
    ids = [i for e in row.experiments for i in jobs.stop_all(ctx, list(e.jobs), "deleted")]
    return ids + [i for c in row.clusters for i in clusters.stop_for_delete(ctx, c)]


def prepare_delete(ctx: Ctx, sub: str, group: str, name: str) -> list[int]:
    parent = groups.get(ctx, sub, group)
    row = find(ctx.session, Workspace, name, group_id=parent.id)
    return stop_for_delete(ctx, row) if row else []


def delete_row(ctx: Ctx, row: Workspace) -> None:
    from batchai.services import clusters, experiments

    for experiment in list(row.experiments):
        experiments.delete_row(ctx, experiment)
    for cluster in list(row.clusters):
        clusters.delete_row(ctx, cluster)
    ctx.session.delete(row)


def delete(ctx: Ctx, sub: str, group: str, name: str) -> bool:
    parent = groups.get(ctx, sub, group)
    row = find_to_delete(ctx.session, Workspace, name, group_id=parent.id)
    if row is None:
        return False
    delete_row(ctx, row)
    return True
