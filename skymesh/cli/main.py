"""`skymesh`: the one command. Each subcommand imports what it needs only."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if not hasattr(args, "run"):
        top.print_help()
        return 2
    if getattr(args, "config", None) is not None:
        from skymesh.cli import configs
        from skymesh.config import ConfigError

        try:
            args = configs.apply(args.config_parser, top, argv, args.config_schema,
                                 args.config)
        except ConfigError as e:
            print(f"skymesh: not starting, --config {args.config} is refused:\n{e}",
                  file=sys.stderr)
            return 2
    if getattr(args, "controller_client", False):
        from skymesh.cli import admin

        admin.configure(args)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `skymesh admin links | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skymesh", description="skymesh: a global edge relay "
                                "network and its routing control plane")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    from skymesh.cli import (
        admin,
        call,
        certs,
        dashboard,
        drill,
        resolve,
        routes,
        serve,
        streams,
        tokens,
        up,
    )

    for group in (up, serve, routes, admin, dashboard, resolve, drill, tokens, streams, call,
                  certs):
        group.add_parsers(sub)
    return p
