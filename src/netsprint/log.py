"""Logging set-up shared by the CLI and servers, and per-connection loggers.

Library modules only call `logging.getLogger(__name__)` (or `connection_logger` for code
that serves one connection); the CLI decides where logs go and in which format:

- `text`: rich on stderr, `name: [conn] message`;
- `json`: one JSON object per line, `{"ts", "level", "logger", "conn", "msg", ...extras}`,
  for `jq` and log collectors.

The connection id travels as a record attribute (`record.conn`), not inside the message, so
each format renders it its own way and a test (or a collector) can read it as a field.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import IO, Any, Literal, get_args

from rich.console import Console
from rich.logging import RichHandler

ROOT_LOGGER = "netsprint"
LogFormat = Literal["text", "json"]
LOG_FORMATS = get_args(LogFormat)
_HANDLER_MARK = "_netsprint_handler"  # attribute set on the one handler setup_logging owns

# Every attribute a plain LogRecord has (plus what formatters add): anything else on a
# record came from `extra=` and belongs in the JSON line as its own field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName", "conn"}


@dataclass(frozen=True)
class LogConfig:
    """The `[log]` section of the config file: how much to log and in which format."""

    level: str = "INFO"
    format: LogFormat = "text"


class TextFormatter(logging.Formatter):
    """`name: [conn] message`; the `[conn]` part only on records that carry a connection."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        conn = getattr(record, "conn", None)
        if conn is None:
            return f"{record.name}: {text}"
        return f"{record.name}: [{conn}] {text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts (ISO 8601, UTC), level, logger, conn
    (null outside a connection), msg, every `extra=` field, and `exc` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line: dict[str, Any] = {
            "ts": created.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "conn": getattr(record, "conn", None),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        # default=str: an extra field that JSON cannot hold (a Path, an enum) still logs.
        return json.dumps(line, default=str, ensure_ascii=False)


def _make_handler(format: str, stream: IO[str] | None) -> logging.Handler:
    if format == "json":
        handler: logging.Handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif stream is not None:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter())
    else:
        handler = RichHandler(console=Console(stderr=True), show_path=False,
                              rich_tracebacks=False)
        handler.setFormatter(TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    return handler


def setup_logging(level: str | int = "INFO", format: str = "text",
                  stream: IO[str] | None = None) -> logging.Handler:
    """Send netsprint's logs to stderr (or `stream`) in `format`, "text" or "json".

    Calling it again replaces the handler it installed before (a new level or format),
    so there is never more than one and no line is printed twice. Returns the handler.
    """
    if format not in LOG_FORMATS:
        raise ValueError(f"log format {format!r}: one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger(ROOT_LOGGER)
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = _make_handler(format, stream)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def setup_logging_from(config: LogConfig, stream: IO[str] | None = None) -> logging.Handler:
    """`setup_logging` with the `[log]` section of a loaded config."""
    return setup_logging(config.level, config.format, stream)


class ConnectionAdapter(logging.LoggerAdapter):
    """A logger bound to one connection: every record it makes carries `conn`.

    Unlike the stdlib adapter (which, before Python 3.13, replaces a call's `extra=`), the
    call's own extra fields are kept; `conn` always comes from the adapter.
    """

    def process(self, msg: Any,
                kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**kwargs.get("extra", {}), **self.extra}
        return msg, kwargs

    @property
    def conn(self) -> str:
        """The connection id (read-only: a logger stays bound to its connection)."""
        return self.extra["conn"]


def connection_logger(name: str, conn: str,
                      extra: Mapping[str, Any] | None = None) -> ConnectionAdapter:
    """The logger `name` (e.g. `__name__`), with connection id `conn` on every line.

    `extra` adds fixed fields to every record too (e.g. the remote peer's id).
    """
    return ConnectionAdapter(logging.getLogger(name), {**(extra or {}), "conn": conn})
