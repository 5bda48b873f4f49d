"""The log's lines: their exact bytes, one whole line per record from many threads, and the flush rule."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from encord_gateway import logs


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own with the gateway's handler, on a stream the test reads back."""
    log = logging.getLogger("encord_gateway.tests.log_lines")
    log.propagate, log.level = False, logging.DEBUG
    yield log
    log.handlers.clear()
    log.propagate, log.level = True, logging.NOTSET


def _attach(log: logging.Logger, stream: io.TextIOBase) -> logs.LineHandler:
    handler = logs.LineHandler(stream)  # type: ignore[arg-type]
    handler.setFormatter(logs.JsonFormatter())
    log.handlers[:] = [handler]
    return handler


def test_a_line_is_the_json_of_its_fields_in_order(logger: logging.Logger) -> None:
    stream = io.StringIO()
    _attach(logger, stream)
    before = time.time()
    logger.info("call %s", "ended", extra={logs.FIELDS: {"method": "M", "title": "a\u2028b", "n": 1.5}})
    line = stream.getvalue()
    assert line.endswith("}\n")
    assert line.count("\n") == 1
    parsed = json.loads(line)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(before)))
    # The prefix cache must give what strftime gives (allowing the second to tick over meanwhile).
    assert parsed["time"][:19] in (stamp, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(before) + 1)))
    assert parsed["time"][19:20] == "."
    assert parsed["time"].endswith("Z")
    assert len(parsed["time"]) == 24
    expected = {"time": parsed["time"], "level": "info", "logger": logger.name, "message": "call ended"}
    expected |= {"method": "M", "title": "a\u2028b", "n": 1.5}
    assert line == json.dumps(expected, ensure_ascii=True) + "\n"
    assert "\u2028" not in line  # escaped: no Unicode line break inside a line


def test_lines_from_many_threads_come_out_whole(logger: logging.Logger) -> None:
    stream = io.StringIO()
    _attach(logger, stream)
    start = threading.Barrier(8)

    def burst(n: int) -> None:
        start.wait()
        for i in range(300):
            logger.info("line", extra={logs.FIELDS: {"thread": n, "i": i, "pad": "x" * 500}})

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 * 300
    seen = {(parsed["thread"], parsed["i"]) for parsed in map(json.loads, lines)}
    assert len(seen) == 8 * 300


class _Counting(io.StringIO):
    def __init__(self, line_buffering: bool) -> None:
        super().__init__()
        self._line_buffering = line_buffering
        self.flushes = 0

    @property
    def line_buffering(self) -> bool:
        return self._line_buffering

    def flush(self) -> None:
        self.flushes += 1


@pytest.mark.parametrize(("line_buffered", "flushes"), [(True, 0), (False, 2)])
def test_a_stream_is_flushed_unless_it_flushes_each_line_itself(
    logger: logging.Logger, line_buffered: bool, flushes: int
) -> None:
    stream = _Counting(line_buffered)
    _attach(logger, stream)
    logger.warning("one")
    logger.warning("two")
    assert stream.getvalue().count("\n") == 2
    assert stream.flushes == flushes


def test_a_failing_stream_is_reported_not_raised(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = _attach(logger, Broken())
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    logger.error("lost")
    assert [record.getMessage() for record in failed] == ["lost"]
