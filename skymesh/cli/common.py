"""What every command shares: errors to stderr, logging, the event loop and signals,
catalogue and policy inputs, durations."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path


def fail(message: str, code: int = 2) -> int:
    """`message` on stderr (with JSON logs, as an error event of them); returns `code`."""
    say_on_stderr(message, logging.ERROR)
    return code


def say_on_stderr(message: str, level: int = logging.WARNING) -> None:
    """A line for the operator on stderr, `skymesh: MESSAGE`; with --log-format json, an
    event of the log (one JSON object a line, nothing else on stderr)."""
    if json_logs():
        logging.getLogger("skymesh").log(level, message)
    else:
        print(f"skymesh: {message}", file=sys.stderr)


def json_logs() -> bool:
    """The process logs JSON (`setup_logging` with --log-format json)."""
    from skymesh.cli.logformat import JsonFormatter

    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def setup_logging(level: str, name: str, log_format: str = "text", **fields: str) -> dict:
    """The process's logging, to stderr: lines `TIME NAME LEVEL MESSAGE`, or with
    `log_format` "json" one JSON object a line (skymesh/cli/logformat.py) with `fields`: the
    process (default: `name` up to a `[`), a relay's region and node, a controller's
    replica. Returns those fields, the mapping the formatter reads: a field known only later
    is added to it."""
    from skymesh.cli.logformat import JsonFormatter

    fields = {"process": name.partition("[")[0], **fields}
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(fields))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {name} %(levelname)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    return fields


def add_log_format(parser: argparse.ArgumentParser) -> None:
    """--log-format, for every command that logs."""
    from skymesh.cli.logformat import FORMATS

    parser.add_argument("--log-format", default="text", type=str.lower, choices=FORMATS,
                        help="text lines, or one JSON object a line with the process's "
                        "region, node or replica (default: %(default)s)")


def load_inputs(directory: Path | None, only: str | None, policy_file: Path | None):
    """The catalogue (or its --only part) and the residency policy restricted to it: the
    policy given, else `policy.yaml` beside the region files, else one zone of everything.
    Raises CatalogueError or PolicyError."""
    from skymesh.catalogue import POLICY_FILE, load_catalogue, select
    from skymesh.cli import mesh
    from skymesh.policy import allow_all, load_policy

    directory = directory or mesh.default_regions_dir()
    catalogue = load_catalogue(directory)
    if policy_file is None and (Path(directory) / POLICY_FILE).is_file():
        policy_file = Path(directory) / POLICY_FILE
    policy = load_policy(policy_file, catalogue) if policy_file else allow_all(catalogue)
    regions = catalogue
    if only:
        regions = select(catalogue, [x.strip() for x in only.split(",") if x.strip()])
    return regions, policy.restrict(regions)


# -- processes ---------------------------------------------------------------------------------

def run_loop(coro):
    """Run `coro` to its end on uvloop where there is one; returns its result."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


EXIT_DEADLINE_S = 3.0


async def until_signalled(work) -> None:
    """Run `work` until SIGTERM or SIGINT (then cancel it) or until it ends (raising what it
    raised). Once signalled the process exits within EXIT_DEADLINE_S even if tearing down
    hangs, as grpc.aio's shutdown sometimes does (grpc/grpc#40989)."""
    task = asyncio.ensure_future(work)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        stop.set()
        watchdog = threading.Timer(EXIT_DEADLINE_S, _exit_late)
        watchdog.daemon = True
        watchdog.start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    stopper.cancel()
    if task in done:
        task.result()


def _exit_late() -> None:
    logging.getLogger("skymesh").warning(
        "shutdown did not finish in %.0f s; exiting anyway", EXIT_DEADLINE_S)
    logging.shutdown()
    os._exit(0)


def parse_ttl(text: str) -> int:
    """Seconds from `90s`, `15m`, `1h`, `7d` or plain seconds; ValueError otherwise."""
    from skymesh.config import seconds

    try:
        return seconds(text)
    except ValueError:
        raise ValueError(f"--ttl: expected e.g. 90s, 15m, 1h, 7d or seconds, got {text!r}") \
            from None


def split_list(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]
