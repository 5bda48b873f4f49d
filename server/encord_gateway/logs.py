"""Structured logging: one JSON object per line on stderr."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

from encord_gateway import jsontext

# Fields attached with `extra={"fields": {...}}` are merged into the JSON line.
FIELDS = "fields"
# One encoder for every line (jsontext: json.dumps builds one per call). ASCII only, so that no title
# or Encord message can carry a line break (U+2028, U+0085) or a terminal escape.
_encode = jsontext.encoder(default=str)
# (second, its "YYYY-MM-DDTHH:MM:SS"): strftime once a second, not once a line (every call logs one).
# Swapped whole, so a thread reads either the old pair or the new one.
_second: tuple[int, str] = (-1, "")


def _time(created: float, msecs: float) -> str:
    global _second
    second = int(created)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            # Exception texts are the gateway's own (GatewayError never holds a
            # secret); tracebacks of bugs go out so that they can be fixed.
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line)


class LineHandler(logging.StreamHandler[IO[str]]):
    """A StreamHandler that formats outside its lock and writes each line once.

    StreamHandler formats, writes and flushes under one lock (taken twice): every other thread
    that logs meanwhile waits for the JSON encoding too. The line is formatted first, then written
    under a plain lock; a line-buffered stream (stderr) writes it on the newline, so it is flushed
    only when the stream does not do that itself.
    """

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._write_lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            self.write_line(self.format(record))
        except RecursionError:  # as logging's own emit(): a loop must not pass for a log failure
            raise
        except Exception:
            self.handleError(record)
        return True

    def write_line(self, text: str) -> None:
        stream = self.stream
        with self._write_lock:
            stream.write(text + self.terminator)
            if not getattr(stream, "line_buffering", False):
                stream.flush()


def info(logger: logging.Logger, message: str, fields: dict[str, Any]) -> None:
    """`logger.info(message, extra={FIELDS: fields})`, the same line, cheaper when nothing else would see it.

    The line of every call goes through here. When the only handler it would reach is the gateway's
    own LineHandler on the root logger, with no filters on the way, the line is written without a
    LogRecord and the logging machinery (a third of a call's logging cost); any other set-up (a
    test's capture, an extra handler, a filter) gets the ordinary path.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _only_handler(logger)
    if handler is None:
        logger.info(message, extra={FIELDS: fields})
        return
    now = time.time()
    line: dict[str, Any] = {
        "time": _time(now, (now - int(now)) * 1000),
        "level": "info",
        "logger": logger.name,
        "message": message,
    }
    line.update(fields)
    try:
        handler.write_line(_encode(line))
    except RecursionError:
        raise
    except Exception:
        logger.info(message, extra={FIELDS: fields})  # logging's own path reports what went wrong


def _only_handler(logger: logging.Logger) -> LineHandler | None:
    """The root's LineHandler with JsonFormatter, if it is the one handler `logger`'s records reach."""
    node: logging.Logger | None = logger
    while node is not None and node.parent is not None:
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    root = logging.root
    if node is not root or root.filters or len(root.handlers) != 1:
        return None
    handler = root.handlers[0]
    if type(handler) is not LineHandler or handler.filters or handler.level > logging.INFO:
        return None
    return handler if type(handler.formatter) is JsonFormatter else None


def configure(level: str = "info") -> None:
    # The logging HOWTO's optimisations for facts no line here carries: where a call was made
    # from (a stack walk per record), and thread and process names and ids.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = LineHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs full URLs and headers at DEBUG; headers carry the signature.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
