"""`--log-format json` (skymesh/cli/logformat.py): one JSON object a line with the time in
RFC 3339 UTC, level, logger, message, the process's fields, exception text and `extra=`
fields; and the processes' stderr, every line of it JSON, as a log pipeline reads it."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import subprocess
import sys
import time

import pytest
from support import ROOT, run_cli

from skymesh.cli import logformat
from skymesh.cli.common import setup_logging


def logger_to(stream: io.StringIO, fields: dict) -> logging.Logger:
    log = logging.getLogger(f"skymesh.test.{id(stream)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logformat.JsonFormatter(fields))
    log.handlers = [handler]
    return log


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_an_event_is_one_json_line_with_the_processes_fields():
    out = io.StringIO()
    fields = {"process": "relay", "region": "london", "node": ""}
    log = logger_to(out, fields)
    log.info("applied routes v%d\n(%d destinations)", 7, 44)
    fields["node"] = "n1"  # known later: read at every record
    log.warning("ünïcode and \"quotes\"")
    first, second = lines(out)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert abs(time.mktime(time.strptime(first["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
               - time.timezone - time.time()) < 60
    assert first == {"ts": first["ts"], "level": "info", "logger": log.name,
                     "msg": "applied routes v7\n(44 destinations)", "process": "relay",
                     "region": "london", "pid": first["pid"]}  # an empty field left out
    assert first["pid"] > 0 and "node" not in first
    assert second["node"] == "n1" and second["level"] == "warning"
    assert second["msg"] == "ünïcode and \"quotes\""


def test_exceptions_and_extra_fields_are_kept():
    out = io.StringIO()
    log = logger_to(out, {"process": "controller", "replica": "c2"})
    try:
        raise ValueError("bad row")
    except ValueError:
        log.exception("route computation failed", extra={
            "version": 12, "regions": ["a", "b"], "took": 0.5, "replica": "c9",
            "where": object()})
    log.info("with a stack", stack_info=True)
    event, stacked = lines(out)
    assert event["level"] == "error" and event["msg"] == "route computation failed"
    assert "Traceback" in event["exc"] and "ValueError: bad row" in event["exc"]
    assert (event["version"], event["regions"], event["took"]) == (12, ["a", "b"], 0.5)
    # a name the formatter's own fields hold is kept beside them
    assert event["replica"] == "c2" and event["extra_replica"] == "c9"
    assert event["where"].startswith("<object object")  # not JSON: as text
    assert event["process"] == "controller"
    assert "test_exceptions_and_extra_fields_are_kept" in stacked["stack"]
    assert "exc" not in stacked


def test_rfc3339_is_utc_to_the_millisecond():
    assert logformat.rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert logformat.rfc3339(1_700_000_000.9999) == "2023-11-14T22:13:20.999Z"


def test_setup_logging_gives_the_process_by_default_and_returns_the_fields(monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    fields = setup_logging("info", "relay[london]", "json", region="london")
    try:
        assert fields == {"process": "relay", "region": "london"}
        [handler] = root.handlers
        assert isinstance(handler.formatter, logformat.JsonFormatter)
        assert handler.formatter.fields is fields
    finally:
        root.handlers = []


# -- the processes ---------------------------------------------------------------------------

def json_lines(stderr: str) -> list[dict]:
    events = [json.loads(line) for line in stderr.splitlines()]  # every line, or it fails
    assert events, "no log events on stderr"
    return events


@pytest.mark.processes
def test_a_relay_checking_its_configuration_logs_json():
    proc = run_cli("relay", "--check-config", "--insecure", "--region", "london",
                   "--controller", "127.0.0.1:7400", "--node", "n1", "--log-format", "json",
                   timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stderr)
    assert any("INSECURE" in e["msg"] for e in events)
    for e in events:
        assert (e["process"], e["region"], e["node"]) == ("relay", "london", "n1")


@pytest.mark.processes
def test_a_controller_logs_json_from_start_to_end(tmp_path):
    from support import write_regions

    regions = write_regions(tmp_path / "regions", {"aa": (50.0, 8.0), "bb": (48.0, 2.0)})
    proc = subprocess.Popen(
        [sys.executable, "-m", "skymesh", "controller", "--insecure", "--listen",
         "127.0.0.1:0", "--regions", str(regions), "--replica", "c7", "--log-format",
         "json"], stderr=subprocess.PIPE, text=True, cwd=ROOT)
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "serving 2 regions" in line:
                break
        time.sleep(1.0)  # its signal handlers are set just after it says so
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    events = json_lines("".join(seen) + rest)
    assert proc.returncode == 0
    for e in events:
        assert e["process"] == "controller" and e["replica"] == "c7" and e["pid"] == proc.pid
        assert {"ts", "level", "logger", "msg"} <= e.keys()
    said = [e["msg"] for e in events]
    assert any(m.startswith("serving 2 regions") for m in said)
    assert any("NOT_SERVING (shutting down)" in m for m in said)


@pytest.mark.parametrize("argv", [
    ["controller"], ["relay"], ["up"], ["drill", "kill-controller"], ["pub", "ch"],
    ["sub", "ch"], ["demo"]])
def test_every_command_that_logs_takes_the_format(argv):
    from skymesh.cli import main

    assert main.parser().parse_args(argv).log_format == "text"
    assert main.parser().parse_args([*argv, "--log-format", "json"]).log_format == "json"
    with pytest.raises(SystemExit):
        main.parser().parse_args([*argv, "--log-format", "xml"])
