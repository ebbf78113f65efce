"""Experiments: named collections of jobs. Deleting one deletes its jobs (running ones are stopped)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select

from batchai.ids import check_name, experiment_id
from batchai.services import workspaces
from batchai.services.context import Ctx, find, find_to_delete, mark_deleting, refuse_if_deleting, require
from batchai.store.prepared import Prepared
from batchai.store.tables import Experiment, ResourceGroup, Workspace


@dataclass(frozen=True)
class ExperimentRef:
    """An experiment's row id and ARM id: what creating a job in it needs."""

    id: int
    arm_id: str


_REF = Prepared(
    workspaces.under_workspace(
        select(
            Experiment.id,
            Experiment.name,
            Experiment.provisioning_state,
            Workspace.name.label("workspace"),
            Workspace.provisioning_state.label("workspace_state"),
            ResourceGroup.name.label("group"),
            ResourceGroup.provisioning_state.label("group_state"),
            ResourceGroup.subscription,
        ),
        Experiment,
    )
)


class _Named(NamedTuple):
    """A parent's name and provisioning state, as ``refuse_if_deleting`` reads them."""

    name: str
    provisioning_state: str


def get(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> Experiment:
    row = workspaces.child(ctx, Experiment, sub, group, workspace, name)
    if row is not None:
        return row
    parent = workspaces.get(ctx, sub, group, workspace)  # says which part of the path is missing
    return require(ctx.session, Experiment, name, "experiment", workspace_id=parent.id)


def arm_id(row: Experiment) -> str:
    """An experiment's ARM id, from the row and its loaded parents."""
    ws = row.workspace
    return experiment_id(ws.group.subscription, ws.group.name, ws.name, row.name)


def ref(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> ExperimentRef:
    """The experiment by its path, in one query that loads no objects; not found as ``get`` says it."""
    row = _REF.run(ctx.session.connection(), workspaces.path_names(sub, group, workspace, name)).first()
    if row is None:
        found = get(ctx, sub, group, workspace, name)  # says which part of the path is missing
        workspaces.refuse_if_being_deleted(found.workspace)
        refuse_if_deleting(found, "experiment")
        return ExperimentRef(found.id, arm_id(found))
    # A job made under anything being deleted would outlive the delete's first step (which asked jobs to stop).
    refuse_if_deleting(_Named(row.group, row.group_state), "resource group")
    refuse_if_deleting(_Named(row.workspace, row.workspace_state), "workspace")
    refuse_if_deleting(row, "experiment")
    return ExperimentRef(row.id, experiment_id(row.subscription, row.group, row.workspace, row.name))


def put(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> tuple[Experiment, bool]:
    """Create the experiment; an existing one is returned as it is (PUT is idempotent)."""
    check_name("experiment", name)
    parent = workspaces.get(ctx, sub, group, workspace)
    workspaces.refuse_if_being_deleted(parent)
    row = find(ctx.session, Experiment, name, workspace_id=parent.id)
    if row is not None:
        refuse_if_deleting(row, "experiment")
        return row, False
    now = ctx.clock()
    row = Experiment(
        workspace_id=parent.id,
        name=name,
        key=name.lower(),
        created_at=now,
        provisioning_state="succeeded",
        provisioning_state_time=now,
    )
    ctx.session.add(row)
    ctx.session.flush()
    return row, True


def list_in_workspace(ctx: Ctx, sub: str, group: str, workspace: str) -> list[Experiment]:
    parent = workspaces.get(ctx, sub, group, workspace)
    query = select(Experiment).filter_by(workspace_id=parent.id).order_by(Experiment.key)
    return list(ctx.session.scalars(query))


def delete_row(ctx: Ctx, row: Experiment) -> None:
    from batchai.services import jobs

    for job in list(row.jobs):
        jobs.delete_row(ctx, job)
    ctx.session.delete(row)


def prepare_delete(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> list[int]:
    from batchai.services import jobs

    parent = workspaces.get(ctx, sub, group, workspace)
    row = find(ctx.session, Experiment, name, workspace_id=parent.id)
    if row is None:
        return []
    mark_deleting(ctx, row)
    return jobs.stop_all(ctx, list(row.jobs), "deleted")


def delete(ctx: Ctx, sub: str, group: str, workspace: str, name: str) -> bool:
    parent = workspaces.get(ctx, sub, group, workspace)
    row = find_to_delete(ctx.session, Experiment, name, workspace_id=parent.id)
    if row is None:
        return False
    delete_row(ctx, row)
    return True
