"""Structured logs write the fields a call site passes, and of an exception only its type: never a payload."""

from __future__ import annotations

import json
import logging
import sys

from spendstream.common.logs import JsonFormatter


def _record(msg: str, extra: dict[str, object] | None = None, exc: BaseException | None = None) -> logging.LogRecord:
    logger = logging.getLogger("spendstream.test")
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, msg, (), exc_info, extra=extra)


def test_a_line_is_one_json_object_with_the_fields_passed() -> None:
    line = JsonFormatter().format(_record("batch stored", {"batch_id": "b1", "events": 3}))
    doc = json.loads(line)
    assert {k: doc[k] for k in ("level", "logger", "msg", "batch_id", "events")} == {
        "level": "warning",
        "logger": "spendstream.test",
        "msg": "batch stored",
        "batch_id": "b1",
        "events": 3,
    }
    assert doc["ts"].endswith("+00:00")


def test_an_exception_is_logged_by_its_type_only() -> None:
    try:
        raise ValueError("customer_id=cust-42 prompt=secret text")
    except ValueError as exc:
        line = JsonFormatter().format(_record("refused", exc=exc))
    assert json.loads(line)["error"] == "ValueError"
    assert "cust-42" not in line and "secret text" not in line and "Traceback" not in line


def test_values_json_cannot_encode_are_written_as_text() -> None:
    doc = json.loads(JsonFormatter().format(_record("x", {"path": sys})))
    assert doc["path"] == str(sys)
