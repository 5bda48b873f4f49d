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


@pytest.fixture
def root_stream() -> Iterator[io.StringIO]:
    """The root logger with the gateway's handler alone, as `logs.configure` leaves it, on a stream."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    stream = io.StringIO()
    _attach(root, stream)
    root.setLevel(logging.INFO)
    yield stream
    root.handlers[:] = saved
    root.setLevel(level)


def _without_time(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert isinstance(line.pop("time"), str)
    return lines


def test_the_direct_call_line_is_the_line_logging_writes(root_stream: io.StringIO) -> None:
    log = logging.getLogger("encord_gateway.tests.direct")
    fields = {"method": "M", "title": "a\u2028b", "n": 1.5, "trace_id": "f" * 32}
    log.info("call", extra={logs.FIELDS: fields})
    logs.info(log, "call", fields)
    first, second = root_stream.getvalue().splitlines()
    # Byte for byte after the time: the same fields, order and escapes.
    assert first[first.index('"level"') :] == second[second.index('"level"') :]
    assert first[:9] == second[:9] == '{"time": '


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("where", ["root handler", "logger handler", "logger filter", "handler filter"])
def test_any_other_set_up_gets_the_record_through_logging(root_stream: io.StringIO, where: str) -> None:
    log = logging.getLogger("encord_gateway.tests.direct_fallback")
    capture = Capture()
    root = logging.getLogger()
    seen: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return True

    try:
        if where == "root handler":
            root.addHandler(capture)
        elif where == "logger handler":
            log.addHandler(capture)
        elif where == "logger filter":
            log.addFilter(keep)
        else:
            root.handlers[0].addFilter(keep)
        logs.info(log, "call", {"method": "M"})
    finally:
        root.removeHandler(capture)
        log.handlers.clear()
        log.filters.clear()
        root.handlers[0].filters.clear()
    if where.endswith("handler"):
        assert [r.getMessage() for r in capture.records] == ["call"]
        assert getattr(capture.records[0], logs.FIELDS) == {"method": "M"}
    else:
        assert seen == ["call"]
    assert _without_time(root_stream.getvalue()) == [
        {"level": "info", "logger": log.name, "message": "call", "method": "M"}
    ]


def test_the_direct_call_line_honours_the_level(root_stream: io.StringIO) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    logs.info(logging.getLogger("encord_gateway.tests.direct_level"), "call", {"method": "M"})
    assert root_stream.getvalue() == ""
