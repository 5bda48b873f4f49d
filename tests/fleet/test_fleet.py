"""Three replicas on one Redis keep one gateway's promises: one master key, once per id, one rate limit."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from functools import partial

import grpc
import pytest
from encord_gateway_client.v1 import api_keys_pb2 as pb
from encord_gateway_client.v1 import api_keys_pb2_grpc as pb_grpc
from support.fleet import Fleet, GaveUp, create_until_answered, outcome, running_fleet
from support.reliability import UNKNOWN_OUTCOME, call_lines, report, secret_needles

REPLICAS = 3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet"), replicas=REPLICAS, projects=24) as running:
        yield running


@pytest.fixture(autouse=True)
def whole_fleet(fleet: Fleet) -> Iterator[None]:
    """Each test starts with every replica and Redis up and no fault, and leaves it so."""
    yield
    fleet.proxy.faults.drop_after = 0.0
    fleet.proxy.faults.only_bodies_with = b""
    if fleet.redis.process is None or fleet.redis.process.poll() is not None:
        fleet.redis.start()
    for index, replica in enumerate(fleet.gateways):
        if replica.process.poll() is not None:
            fleet.start_replica(index)


def get_or_create(
    fleet: Fleet, project: str, stub: pb_grpc.ApiKeyServiceStub | None = None
) -> Callable[[], pb.ProjectApiKey]:
    chosen = stub or fleet.spread_stub()
    request = pb.GetOrCreateProjectApiKeyRequest(project_hash=project)
    return lambda: chosen.GetOrCreateProjectApiKey(request, timeout=30)


def test_64_concurrent_get_or_creates_over_three_replicas_mint_one_master_key(fleet: Fleet) -> None:
    project = fleet.fresh_project()
    calls_before = [len(call_lines(g)) for g in fleet.gateways]
    spread = fleet.spread_stub()
    barrier = threading.Barrier(64)

    def one(_: int) -> str:
        barrier.wait()
        key: pb.ProjectApiKey = get_or_create(fleet, project, spread)()
        return key.api_key

    with futures.ThreadPoolExecutor(64) as pool:
        keys = list(pool.map(one, range(64)))
    assert len(set(keys)) == 1
    assert fleet.master_keys(project) == keys[:1]
    served = [len(call_lines(g)) - before for g, before in zip(fleet.gateways, calls_before, strict=True)]
    assert all(n > 0 for n in served), served  # round robin reached every replica


def lost_answer_creates(fleet: Fleet, count: int, workers: int) -> None:
    """`count` creates with request ids, 30 % of their answers lost, each retry sent to the next replica."""
    project = fleet.fresh_project()
    fleet.proxy.faults.only_bodies_with = b'"query_method": "POST"'
    fleet.proxy.faults.drop_after = 0.3
    lost_before = fleet.proxy.injected["drop_after"]
    stubs = fleet.replica_stubs()
    titles = [f"lossy {uuid.uuid4().hex[:8]} {n}" for n in range(count)]
    seen: list[str] = []
    with futures.ThreadPoolExecutor(workers) as pool:
        keys = list(
            pool.map(
                lambda n: create_until_answered(
                    stubs, project, titles[n], str(uuid.uuid4()), start=n, seen=seen
                ),
                range(count),
            )
        )
    fleet.proxy.faults.drop_after = 0.0
    lost = fleet.proxy.injected["drop_after"] - lost_before
    assert lost > 0
    stored = fleet.stored()
    counts = Counter(title for _, title in stored.values() if title in set(titles))
    assert counts == Counter(titles), {t: n for t, n in counts.items() if n != 1}
    # Each caller got its own key: the one Encord stored under its title.
    assert [stored[key.api_key][1] for key in keys] == titles
    report("fleet lost answers", creates=count, lost=lost, retried_with=dict(Counter(seen)))


def test_creates_with_request_ids_under_lost_answers_retried_on_other_replicas_store_each_once(
    fleet: Fleet,
) -> None:
    lost_answer_creates(fleet, count=36, workers=12)


@pytest.mark.slow
def test_300_creates_with_request_ids_under_30_percent_lost_answers_store_300_keys(fleet: Fleet) -> None:
    lost_answer_creates(fleet, count=300, workers=16)


def test_a_rate_limit_holds_across_the_fleet(fleet: Fleet) -> None:
    project = fleet.fresh_project()
    request = pb.ListProjectApiKeysRequest(project_hash=project)
    stubs = fleet.replica_stubs(fleet.callers.limited)
    answers = [
        outcome(partial(stub.ListProjectApiKeys, request, timeout=10)) for _ in range(4) for stub in stubs
    ]
    assert Counter(answers) == {"OK": 6, "RESOURCE_EXHAUSTED/RATE_LIMITED": 6}, answers


class Load:
    """Eight clients making creates with request ids, each retried to the next replica until answered.

    Once stopped, a client gives up the create it is retrying: that one's key may exist or not, but
    never twice. Attempts time out after 5 s, so that stopping does not wait for a lease held by a
    killed replica to lapse (30 s).
    """

    def __init__(self, fleet: Fleet) -> None:
        self.project = fleet.fresh_project()
        self.stubs = fleet.replica_stubs()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[str] = []
        self.keys: list[pb.ProjectApiKey] = []
        self.titles: list[str] = []
        self.abandoned: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(8)]

    def _client(self, n: int) -> None:
        sequence = 0
        while not self.stop.is_set():
            title = f"load {n}-{sequence} {uuid.uuid4().hex[:6]}"
            sequence += 1
            seen: list[str] = []
            try:
                key = create_until_answered(
                    self.stubs, self.project, title, str(uuid.uuid4()),
                    start=n, seen=seen, timeout=5.0, give_up=self.stop,
                )  # fmt: skip
            except (GaveUp, grpc.RpcError):
                with self.lock:
                    self.answers += seen  # a status that ended it is the last one seen
                    self.abandoned.append(title)
                continue
            with self.lock:
                self.answers += [*seen, "OK"]
                self.keys.append(key)
                self.titles.append(title)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        time.sleep(1.0)  # under way on every replica
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)  # and still running after whatever happened
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def assert_each_create_stored_once(self, fleet: Fleet) -> None:
        stored = fleet.stored()
        counts = Counter(title for _, title in stored.values())
        assert self.keys, "no create was answered"
        assert {t: counts[t] for t in self.titles if counts[t] != 1} == {}
        assert {t: counts[t] for t in self.abandoned if counts[t] > 1} == {}
        assert [stored[key.api_key][1] for key in self.keys] == self.titles  # each OK answer's key


# What a create under load may answer: OK, a retry hint, the store down, an unknown outcome, or (from a
# replica just killed) a connection refused, which carries no reason.
ALLOWED = {"OK", "ABORTED/REQUEST_IN_PROGRESS", "UNAVAILABLE/STATE_UNAVAILABLE", "UNAVAILABLE/"} | {
    f"{code}/{reason}" for code, reason in UNKNOWN_OUTCOME
}


def test_a_replica_killed_under_load_leaves_the_others_serving_and_no_key_twice(fleet: Fleet) -> None:
    masters = [fleet.fresh_project() for _ in range(3)]
    with Load(fleet) as running:
        fleet.kill(REPLICAS - 1)
        survivors = fleet.replica_stubs(alive_only=True)
        master_answers = [outcome(get_or_create(fleet, p, stub)) for p in masters for stub in survivors]
    assert set(running.answers) <= ALLOWED, Counter(running.answers)
    assert master_answers == ["OK"] * len(master_answers)
    running.assert_each_create_stored_once(fleet)
    assert all(len(fleet.master_keys(p)) == 1 for p in masters)
    report("fleet replica killed", creates=len(running.keys), abandoned=len(running.abandoned),
           answers=dict(Counter(running.answers)))  # fmt: skip


def test_redis_stopped_under_load_fails_closed_and_the_fleet_recovers(fleet: Fleet) -> None:
    masters = [fleet.fresh_project() for _ in range(2)]
    with Load(fleet) as running:
        fleet.redis.stop()
        master_answers = [outcome(get_or_create(fleet, p)) for p in masters]
        time.sleep(2.0)
        fleet.redis.start()  # the same port and append-only file
    assert set(running.answers) <= ALLOWED, Counter(running.answers)
    assert "UNAVAILABLE/STATE_UNAVAILABLE" in running.answers  # the load met the outage
    assert set(master_answers) == {"UNAVAILABLE/STATE_UNAVAILABLE"}
    running.assert_each_create_stored_once(fleet)
    # Back without restarting a replica: every one answers, and Encord holds one master key.
    recovered = [get_or_create(fleet, masters[0], stub)() for stub in fleet.replica_stubs()]
    assert len({key.api_key for key in recovered}) == 1
    assert fleet.master_keys(masters[0]) == [recovered[0].api_key]
    assert fleet.master_keys(masters[1]) == []
    assert all(g.process.poll() is None for g in fleet.gateways)
    report("fleet redis stopped", creates=len(running.keys), abandoned=len(running.abandoned),
           answers=dict(Counter(running.answers)))  # fmt: skip


def as_text(answer: bytes | str) -> str:
    """A Redis answer as text: the client leaves answers as bytes (it does not set decode_responses)."""
    assert isinstance(answer, bytes), answer
    return answer.decode()


def test_no_secret_is_written_to_redis(fleet: Fleet) -> None:
    """Whatever the tests before minted: no key, token or private-key bytes among Redis's keys or values."""
    dump = []
    with fleet.redis.client() as client:
        for name in client.scan_iter(match="*"):
            dump.append(name.decode())
            kind = as_text(client.type(name))
            if kind == "hash":
                dump += [f"{as_text(k)}={as_text(v)}" for k, v in client.hgetall(name).items()]
            elif kind == "string":
                dump.append(as_text(client.get(name) or b""))
        names = [name.decode() for name in client.scan_iter(match="*")]
    text = "\n".join(dump)
    minted = set(fleet.stored())
    assert minted, "the module's tests minted nothing to look for"
    needles = [*minted, fleet.callers.fleet, fleet.callers.limited, *secret_needles(fleet.key_file)]
    assert [n for n in needles if n in text] == []
    assert names
    assert [name for name in names if not name.startswith("encord-gateway:")] == []
