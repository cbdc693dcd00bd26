"""`--log-format json`: one JSON object a line for each log event, with the fields a log
pipeline indexes (Loki, Elasticsearch, Cloud Logging and the like):

    {"ts": "2025-06-01T12:00:00.123Z", "level": "info", "logger": "skymesh.relay",
     "msg": "applied routes v7 (44 destinations)", "process": "relay", "region": "london",
     "node": "n1", "pid": 4242}

`ts` is RFC 3339 in UTC with milliseconds, `level` the lower-case level name, `msg` the
message with its arguments; `process` (relay, controller, or the client command's name) and
the process's own fields (`region` and `node` of a relay, `replica` of a controller) come
from `setup_logging`; `exc` holds an exception's traceback, `stack` a stack given with
`stack_info`. Fields passed with `extra=` are kept as they are (as JSON, else as text); one
whose name is taken by the fields above is kept as `extra_NAME`."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import MutableMapping
from typing import Any

FORMATS = ("text", "json")

# what every LogRecord has: not an `extra=` field
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def rfc3339(created: float) -> str:
    """A LogRecord's time as RFC 3339 in UTC, to the millisecond: 2025-06-01T12:00:00.123Z."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)  # truncated, as logging's own msecs
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _plain(value: Any) -> Any:
    """`value` as JSON holds it: itself if it is already JSON, else its text."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON. `fields` (process, region, node, replica...) are
    the process's: read at every record, so that a field known only later (a relay's node id
    drawn at random) is added to the same mapping once known."""

    def __init__(self, fields: MutableMapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = fields if fields is not None else {}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update((k, v) for k, v in self.fields.items() if v not in (None, ""))
        out["pid"] = record.process
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key in _RECORD_FIELDS or key.startswith("_"):
                continue
            out["extra_" + key if key in out else key] = _plain(value)
        return json.dumps(out, default=str)
