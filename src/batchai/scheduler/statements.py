"""The engine's hot reads and writes as SQL statements built once, run on the session's connection.

Every job passes through these (started, watched, ended), so they skip the ORM (building a statement and loading
objects costs about ten times more than running a prepared one) and most of SQLAlchemy's execution too
(``store.prepared``: ``STATEMENT.run(connection, params)``). Changes of a job's state still go through
``jobs.switch_state_row`` (the rules of ``batchai.states``).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, case, delete, exists, insert, or_, select, update
from sqlalchemy.orm import aliased

from batchai.states import JobState
from batchai.store.prepared import Prepared
from batchai.store.tables import Cluster, Job, Node, Task

RUNNING_NODE = "running"
IDLE_NODE = "idle"

# The tasks of every running or terminating job, with what deciding whether the job needs attention takes.
ACTIVE_TASKS = Prepared(
    select(
        Job.id.label("job_id"),
        Job.execution_state,
        Job.stop_reason,
        Job.start_time,
        Job.attempts,
        Job.errors,
        Task.id.label("task_id"),
        Task.index.label("rank"),  # (a row's .index is tuple.index)
        Task.info,
        Task.finished_at,
        Task.exit_code,
    )
    .join(Task, Task.job_id == Job.id, isouter=True)
    # (not IN: a list written in a statement is expanded at each run, which ``Prepared`` leaves to SQLAlchemy)
    .where(or_(Job.execution_state == JobState.RUNNING, Job.execution_state == JobState.TERMINATING))
    .order_by(Job.id, Task.index)
)

JOB_SPEC = Prepared(select(Job.spec).where(Job.id == bindparam("jid")))

TASK_ENDED = Prepared(
    update(Task).where(Task.id == bindparam("tid")).values(exit_code=bindparam("code"), finished_at=bindparam("at"))
)

# A job's nodes are free: the job staged on a node (``next_job_id``) has it now; other running ones become
# idle, leaving ones stay leaving. A staged job that ended before the job ahead of it was settled lets go of
# its place. (SET expressions read the row as it was.)
FREE_NODES_OF_JOB = Prepared(
    update(Node)
    .where(or_(Node.job_id == bindparam("jid"), Node.next_job_id == bindparam("jid")))
    .values(
        job_id=case((Node.job_id == bindparam("jid"), Node.next_job_id), else_=Node.job_id),
        next_job_id=None,
        state=case(
            (
                and_(Node.job_id == bindparam("jid"), Node.next_job_id.is_(None), Node.state == RUNNING_NODE),
                IDLE_NODE,
            ),
            else_=Node.state,
        ),
        state_time=bindparam("now"),
    )
)

FREE_NODES = Prepared(
    select(Node.id, Node.cluster_id, Node.name, Node.index.label("node_index"), Node.info)
    .where(Node.state == IDLE_NODE, Node.job_id.is_(None), Node.next_job_id.is_(None))
    .order_by(Node.index)
)

_OTHER_TASK = aliased(Task)

# Nodes a job may be staged on: running the only process of a running job, with none staged yet.
STAGEABLE_NODES = Prepared(
    select(
        Node.id,
        Node.cluster_id,
        Node.name,
        Node.index.label("node_index"),
        Node.info,
        Node.job_id,
        Task.info.label("task_info"),
    )
    .join(Job, Job.id == Node.job_id)
    .join(Task, Task.job_id == Job.id)
    .where(
        Node.state == RUNNING_NODE,
        Node.next_job_id.is_(None),
        Job.execution_state == JobState.RUNNING,
        Job.node_count == 1,
        Task.pid.is_not(None),
        Task.finished_at.is_(None),
        ~exists(select(_OTHER_TASK.id).where(_OTHER_TASK.job_id == Job.id, _OTHER_TASK.index > 0)),
    )
    .order_by(Node.index)
)

# The node a staged job was given becomes its own (if the job ahead of it there is gone without being settled).
PROMOTE_NEXT = Prepared(
    update(Node)
    .where(Node.next_job_id == bindparam("jid"), Node.job_id.is_(None))
    .values(job_id=bindparam("jid"), next_job_id=None, state=RUNNING_NODE, state_time=bindparam("now"))
)

UNSTAGE = Prepared(update(Node).where(Node.next_job_id == bindparam("jid")).values(next_job_id=None))

STAGE_ON_NODE = Prepared(
    update(Node)
    .where(Node.id == bindparam("nid"), Node.job_id == bindparam("ahead"), Node.next_job_id.is_(None))
    .values(next_job_id=bindparam("jid"))
)

# The head of one cluster's line: a long queue costs no more per pass than a short one.
QUEUE_HEAD = Prepared(
    select(Job.id, Job.cluster_id, Job.priority, Job.node_count, Job.skips)
    .where(Job.execution_state == JobState.QUEUED, Job.cluster_id == bindparam("cid"))
    .order_by(Job.priority.desc(), Job.created_at, Job.id)
    .limit(bindparam("window"))
)

# (One id per run: an IN list given at each run would go through SQLAlchemy's execution, see ``store.prepared``.)
SCHEDULABLE_CLUSTER = Prepared(
    select(Cluster.id, Cluster.name, Cluster.spec, Cluster.allocation_state).where(
        Cluster.id == bindparam("cid"), Cluster.provisioning_state != "deleting"
    )
)

JOB_TO_START = Prepared(
    select(
        Job.id,
        Job.cluster_id,
        Job.spec,
        Job.output_segment,
        Job.attempts,
        Job.execution_state,
        Job.start_time,
        Job.errors,
        Job.priority,
    ).where(Job.id == bindparam("jid"))
)

SET_SKIPS = Prepared(update(Job).where(Job.id == bindparam("jid")).values(skips=bindparam("count")))

TAKE_NODE = Prepared(
    update(Node)
    .where(Node.id == bindparam("nid"), Node.job_id.is_(None))
    .values(job_id=bindparam("jid"), state=RUNNING_NODE, state_time=bindparam("now"))
)

ADD_TASK = Prepared(
    insert(Task).values(
        job_id=bindparam("jid"), node_id=bindparam("nid"), index=bindparam("rank"), info=bindparam("role")
    )
)

TASK_STARTED = Prepared(
    update(Task)
    .where(Task.job_id == bindparam("jid"), Task.index == bindparam("rank"))
    .values(
        pid=bindparam("process"),
        pid_start=bindparam("process_start"),
        started_at=bindparam("at"),
        info=bindparam("details"),
    )
)

DELETE_TASKS = Prepared(delete(Task).where(Task.job_id == bindparam("jid")))
