"""Status columns (`sparkjobs.store.choice`): enums in Python, checked by the database,
and on PostgreSQL domains whose changes leave a run's indexes alone."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from sparkjobs.broker.units import ACTIVE, pending_units
from sparkjobs.execution.state import start_step, succeed_step
from sparkjobs.store.engine import session_factory
from sparkjobs.store.models import Run, RunKind, Status, Step, Trigger
from sparkjobs.store.runs import add_step, create_run

# Every column that holds one of an enum's values: (table, column, domain).
CHOICES = {
    ("runs", "kind", "run_kind"),
    ("runs", "trigger", "run_trigger"),
    ("runs", "status", "run_status"),
    ("steps", "status", "step_status"),
    ("step_attempts", "status", "attempt_status"),
    ("step_pieces", "status", "piece_status"),
    ("step_artifacts", "role", "artifact_role"),
}


def _run(sessions: sessionmaker[Session], job: str = "choice") -> uuid.UUID:
    with sessions.begin() as session:
        run, _ = create_run(session, job=job, kind=RunKind.CUSTOM, trigger=Trigger.SUBMIT)
        add_step(session, run.id, 0, service="echo", node="n1", name="custom",
                 spec={"kind": "custom"})  # fmt: skip
        return run.id


def test_a_status_is_read_back_as_its_enum_and_found_by_enum_or_string(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _run(sessions)
    with sessions() as session:
        run = session.get_one(Run, run_id)
        assert (type(run.status), type(run.kind), type(run.trigger)) == (Status, RunKind, Trigger)
        assert run.status is Status.QUEUED
        by_enum = session.scalars(select(Run.id).where(Run.status == Status.QUEUED)).all()
        by_text = session.scalars(select(Run.id).where(Run.status == "queued")).all()
        assert by_enum == by_text == [run_id]
        assert session.scalars(select(Run.id).where(Run.status == Status.RUNNING)).all() == []


def test_a_status_written_into_the_sql_itself_is_a_quoted_value(engine: Engine) -> None:
    run_id = _run(session_factory(engine))
    query = select(Run.id).where(Run.status.in_(ACTIVE), Run.kind == RunKind.CUSTOM)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    assert "'queued', 'running'" in sql
    with engine.connect() as connection:
        assert [uuid.UUID(str(row[0])) for row in connection.execute(text(sql))] == [run_id]


def test_on_postgresql_every_choice_is_a_domain_and_no_table_has_a_check(
    postgres_engine: Engine,
) -> None:
    with postgres_engine.connect() as connection:
        domains = connection.execute(
            text(
                "SELECT table_name, column_name, domain_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND domain_name IS NOT NULL"
            )
        ).all()
        checks = connection.execute(
            text(
                "SELECT conname FROM pg_constraint c JOIN pg_namespace n"
                " ON n.oid = c.connamespace WHERE c.contype = 'c' AND c.conrelid <> 0"
                " AND n.nspname = current_schema()"
            )
        ).all()
    assert {tuple(row) for row in domains} == CHOICES
    assert checks == []


def test_on_postgresql_a_run_s_start_and_finish_update_its_row_in_place(
    postgres_engine: Engine,
) -> None:
    """No index covers a run's status: both changes are HOT updates (no index entries)."""
    sessions = session_factory(postgres_engine)
    run_id = _run(sessions)
    with sessions.begin() as session:
        started = start_step(session, run_id, 0, task_id="task-1", worker="w1")
        assert started.attempt_id is not None
        assert succeed_step(session, started.context, attempt_id=started.attempt_id,
                            text="done", started_at=started.started_at)  # fmt: skip
        updates, in_place = session.execute(
            text(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
                " WHERE relid = 'runs'::regclass"
            )
        ).one()
    assert (updates, in_place) == (2, 2)
    with sessions() as session:
        assert session.get_one(Run, run_id).status is Status.SUCCEEDED


def test_active_runs_are_found_through_their_unfinished_steps(
    sessions: sessionmaker[Session],
) -> None:
    finished, active = _run(sessions, "finished"), _run(sessions, "active")
    with sessions.begin() as session:
        started = start_step(session, finished, 0, task_id="task-1", worker="w1")
        assert started.attempt_id is not None
        succeed_step(session, started.context, attempt_id=started.attempt_id, text="done",
                     started_at=started.started_at)  # fmt: skip
    with sessions() as session:
        unfinished = session.scalars(select(Step.run_id).where(Step.finished_at.is_(None)))
        assert list(unfinished) == [active]
        assert [pending.unit.run_id for pending in pending_units(session)] == [active]
