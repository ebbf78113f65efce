"""Deletes that outlive their request. Deleting what may hold running jobs takes two transactions: the first
marks the resource ``deleting`` and asks its jobs to stop, the second (once they have ended) removes the rows.
A server stopped between the two leaves the mark behind; the engine then finishes each such delete as the
request would have (``abandoned``, then ``finish`` until it answers True)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from batchai.services import clusters, experiments, groups, jobs, workspaces
from batchai.services.context import DELETING, Ctx, claim
from batchai.store.tables import Cluster, Experiment, Job, ResourceGroup, Workspace

log = logging.getLogger("batchai.engine")
# The kinds of resource a delete marks, outermost first (a group's delete takes its workspaces with it).
KINDS: dict[str, type[Any]] = {
    "resource group": ResourceGroup,
    "workspace": Workspace,
    "experiment": Experiment,
    "cluster": Cluster,
    "job": Job,
}
Abandoned = tuple[str, int]  # (kind, row id)


def abandoned(session: Session) -> list[Abandoned]:
    """The resources marked ``deleting``: at start-up, those whose delete a stopped server left half done."""
    return [
        (kind, row_id)
        for kind, model in KINDS.items()
        for row_id in session.scalars(select(model.id).filter(model.provisioning_state == DELETING))
    ]


def finish(ctx: Ctx, kind: str, row_id: int) -> bool:
    """Remove a resource marked ``deleting`` once the jobs it holds have ended (its first step asked them to
    stop); True when it is gone (or was already), False while its jobs still end."""
    row = ctx.session.get(KINDS[kind], row_id)
    if row is None:
        return True
    # Asked again each time: a job made in it after its first step was never asked (e.g. on a cluster elsewhere,
    # in an experiment of a workspace being deleted), and the delete would wait until it ended by itself.
    if [job for job, reason in _jobs_in(ctx, kind, row) if jobs.request_stop(ctx, job, reason)]:
        return False
    if not claim(ctx.session, row):  # a delete request went first
        return True
    log.info("finishing the delete of %s '%s', which a server that stopped had begun", kind, row.name)
    with ctx.session.no_autoflush:
        _DELETE_ROW[kind](ctx, row)
    return True


def _jobs_in(ctx: Ctx, kind: str, row: Any) -> Iterable[tuple[Job, str]]:
    """The jobs a resource's delete stops, with why (``jobs.request_stop``): its own, and those running on its
    clusters."""
    if kind == "job":
        return [(row, "deleted")]
    if kind == "cluster":
        return [(job, "cluster_deleted") for job in jobs.on_cluster(ctx, row)]
    if kind == "experiment":
        return [(job, "deleted") for job in row.jobs]
    spaces = row.workspaces if kind == "resource group" else [row]
    return [
        *((job, "deleted") for space in spaces for experiment in space.experiments for job in experiment.jobs),
        *(
            (job, "cluster_deleted")
            for space in spaces
            for cluster in space.clusters
            for job in jobs.on_cluster(ctx, cluster)
        ),
    ]


_DELETE_ROW: dict[str, Callable[[Ctx, Any], None]] = {
    "resource group": groups.delete_row,
    "workspace": workspaces.delete_row,
    "experiment": experiments.delete_row,
    "cluster": clusters.delete_row,
    "job": jobs.delete_row,
}
