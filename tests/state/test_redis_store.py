"""What only the Redis store does: namespaced, expiring keys; passwords and TLS; an outage and its end."""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from encord_gateway import config
from encord_gateway.access.ratelimit import SHARED_RETRY_AFTER_S, Rate, RateLimits
from encord_gateway.dev.devstack import cli_argv, write_ssh_key
from encord_gateway.state import StateConfigError, StateUnavailable, open_store
from encord_gateway.state.redis import RedisStore, parse_url
from support.pki import Authority
from support.redis_server import RedisServer

PASSWORD = "s3cret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield running
    running.stop()


def test_every_key_is_under_the_prefix_and_expires(server: RedisServer) -> None:
    prefix = f"ns-{uuid.uuid4().hex}:"
    store = RedisStore(server.url, prefix=prefix)
    store.claim("rid:a", "h", 3600)
    store.mark_sent("rid:a", ("f1",))
    store.take_token("caller", 1.0, 5)
    with store.lock("master:project:x", lease_s=30, wait_s=1), server.client() as client:
        keys = sorted(k.decode() for k in client.scan_iter(match="*"))
        ours = [k for k in keys if k.startswith(prefix)]
        assert len(ours) == 3, keys
        assert [k for k in keys if not k.startswith("ns-")] == []  # nothing outside a namespace
        for key in ours:
            assert 0 < client.pttl(key) <= 3600 * 1000, key
    store.close()


def test_two_stores_share_one_bucket(server: RedisServer) -> None:
    prefix = f"ns-{uuid.uuid4().hex}:"
    first, second = RedisStore(server.url, prefix=prefix), RedisStore(server.url, prefix=prefix)
    waits = [store.take_token("vendor", 0.01, 3) for _ in range(3) for store in (first, second)]
    # Three tokens in the bucket for both: the first three takes win, wherever they come from.
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert all(wait > 90 for wait in waits[3:]), waits  # a token every 100 s
    assert RedisStore(server.url, prefix=f"ns-{uuid.uuid4().hex}:").take_token("vendor", 0.01, 3) == 0.0


@pytest.mark.parametrize("where", ["url", "file"])
def test_a_password_from_the_url_or_the_file_is_used(tmp_path: Path, where: str) -> None:
    guarded = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    try:
        if where == "url":
            store = open_store(f"redis://:{PASSWORD}@127.0.0.1:{guarded.port}/0")
        else:
            store = open_store(guarded.url, password=PASSWORD)
        store.ping()
        assert store.claim("rid:k", "h", 60).won
        store.close()
    finally:
        guarded.stop()


def test_a_refused_password_is_named_but_never_shown(tmp_path: Path) -> None:
    guarded = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    try:
        wrong = open_store(f"redis://:wrong-{PASSWORD}@127.0.0.1:{guarded.port}/0")
        with pytest.raises(StateConfigError) as at_start:
            wrong.ping()
        with pytest.raises(StateUnavailable) as at_a_call:
            wrong.claim("rid:k", "h", 60)
        missing = open_store(guarded.url)
        with pytest.raises(StateConfigError):
            missing.ping()
    finally:
        guarded.stop()
    for refusal in (at_start.value, at_a_call.value):
        assert "credentials" in str(refusal)
        assert PASSWORD not in str(refusal)
    assert PASSWORD not in repr(parse_url(f"redis://:{PASSWORD}@127.0.0.1:1/0"))


def test_rediss_checks_the_certificate_against_the_ca_file(tmp_path: Path) -> None:
    authority = Authority("redis CA")
    (tmp_path / "ca.crt").write_bytes(authority.cert_pem)
    cert, key = authority.issue("redis", ips=("127.0.0.1",), server=True).write(tmp_path, "redis")
    secured = RedisServer(tmp_path / "redis", tls=(tmp_path / "ca.crt", cert, key)).start()
    try:
        assert secured.url.startswith("rediss://")
        trusted = open_store(secured.url, ca_file=str(tmp_path / "ca.crt"))
        trusted.ping()
        assert trusted.claim("rid:k", "h", 60).won
        trusted.close()
        # Without the CA the system's roots do not know this certificate: the store is unavailable.
        with pytest.raises(StateUnavailable):
            open_store(secured.url).ping()
        # And a plaintext client gets no answer from a TLS port.
        with pytest.raises(StateUnavailable):
            open_store(secured.url.replace("rediss://", "redis://"), timeout_s=1).ping()
    finally:
        secured.stop()


def test_an_outage_fails_calls_and_the_store_recovers_on_its_own(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(redis_server.url, prefix="outage:", timeout_s=1)
    try:
        assert store.claim("rid:before", "h", 3600).won
        redis_server.stop()
        for attempt in (
            lambda: store.claim("rid:during", "h", 60),
            lambda: store.get("rid:before"),
            lambda: store.lock("x", 30, 1).__enter__(),
            lambda: store.take_token("caller", 1, 1),
            store.ping,
        ):
            with pytest.raises(StateUnavailable) as refused:
                attempt()
            assert f"127.0.0.1:{redis_server.port}" in str(refused.value)
        redis_server.start()  # the same port, the same append-only file
        # The pooled connections died with the old server: the same store object reconnects by itself.
        before = store.get("rid:before")
        assert before is not None
        assert before.state == "claimed"
        assert store.claim("rid:during", "h", 60).won
    finally:
        store.close()
        redis_server.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://cache:6380/2", ("cache", 6380, 2, False)),
        ("rediss://cache/0", ("cache", 6379, 0, True)),
        ("redis://[::1]:6379", ("::1", 6379, 0, False)),
    ],
)
def test_urls_name_host_port_db_and_tls(url: str, expected: tuple[str, int, int, bool]) -> None:
    target = parse_url(url)
    assert (target.host, target.port, target.db, target.tls) == expected


def _settings(*argv: str, env: dict[str, str] | None = None) -> config.Settings:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), env or {})


def test_the_password_file_is_read_once_and_kept_out_of_the_repr(tmp_path: Path) -> None:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    settings = _settings(
        "--state-url", "redis://127.0.0.1:6379/0",
        env={"ENCORD_GATEWAY_STATE_PASSWORD_FILE": str(tmp_path / "password")},
    )  # fmt: skip
    assert settings.state_password == PASSWORD
    assert PASSWORD not in repr(settings)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--state-url", "memory://", "--state-ca-file", "/etc/hostname"], "for a redis://"),
        (["--state-url", "redis://r:6379/0", "--state-ca-file", "/etc/hostname"], "needs a rediss://"),
        (["--state-url", "rediss://r:6379/0", "--state-ca-file", "/nonexistent.pem"], "does not exist"),
        (["--state-url", "redis://r:6379/0", "--state-prefix", "has space:"], "state_prefix must be"),
        (["--state-url", "redis://r:6379/0", "--state-timeout", "0"], "must be from 0.01 to 60"),
        (["--state-url", "redis://r:6379/0", "--state-password-file", "/nonexistent"], "does not exist"),
    ],
)
def test_bad_state_settings_are_refused_with_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(config.ConfigError) as refused:
        _settings(*argv)
    assert message in str(refused.value)


def test_serve_check_reaches_redis_with_its_password_and_never_shows_it(tmp_path: Path) -> None:
    guarded = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    key_file = tmp_path / "id_ed25519"
    write_ssh_key(key_file)
    (tmp_path / "password").write_text(PASSWORD)
    base = [*cli_argv("serve", "--check"), "--ssh-key-file", str(key_file), "--state-url", guarded.url]
    try:
        good = subprocess.run(
            [*base, "--state-password-file", str(tmp_path / "password"), "--state-prefix", "fleet-a:"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        (tmp_path / "password").write_text("wrong")
        bad = subprocess.run(
            [*base, "--state-password-file", str(tmp_path / "password")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        guarded.stop()
    assert good.returncode == 0, good.stderr
    assert f"state store: redis 127.0.0.1:{guarded.port}, keys under fleet-a:" in good.stdout
    assert bad.returncode == 2
    assert "refused the gateway's credentials" in bad.stderr
    for result in (good, bad):
        assert PASSWORD not in result.stdout + result.stderr


def test_a_release_redis_missed_is_sent_again_once_it_is_back(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    holder = RedisStore(redis_server.url, prefix="blink:", timeout_s=1)
    other = RedisStore(redis_server.url, prefix="blink:", timeout_s=1)
    try:
        with holder.lock("resource", lease_s=120, wait_s=1):
            redis_server.stop()  # the release at the end of the block cannot reach Redis
        redis_server.start()
        # Far sooner than the 120 s lease: the missed release was sent again.
        with other.lock("resource", lease_s=120, wait_s=10):
            pass
    finally:
        holder.close()
        other.close()
        redis_server.stop()


class CountingStore:
    """A RedisStore whose take_token calls are counted."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.calls = 0

    def take_token(self, bucket: str, per_second: float, burst: int) -> float:
        self.calls += 1
        return self.store.take_token(bucket, per_second, burst)


def test_rate_limits_share_a_bucket_and_fall_back_to_their_own_while_redis_is_down(tmp_path: Path) -> None:
    redis_server = RedisServer(tmp_path / "redis").start()
    now = [100.0]
    rate = Rate(per_second=0.01, burst=3)
    shared = CountingStore(RedisStore(redis_server.url, prefix="buckets:", timeout_s=1))
    replicas = [RateLimits(clock=lambda: now[0]) for _ in range(2)]
    for limits in replicas:
        limits.share(shared)
    heard: list[str] = []
    replicas[0].on_fallback = lambda: heard.append("fallback")  # the metric's hook
    try:
        # Three tokens for the caller across both replicas, not three each.
        allowed = [limits.take("vendor", rate) == 0.0 for _ in range(3) for limits in replicas]
        assert allowed.count(True) == 3
        redis_server.stop()
        calls = shared.calls
        fallback = [replicas[0].take("vendor", rate) == 0.0 for _ in range(4)]
        # This process's own bucket stands in, counted; Redis is asked once, then left alone for a while.
        assert fallback == [True, True, True, False]
        assert replicas[0].fallbacks == 4
        assert len(heard) == 4
        assert shared.calls == calls + 1
        redis_server.start()
        now[0] += SHARED_RETRY_AFTER_S
        # Back to the shared bucket, which the outage did not refill.
        assert replicas[0].take("vendor", rate) > 0
        assert shared.calls == calls + 2
        assert replicas[0].fallbacks == 4
        assert len(heard) == 4
    finally:
        shared.store.close()
        redis_server.stop()


def _gateway_connections(server: RedisServer) -> int:
    """The connections Redis sees from stores (they name themselves), once the closed ones are gone."""
    admin = server.client()
    try:
        give_up = time.monotonic() + 2
        while True:
            count = sum(1 for c in admin.client_list() if c["name"] == "encord-gateway")
            if count == 0 or time.monotonic() > give_up:
                return count
            time.sleep(0.02)
    finally:
        admin.close()


def test_close_waits_for_a_call_in_flight_and_no_call_reopens_a_connection(tmp_path: Path) -> None:
    # redis-py's close() only disconnects: a call still talking to Redis (the health ping, a lock's
    # release retried in the background) reconnected and left that connection open after close().
    redis_server = RedisServer(tmp_path / "redis").start()
    store = RedisStore(redis_server.url, prefix="close:", timeout_s=2)
    admin = redis_server.client()
    try:
        store.ping()
        # Scripts wait while writes are paused; the admin's own commands do not.
        admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        waits: list[float] = []
        in_flight = threading.Thread(target=lambda: waits.append(store.take_token("caller", 1.0, 1)))
        in_flight.start()
        give_up = time.monotonic() + 5
        # Until Redis holds the store's call (flag b: blocked by the pause).
        while not any(c["name"] == "encord-gateway" and "b" in c["flags"] for c in admin.client_list()):
            assert time.monotonic() < give_up, "the store's call never reached Redis"
            time.sleep(0.01)
        store.close()
        in_flight.join(10)
        assert waits == [0.0]  # the call in flight ended as it would have
        assert _gateway_connections(redis_server) == 0
        with pytest.raises(StateUnavailable, match="closed"):
            store.take_token("caller", 1.0, 1)
        assert _gateway_connections(redis_server) == 0
    finally:
        admin.close()
        store.close()
        redis_server.stop()
