"""Structured logging: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Fields attached with `extra={"fields": {...}}` are merged into the JSON line.
FIELDS = "fields"
# One encoder for every line: json.dumps with non-default options builds a new one per call. ASCII only,
# so that no title or Encord message can carry a line break (U+2028, U+0085) or a terminal escape.
_encode = json.JSONEncoder(ensure_ascii=True, default=str).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
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


def configure(level: str = "info") -> None:
    # The logging HOWTO's optimisations for facts no line here carries: where a call was made
    # from (a stack walk per record), and thread and process names and ids.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs full URLs and headers at DEBUG; headers carry the signature.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
