"""Each consumer's ack and retry policy, on the fake broker: what it does with every
delivery, and that every delivery is settled exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from services.intake.commands import CommandConsumer
from services.worker.bootstrap import Consumers, bootstrap
from services.worker.consumer import MAX_START_OVERS
from shared import topology
from shared.clock import to_ms
from shared.domain.access import ApiKeys
from shared.domain.backoff import compute_backoff
from shared.domain.model import (
    Campaign,
    Code,
    CodeRef,
    CodeUseType,
    Job,
    JobState,
    Redemption,
    RedemptionStatus,
)
from shared.domain.reasons import ReasonCode
from shared.domain.redemptions import RedemptionIds
from shared.domain.states import CodeState
from shared.messages import RedemptionJob
from tests.fake_broker import FakeBroker, FakeDelivery
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MAX_DELIVERIES = 4
MALFORMED = 40660  # INVALID_PARAMETER_VALUE
GIVEN_UP = int(ReasonCode.DELIVERY_LIMIT_EXCEEDED)


def delay_s(attempt: int) -> float:
    return compute_backoff(topology.BROKER_RETRY, attempt, 0.0)


class OutageStore(FakeStore):
    """The fake store, unreachable while `down`."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _reach(self) -> None:
        if self.down:
            raise ConnectionError("the store is unreachable")

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        self._reach()
        return await super().open_redemption(redemption)

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        self._reach()
        return await super().get_redemption(redemption_id)

    async def get_job(self, job_id: str) -> Job | None:
        self._reach()
        return await super().get_job(job_id)

    async def update_job(self, job: Job) -> None:
        self._reach()
        await super().update_job(job)


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    broker = FakeBroker()
    yield broker
    assert broker.settled_twice == [], "a delivery was settled twice"
    assert broker.unsettled() == [], "a delivery was left unsettled"


@pytest.fixture
async def store() -> OutageStore:
    store = OutageStore()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("c1", "gems", "ABC", CodeState.AVAILABLE, NOW, NOW))
    return store


@pytest.fixture
async def worker(store: OutageStore, broker: FakeBroker) -> Consumers:
    consumers = bootstrap(
        store,
        {},
        broker=broker,
        max_deliveries=MAX_DELIVERIES,
        campaign_cache_ttl_s=0,
        clock=lambda: NOW,
    ).consumers
    assert consumers is not None
    await consumers.start()
    return consumers


@pytest.fixture
async def commands(store: OutageStore, broker: FakeBroker) -> CommandConsumer:
    worker = bootstrap(store, {}, campaign_cache_ttl_s=0, clock=lambda: NOW)
    consumer = CommandConsumer(
        broker,
        worker.outcomes,
        worker.budget,
        lambda: NOW,
        ApiKeys.parse("partner-key=fulfillment"),
        RedemptionIds("secret"),
        max_deliveries=MAX_DELIVERIES,
    )
    await consumer.start()
    return consumer


def job(rid: str = "r1", **fields: Any) -> bytes:
    wire = RedemptionJob(
        redemptionId=rid,
        requestId=rid,
        userId="u1",
        scanCode="ABC",
        codeType="gems",
        acceptedAt=to_ms(NOW) or 0,
    ).model_dump(mode="json")
    return json.dumps(wire | fields).encode()


async def status(store: FakeStore, rid: str = "r1") -> RedemptionStatus | None:
    found = await store.get_redemption(rid)
    return found.status if found else None


async def code_state(store: FakeStore) -> CodeState | None:
    code = await store.get_code(CodeRef("gems", "ABC"))
    return code.code_state if code else None


async def redeliver_until_settled_otherwise(broker: FakeBroker) -> list[FakeDelivery]:
    """Each delayed copy delivered in turn, until one is not retried again."""
    seen = []
    while broker.delayed:
        seen.append(await broker.next_delayed())
    return seen


# The work queue: redemption jobs.


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"redemptionId": 42, "not": "a job"', "Invalid JSON"),
        (json.dumps({"schemaVersion": 1, "redemptionId": "x"}).encode(), "userId"),
        (job(acceptedAt=10**20), "acceptedAt"),
    ],
)
async def test_a_malformed_job_is_dead_lettered_at_once_with_its_reason(
    worker: Consumers, broker: FakeBroker, store: OutageStore, body: bytes, says: str
) -> None:
    delivery = await broker.deliver(topology.WORK_QUEUE, body)
    assert delivery.settlements == ["dead-letter"]
    [dead] = broker.dead_letters()
    assert dead.reason.startswith(f"{MALFORMED} INVALID_PARAMETER_VALUE") and says in dead.reason
    assert dead.body == body
    assert broker.delayed == [] and store.redemptions == {}


async def test_a_job_is_acked_once_its_outcome_is_stored_and_a_redelivery_claims_nothing(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    first = await broker.deliver(topology.WORK_QUEUE, job())
    again = await broker.deliver(topology.WORK_QUEUE, job(), deliveries=1)
    assert (first.settlements, again.settlements) == (["ack"], ["ack"])
    assert await status(store) is RedemptionStatus.REDEEMED
    code = await store.get_code(CodeRef("gems", "ABC"))
    assert code is not None and [h.action.value for h in code.history] == ["redeem", "succeed"]


async def test_a_job_failing_for_want_of_the_store_is_retried_later_with_a_growing_delay(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    await broker.deliver(topology.WORK_QUEUE, job())
    for attempt in range(1, MAX_DELIVERIES - 1):
        assert broker.delayed[0].message.deliveries == attempt
        await broker.next_delayed()
    assert [d.delay_s for d in broker.delayed] == [delay_s(MAX_DELIVERIES - 2)]
    assert [d.settled for d in broker.deliveries] == ["retry"] * (MAX_DELIVERIES - 1)
    retried = broker.on(topology.DELAY_EXCHANGE)
    assert [m.routing_key for m in retried] == [topology.WORK_QUEUE] * (MAX_DELIVERIES - 1)
    store.down = False
    last = await broker.next_delayed()
    assert last.settled == "ack" and await status(store) is RedemptionStatus.REDEEMED
    assert broker.dead_letters() == []


async def test_the_delays_between_retries_grow_by_the_broker_retry_policy(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    await broker.deliver(topology.WORK_QUEUE, job())
    delays = []
    while broker.delayed:
        delays.append(broker.delayed[0].delay_s)
        if broker.delayed[0].message.deliveries == MAX_DELIVERIES:
            break
        await broker.next_delayed()
    assert delays == [0.5, 1.0, 2.0, 4.0]
    store.down = False
    await broker.next_delayed()


async def test_at_max_deliveries_the_redemption_is_given_up_and_dead_lettered_with_its_reason(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    await broker.deliver(topology.WORK_QUEUE, job())
    while broker.delayed[0].message.deliveries < MAX_DELIVERIES:
        await broker.next_delayed()
    store.down = False
    last = await broker.next_delayed()
    assert last.deliveries == MAX_DELIVERIES and last.settled == "dead-letter"
    assert len(broker.deliveries) == MAX_DELIVERIES + 1
    [dead] = broker.dead_letters()
    assert dead.reason_code == GIVEN_UP and f"in {MAX_DELIVERIES} deliveries" in dead.reason
    found = await store.get_redemption("r1")
    assert found is not None and found.status is RedemptionStatus.FAILED
    assert found.reason_code is ReasonCode.DELIVERY_LIMIT_EXCEEDED
    assert await code_state(store) is CodeState.AVAILABLE
    assert broker.delayed == []


async def test_when_even_giving_up_fails_a_fresh_copy_starts_over_with_its_header(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    tired = await broker.deliver(topology.WORK_QUEUE, job(), deliveries=MAX_DELIVERIES)
    assert tired.settled == "start-over" and broker.dead_letters() == []
    [fresh] = broker.delayed
    assert fresh.message.deliveries == 0 and fresh.delay_s == delay_s(1)
    assert fresh.message.headers[topology.START_OVER_HEADER] == 1
    store.down = False
    again = await broker.next_delayed()
    assert again.settled == "ack" and await status(store) is RedemptionStatus.REDEEMED


async def test_a_job_that_never_can_be_ended_starts_over_max_times_then_is_dead_lettered(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    late = {topology.START_OVER_HEADER: MAX_START_OVERS - 2}  # its last rounds
    await broker.deliver(topology.WORK_QUEUE, job(), headers=late)
    await redeliver_until_settled_otherwise(broker)
    settled = [d.settled for d in broker.deliveries]
    round_ = ["retry"] * MAX_DELIVERIES + ["start-over"]
    assert settled == round_ * 2 + ["retry"] * MAX_DELIVERIES + ["dead-letter"]
    starts = [d for d in broker.deliveries if d.settled == "start-over"]
    rounds = [d.headers[topology.START_OVER_HEADER] for d in starts]
    assert rounds == [MAX_START_OVERS - 2, MAX_START_OVERS - 1]  # each round counts on
    [dead] = broker.dead_letters()
    assert dead.reason_code == GIVEN_UP
    assert f"in {MAX_START_OVERS + 1} rounds" in dead.reason
    assert dead.headers[topology.START_OVER_HEADER] == MAX_START_OVERS


async def test_the_pause_before_starting_over_grows_with_the_rounds(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    pauses = []
    for rounds in range(4):
        headers = {topology.START_OVER_HEADER: rounds} if rounds else {}
        await broker.deliver(topology.WORK_QUEUE, job(), deliveries=MAX_DELIVERIES, headers=headers)
        pauses.append(broker.delayed.pop().delay_s)
    assert pauses == [delay_s(1), delay_s(2), delay_s(3), delay_s(4)]
    assert pauses == sorted(pauses) and len(set(pauses)) == 4


async def test_a_settlement_the_broker_does_not_confirm_releases_the_delivery_once(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    broker.refuse(topology.DEAD_LETTER_EXCHANGE, topology.DELAY_EXCHANGE)
    malformed = await broker.deliver(topology.WORK_QUEUE, b"not json")
    store.down = True
    failing = await broker.deliver(topology.WORK_QUEUE, job())
    assert (malformed.settlements, failing.settlements) == (["release"], ["release"])
    assert broker.published == [] and broker.delayed == []
    assert [m.deliveries for _, m in broker.ready] == [1, 1]  # counted by the broker
    broker.confirm_all()
    assert (await broker.next_ready()).settled == "dead-letter"
    assert (await broker.next_ready()).settled == "retry"
    assert broker.delayed[0].message.deliveries == 2


# The jobs queue: GenerateCodes in the background.


def generation(job_id: str = "j1", state: JobState = JobState.RUNNING) -> Job:
    return Job(job_id, "gems", 3, CodeState.AVAILABLE, "FiveByFive", {}, NOW, NOW, state=state)


def job_message(job_id: str = "j1") -> bytes:
    return json.dumps({"schemaVersion": 1, "jobId": job_id}).encode()


async def test_a_malformed_generation_job_is_dead_lettered_at_once_with_its_reason(
    worker: Consumers, broker: FakeBroker
) -> None:
    delivery = await broker.deliver(topology.JOBS_QUEUE, b'{"jobId": ')
    assert delivery.settled == "dead-letter" and broker.delayed == []
    assert broker.dead_letters()[0].reason_code == MALFORMED


async def test_a_generation_job_failing_for_want_of_the_store_is_retried_with_a_growing_delay(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    await store.create_job(generation())
    store.down = True
    await broker.deliver(topology.JOBS_QUEUE, job_message())
    await broker.next_delayed()
    assert [d.settled for d in broker.deliveries] == ["retry", "retry"]
    assert [m.delay_s for m in broker.delayed] == [delay_s(1)]
    store.down = False
    done = await broker.next_delayed()
    assert done.settled == "ack"
    finished = await store.get_job("j1")
    assert finished is not None and finished.state is JobState.COMPLETED and finished.done == 3


async def test_a_generation_job_at_max_deliveries_is_marked_failed_and_dead_lettered(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    await store.create_job(generation())
    delivery = await broker.deliver(topology.JOBS_QUEUE, job_message(), deliveries=MAX_DELIVERIES)
    assert delivery.settled == "dead-letter"
    assert broker.dead_letters()[0].reason_code == GIVEN_UP
    failed = await store.get_job("j1")
    assert failed is not None and failed.state is JobState.FAILED
    assert failed.error == "the job kept failing"


async def test_a_generation_job_at_max_deliveries_is_dead_lettered_even_with_the_store_down(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    await store.create_job(generation())
    store.down = True
    delivery = await broker.deliver(topology.JOBS_QUEUE, job_message(), deliveries=MAX_DELIVERIES)
    assert delivery.settled == "dead-letter" and broker.delayed == []
    assert broker.dead_letters()[0].reason_code == GIVEN_UP


async def test_a_generation_job_no_longer_running_is_acked_without_work(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    await store.create_job(generation(state=JobState.COMPLETED))
    ended = await broker.deliver(topology.JOBS_QUEUE, job_message())
    tired = await broker.deliver(topology.JOBS_QUEUE, job_message(), deliveries=MAX_DELIVERIES)
    unknown = await broker.deliver(topology.JOBS_QUEUE, job_message("nope"))
    assert [ended.settled, tired.settled, unknown.settled] == ["ack", "ack", "ack"]
    assert len(store.codes) == 1 and broker.dead_letters() == []  # the fixture's code alone


async def test_a_generation_ack_the_broker_does_not_take_releases_it_and_settles_nothing_else(
    worker: Consumers, broker: FakeBroker, store: OutageStore
) -> None:
    await store.create_job(generation())
    broker.acks_fail = True
    delivery = await broker.deliver(topology.JOBS_QUEUE, job_message())
    assert delivery.settlements == ["release"] and broker.delayed == []


# The intake's command queue: `redeem` and `async-response` from other services.


def redeem_command(**fields: Any) -> bytes:
    return json.dumps({"userId": "u1", "scanCode": "ABC", "codeType": "gems"} | fields).encode()


def async_response() -> bytes:
    answer = {"success": True, "complete": True}
    body = {"redemptionId": "r1", "redemptionCodeId": "c1", "attempt": 0, "asyncResponse": answer}
    return json.dumps(body).encode()


PARTNER = {topology.AUTHORIZATION_HEADER: "Bearer partner-key"}


def replies(broker: FakeBroker, queue: str = "caller") -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in broker.on("") if m.routing_key == queue]


async def test_a_redeem_command_is_acked_once_its_job_is_confirmed_on_the_work_queue(
    commands: CommandConsumer, broker: FakeBroker
) -> None:
    delivery = await broker.deliver(topology.INTAKE_QUEUE, redeem_command(requestId="q1"))
    assert delivery.settled == "ack"
    [published] = broker.on(topology.WORK_EXCHANGE)
    sent = json.loads(published.body)
    assert (sent["userId"], sent["requestId"]) == ("u1", "q1")
    assert published.message_id == sent["redemptionId"]


async def test_a_malformed_command_is_dead_lettered_at_once_and_its_sender_told_why(
    commands: CommandConsumer, broker: FakeBroker
) -> None:
    delivery = await broker.deliver(
        topology.INTAKE_QUEUE, b'{"userId": 7', reply_to="caller", correlation_id="c1"
    )
    assert delivery.settled == "dead-letter" and broker.delayed == []
    assert broker.dead_letters()[0].reason_code == MALFORMED
    [answer] = replies(broker)
    assert (answer["status"], answer["reasonCode"]) == (422, MALFORMED)
    assert broker.on(topology.WORK_EXCHANGE) == []


async def test_a_command_whose_job_is_not_confirmed_is_retried_with_a_growing_delay(
    commands: CommandConsumer, broker: FakeBroker
) -> None:
    broker.refuse(topology.WORK_EXCHANGE)
    await broker.deliver(topology.INTAKE_QUEUE, redeem_command(requestId="q1"))
    await broker.next_delayed()
    assert [d.settled for d in broker.deliveries] == ["retry", "retry"]
    assert [d.delay_s for d in broker.delayed] == [delay_s(1)]
    assert delay_s(1) > delay_s(0)
    broker.confirm_all()
    done = await broker.next_delayed()
    assert done.settled == "ack" and len(broker.on(topology.WORK_EXCHANGE)) == 1


async def test_a_command_at_max_deliveries_is_dead_lettered_and_its_sender_told(
    commands: CommandConsumer, broker: FakeBroker
) -> None:
    broker.refuse(topology.WORK_EXCHANGE)
    await broker.deliver(topology.INTAKE_QUEUE, redeem_command(), reply_to="caller")
    await redeliver_until_settled_otherwise(broker)
    settled = [d.settled for d in broker.deliveries]
    assert settled == ["retry"] * MAX_DELIVERIES + ["dead-letter"]
    assert broker.dead_letters()[0].reason_code == GIVEN_UP
    [answer] = replies(broker)
    assert answer["reasonCode"] == GIVEN_UP


async def test_an_async_response_the_store_cannot_take_is_retried_as_an_async_response(
    commands: CommandConsumer, broker: FakeBroker, store: OutageStore
) -> None:
    store.down = True
    key = topology.ASYNC_RESPONSE_ROUTING_KEY
    await broker.deliver(topology.INTAKE_QUEUE, async_response(), routing_key=key, headers=PARTNER)
    assert broker.deliveries[0].settled == "retry"
    assert broker.delayed[0].message.routing_key == key
    store.down = False
    again = await broker.next_delayed()
    # Now it reaches the store, which knows no such redemption: refused, not retried.
    assert again.settled == "ack" and broker.delayed == []
    assert broker.on(topology.WORK_EXCHANGE) == []


async def test_a_refused_async_response_is_acked_and_its_sender_told_why(
    commands: CommandConsumer, broker: FakeBroker
) -> None:
    delivery = await broker.deliver(
        topology.INTAKE_QUEUE,
        async_response(),
        routing_key=topology.ASYNC_RESPONSE_ROUTING_KEY,
        reply_to="caller",
        headers=PARTNER,
    )
    assert delivery.settled == "ack" and broker.dead_letters() == []
    [answer] = replies(broker)
    assert answer["reasonCode"] == int(ReasonCode.REDEMPTION_CODE_BY_ID_NOT_FOUND)


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", 7, ["Bearer partner-key"]])
@pytest.mark.parametrize(
    "routing_key", [topology.REDEEM_ROUTING_KEY, topology.ASYNC_RESPONSE_ROUTING_KEY]
)
async def test_a_command_whose_authorization_is_not_text_is_refused_as_unauthenticated(
    commands: CommandConsumer, broker: FakeBroker, value: object, routing_key: str
) -> None:
    body = redeem_command() if routing_key == topology.REDEEM_ROUTING_KEY else async_response()
    delivery = await broker.deliver(
        topology.INTAKE_QUEUE,
        body,
        routing_key=routing_key,
        reply_to="caller",
        headers={topology.AUTHORIZATION_HEADER: value},
    )
    assert delivery.settled == "ack" and broker.delayed == []
    [answer] = replies(broker)
    assert (answer["status"], answer["reasonCode"]) == (401, int(ReasonCode.UNAUTHENTICATED))
    assert broker.on(topology.WORK_EXCHANGE) == []


class BrokenKeys(ApiKeys):
    """Keys whose look-up fails as a bug would: with no refusal to give."""

    def grant(self, key: str) -> None:
        raise RuntimeError("a bug")


async def test_a_command_whose_handling_fails_unexpectedly_is_dead_lettered_with_a_reason(
    store: OutageStore, broker: FakeBroker
) -> None:
    worker = bootstrap(store, {}, campaign_cache_ttl_s=0, clock=lambda: NOW)
    consumer = CommandConsumer(
        broker,
        worker.outcomes,
        worker.budget,
        lambda: NOW,
        BrokenKeys([]),
        RedemptionIds("secret"),
        max_deliveries=MAX_DELIVERIES,
    )
    await consumer.start()
    delivery = await broker.deliver(
        topology.INTAKE_QUEUE, redeem_command(), reply_to="caller", headers=PARTNER
    )
    assert delivery.settled == "dead-letter" and broker.delayed == []
    [dead] = broker.dead_letters()
    assert dead.reason_code == int(ReasonCode.UNHANDLED)
    [answer] = replies(broker)
    assert (answer["status"], answer["reasonCode"]) == (500, int(ReasonCode.UNHANDLED))
