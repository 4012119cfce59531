"""Logging: text and JSON formats, and the connection id on every line of a connection."""

from __future__ import annotations

import io
import json
import logging

import pytest

from netsprint.log import (JsonFormatter, LogConfig, connection_logger, setup_logging,
                           setup_logging_from)

pytestmark = pytest.mark.unit


@pytest.fixture
def netsprint_root():
    """Restore the `netsprint` logger's handlers and level after a test that sets them up."""
    root = logging.getLogger("netsprint")
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def log_lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_every_record_of_a_connection_carries_its_id(caplog):
    log = connection_logger("netsprint.p2p.session", "c0ffee01")
    with caplog.at_level(logging.DEBUG, logger="netsprint"):
        log.info("probing %d candidates", 3)
        log.warning("path dead", extra={"path": "203.0.113.10:4000"})
        log.debug("tick")
    assert len(caplog.records) == 3
    assert [record.conn for record in caplog.records] == ["c0ffee01"] * 3
    # A call's own extra fields survive next to the adapter's connection id.
    assert caplog.records[1].path == "203.0.113.10:4000"
    assert caplog.records[0].getMessage() == "probing 3 candidates"


def test_two_connections_do_not_share_ids(caplog):
    first = connection_logger("netsprint.p2p", "aaaa")
    second = connection_logger("netsprint.p2p", "bbbb", extra={"peer": "bob"})
    with caplog.at_level(logging.INFO, logger="netsprint"):
        first.info("one")
        second.info("two")
        first.info("three")
    assert [(r.getMessage(), r.conn) for r in caplog.records] == [
        ("one", "aaaa"), ("two", "bbbb"), ("three", "aaaa")]
    assert caplog.records[1].peer == "bob" and not hasattr(caplog.records[0], "peer")


def test_text_lines_carry_the_connection_in_brackets(netsprint_root):
    out = io.StringIO()
    setup_logging("DEBUG", "text", stream=out)
    log = connection_logger("netsprint.p2p.session", "1234abcd")
    log.info("state %s -> %s", "PROBING", "CONNECTED")
    log.debug("keepalive")
    logging.getLogger("netsprint.stun").info("no connection here")
    lines = log_lines(out)
    assert lines == ["netsprint.p2p.session: [1234abcd] state PROBING -> CONNECTED",
                     "netsprint.p2p.session: [1234abcd] keepalive",
                     "netsprint.stun: no connection here"]


def test_json_lines_are_one_object_each_with_conn_and_extras(netsprint_root):
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log = connection_logger("netsprint.p2p.session", "feedface")
    log.info("connected via %s", "direct", extra={"rtt_ms": 12.5, "path": ("203.0.113.20", 4000)})
    log.debug("not at INFO")
    logging.getLogger("netsprint.relay").warning("full")
    lines = log_lines(out)
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["conn"] == "feedface" and first["msg"] == "connected via direct"
    assert first["level"] == "INFO" and first["logger"] == "netsprint.p2p.session"
    assert first["rtt_ms"] == 12.5 and first["path"] == ["203.0.113.20", 4000]
    assert first["ts"].endswith("+00:00") and "T" in first["ts"]
    assert second["conn"] is None and second["level"] == "WARNING"
    # Nothing of LogRecord's own bookkeeping leaks in as a field.
    assert {"args", "msecs", "levelno", "pathname"}.isdisjoint(first)


def test_json_keeps_a_traceback_and_unserialisable_extras(netsprint_root):
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log = connection_logger("netsprint.p2p", "c1")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"where": object})
    line = json.loads(log_lines(out)[0])
    assert "RuntimeError: boom" in line["exc"]
    assert line["where"] == str(object)


def test_setup_again_replaces_the_handler_instead_of_doubling_lines(netsprint_root):
    out_text, out_json = io.StringIO(), io.StringIO()
    setup_logging("INFO", "text", stream=out_text)
    setup_logging_from(LogConfig(level="warning", format="json"), stream=out_json)
    log = logging.getLogger("netsprint.test")
    log.info("dropped: below WARNING")
    log.warning("once")
    assert log_lines(out_text) == []
    assert [json.loads(line)["msg"] for line in log_lines(out_json)] == ["once"]
    marked = [h for h in netsprint_root.handlers if getattr(h, "_netsprint_handler", False)]
    assert len(marked) == 1


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="json"):
        setup_logging("INFO", "xml")


def test_json_formatter_without_a_connection_has_null_conn():
    record = logging.LogRecord("netsprint.x", logging.INFO, __file__, 1, "hi %s", ("there",), None)
    assert json.loads(JsonFormatter().format(record))["conn"] is None


def test_the_adapter_names_its_connection_read_only():
    log = connection_logger("netsprint.p2p", "a->b")
    assert log.conn == "a->b"
    with pytest.raises(AttributeError):
        log.conn = "other"
