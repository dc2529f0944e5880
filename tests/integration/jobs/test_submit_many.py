"""Many runs at once (`submit_many`): one commit for every row, then the messages, sent
in batches; all or nothing in SQL, and a broker that fails leaves the runs queued in
SQL for the reconciler, saying how many."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from sparkjobs.artifacts.locate import store_sessions
from sparkjobs.broker.client import queue_keys
from sparkjobs.broker.units import Unit, decode_message
from sparkjobs.config import Config, load_config
from sparkjobs.errors import BadInput, Unreachable
from sparkjobs.jobs.define import chat, job
from sparkjobs.runs.submit import PUBLISH_BATCH, submit_many
from sparkjobs.store.models import Run, Status
from tests.support.cluster import Cluster, cluster_toml
from tests.support.services import Broker, free_port

pytestmark = pytest.mark.redis

ASK = job("ask", params={"city": "Berlin"}, steps=[chat("Weather in {params.city}")])
# Two whole batches and part of a third.
MANY = 2 * PUBLISH_BATCH + 7


def _runs(config: Config, status: Status | None = None) -> int:
    counted = select(func.count()).select_from(Run).where(Run.job == ASK.name)
    if status is not None:
        counted = counted.where(Run.status == status)
    with store_sessions(config) as sessions, sessions() as session:
        return int(session.scalar(counted) or 0)


def test_many_runs_are_each_queued_once_in_the_order_they_were_given(
    cluster: Cluster, broker: Broker
) -> None:
    params = [{"city": f"city {n}"} for n in range(MANY)]
    runs = submit_many(cluster.config, [ASK] * MANY, params=params, trigger="submit")
    assert len(set(runs)) == MANY
    assert _runs(cluster.config, Status.QUEUED) == MANY
    (key,) = [k for k in queue_keys(broker.prefix, "spark1") if broker.client.llen(k)]
    # Workers pop from the right: the first run submitted is the first taken. As many
    # as gemma takes at once are published; the others wait in its line, in order.
    raw = list(reversed(broker.client.lrange(key, 0, -1)))
    units = [decode_message(message) for message in raw]
    lined = [Unit.parse(name) for name in broker.client.zrange(
        f"{broker.prefix}sparkjobs:line:gemma", 0, -1)]  # fmt: skip
    limit = cluster.config.services["gemma"].in_flight_limit
    assert len(units) == min(limit, MANY)
    assert [unit.run_id if unit else None for unit in units + lined] == runs
    assert {unit.index for unit in units + lined if unit} == {0}


def test_bad_input_in_any_of_many_runs_writes_and_queues_nothing(
    cluster: Cluster, broker: Broker
) -> None:
    params = [{"city": "Oslo"}] * (MANY - 1) + [{"town": "Oslo"}]
    with pytest.raises(BadInput, match="unknown parameter 'town'"):
        submit_many(cluster.config, [ASK] * MANY, params=params, trigger="submit")
    assert _runs(cluster.config) == 0
    assert list(broker.client.scan_iter(match=f"{broker.prefix}*")) == []


def test_a_broker_that_does_not_answer_leaves_every_run_queued_and_says_so(
    cluster: Cluster, tmp_path: Path
) -> None:
    path = tmp_path / "no-broker.toml"
    path.write_text(cluster_toml(
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        database_url=cluster.config.database,
    ))  # fmt: skip
    config = load_config(path)
    with pytest.raises(
        Unreachable, match=f"{MANY} of {MANY} runs are recorded as queued"
    ) as caught:
        submit_many(config, [ASK] * MANY, trigger="submit")
    assert caught.value.exit_code == 3
    assert _runs(cluster.config, Status.QUEUED) == MANY  # for the reconciler to publish
