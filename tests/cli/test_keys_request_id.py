"""`keys create-*-key --request-id`: a retry gets the same key; a lost answer prints the retry command."""

from __future__ import annotations

import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lossy import CREATES, PROJECT, LossyStack, lossy_stack


@pytest.fixture
def lossy(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LossyStack]:
    # How long a lost answer settles before a retry reconciles; a test may ask for a longer one.
    settle = getattr(request, "param", "0.2")
    with lossy_stack(tmp_path, "--reconcile-after", settle) as stack:
        yield stack


def create(stack: LossyStack, title: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return stack.keys(
        "keys", "create-project-key", "--project", PROJECT, "--title", title, "--scope", "label.read", *extra
    )


def test_the_same_request_id_twice_is_one_key(lossy: LossyStack) -> None:
    request_id = str(uuid.uuid4())
    first, again = (create(lossy, "twice", "--request-id", request_id, "--json") for _ in range(2))
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    assert first.stdout == again.stdout
    assert lossy.titles()["twice"] == 1


def test_the_client_settles_a_lost_answer_by_itself_within_its_timeout(lossy: LossyStack) -> None:
    lossy.proxy.faults.only_bodies_with = CREATES
    lossy.proxy.faults.drop_after = 1.0  # every create's answer is lost; lists get through
    settled = create(lossy, "lost, then adopted", "--json")
    assert settled.returncode == 0, settled.stderr
    assert lossy.proxy.injected["drop_after"] >= 1
    assert lossy.titles()["lost, then adopted"] == 1


@pytest.mark.parametrize("lossy", ["2.0"], indirect=True)
def test_a_lost_answer_prints_the_retry_command_and_running_it_returns_the_key(lossy: LossyStack) -> None:
    lossy.proxy.faults.only_bodies_with = CREATES
    lossy.proxy.faults.drop_after = 1.0
    # A timeout shorter than the settle window: the client's retry is told REQUEST_IN_PROGRESS and
    # has no time left, so the outcome stays unknown to this command.
    lost = create(lossy, "lost once", "--timeout", "1")
    lossy.proxy.faults.drop_after = 0.0
    assert lost.returncode == 1
    assert "UNAVAILABLE" in lost.stderr or "ABORTED" in lost.stderr, lost.stderr
    assert lossy.titles()["lost once"] == 1  # Encord made it; the answer never came back
    [command] = [
        line.strip()
        for line in lost.stderr.splitlines()
        if line.strip().startswith("encord-gateway keys create-project-key ")
    ]
    argv = shlex.split(command)
    assert argv[-2] == "--request-id"
    uuid.UUID(argv[-1])
    retried = lossy.keys(*argv[1:], "--json", "--timeout", "30")  # the later flag wins
    assert retried.returncode == 0, retried.stderr
    assert lossy.titles()["lost once"] == 1  # the retry adopted it rather than minting another
    assert '"title": "lost once"' in retried.stdout


def test_a_malformed_request_id_is_a_usage_error(lossy: LossyStack) -> None:
    result = create(lossy, "bad id", "--request-id", "not-a-uuid")
    assert result.returncode == 2
    assert "--request-id: must be a UUID" in result.stderr
    assert lossy.titles()["bad id"] == 0
