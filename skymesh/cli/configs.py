"""The configuration files of `skymesh relay --config FILE` and `skymesh controller --config
FILE`: their fields (each filling one command-line option; flags given override the file),
the file `--config` names applied under the flags, and the files the local mesh writes.

The format, with a complete example of each, is in the README ("Configuration files").
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from controller.election import MAX_TTL_S
from skymesh import config
from skymesh.cli.logformat import FORMATS as LOG_FORMATS
from skymesh.config import Field

REGION_ID = r"[a-z0-9-]{2,32}"
NODE_ID = r"[A-Za-z0-9_.-]{1,64}"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _edge_limits(value: Any, base: Path) -> str:
    """`{joins-per-source-per-s: 20, ...}` as the flag's "name=value,...", checked by the
    relay's own parser."""
    from relay.edgesession import parse_limits

    if not isinstance(value, dict) or not value:
        raise config.Invalid("expected a mapping of limit names to numbers, e.g. "
                             "{joins-per-source-per-s: 20}")
    for k, v in value.items():
        if not isinstance(k, str) or "=" in k or "," in k:
            raise config.Invalid(f"{k!r} is not a limit's name")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise config.Invalid(f"{k}: expected a number, got {v!r}")
    text = ",".join(f"{k}={v}" for k, v in value.items())
    try:
        parse_limits(text)
    except ValueError as e:
        raise config.Invalid(str(e)) from None
    return text


def _etcd(value: Any, base: Path) -> str:
    """etcd endpoints, a list of HOST:PORT or "etcd://A,B", as --store takes them."""
    if isinstance(value, str) and value.startswith("etcd://"):
        value = value[len("etcd://"):]
    return "etcd://" + config.host_ports(value, base)


def _tls_fields(whose: str) -> list[Field]:
    return [
        Field("tls.dir", "certs", config.path, "where the mesh's certificates are"),
        Field("tls.ca", "ca", config.path, "trust bundle: the mesh's CA certificates"),
        Field("tls.cert", "cert", config.path, f"{whose} certificate"),
        Field("tls.key", "key", config.path, "its private key"),
        Field("tls.insecure", "insecure", config.boolean,
              "INSECURE: plaintext gRPC without certificates"),
        Field("log.level", "log_level", config.choice(*LOG_LEVELS), "log level"),
        Field("log.format", "log_format", config.choice(*LOG_FORMATS),
              "log lines as text, or one JSON object a line"),
        Field("metrics.listen", "metrics_listen", config.host_port,
              "where Prometheus metrics are served (HTTP, /metrics)"),
    ]


RELAY_CONFIG = config.Schema("relay", [
    Field("region", "region", config.text(REGION_ID, "a region id"), "region id, as in the "
          "catalogue (required)"),
    Field("node", "node", config.text(NODE_ID, "a node id"), "node id (default: the one its "
          "certificate names)"),
    Field("controllers", "controller", config.host_ports, "every controller replica, "
          "HOST:PORT (required)"),
    Field("listen", "bind", config.host_port, "UDP address for probes and fabric"),
    Field("advertise", "advertise", config.host, "the address peers and clients reach it at"),
    Field("wan", "wan", config.path, "emulated WAN model (the local mesh)"),
    Field("edge.port", "edge_port", config.number(0, 65535, integer=True),
          "UDP port of the QUIC client edge"),
    Field("edge.cert", "tls_cert", config.path, "the client edge's certificate"),
    Field("edge.key", "tls_key", config.path, "its private key"),
    Field("edge.limits", "edge_limits", _edge_limits, "the client edge's flood limits"),
    Field("history.messages", "history_messages",
          config.number(0, 100_000, integer=True),
          "chat history kept per channel, messages (0: none)"),
    Field("history.max_age", "history_age", config.duration,
          "... for at most this long"),
    Field("history.db", "history_db", config.path,
          "SQLite file keeping the history across restarts"),
    Field("health.listen", "health_listen", config.host_port,
          "where the gRPC health service is served (plaintext)"),
    *_tls_fields("the relay's"),
])


def _controller_fields() -> list[Field]:
    return [
        Field("listen", "listen", config.host_port, "gRPC address"),
        Field("advertise", "advertise", config.host_port, "where the other replicas reach "
              "this one"),
        Field("replica", "replica", config.text(NODE_ID, "a replica id"), "this replica's id"),
        Field("regions", "regions", config.path, "region catalogue directory"),
        Field("only", "only", config.names(REGION_ID, "region ids"), "region ids to serve"),
        Field("policy", "policy", config.path, "residency policy"),
        Field("apps", "apps", config.path, "apps' token public keys"),
        Field("state", "state", config.path, "operator changes kept in a file"),
        Field("store.etcd", "store", _etcd, "etcd endpoints the state is kept on"),
        Field("store.election_ttl", "election_ttl", config.number(0, MAX_TTL_S, low_open=True),
              "lease of the leader's election key, seconds"),
        Field("resolver.listen", "resolve_listen", config.host_port,
              "where the EdgeResolver is served to clients"),
        Field("resolver.geoip_db", "geoip_db", config.path, "MaxMind-format City database"),
        Field("dashboard.listen", "dashboard_listen", config.host_port,
              "where the live map is served (HTTPS, for admin certificates)"),
        Field("fabric.keys", "fabric_keys", config.path, "fabric keys file"),
        Field("fabric.rotation", "fabric_key_rotation", config.duration,
              "rotation period of the fabric key (0: never)"),
        Field("fabric.overlap", "fabric_key_overlap", config.positive,
              "a rotation's overlap, seconds"),
        Field("probe.interval", "probe_interval", config.positive, "seconds between probes"),
        Field("probe.neighbour_interval", "neighbour_probe_interval", config.positive,
              "seconds between probes of the links traffic uses"),
        Field("probe.down_after", "down_after", config.positive_int,
              "missed probes in a row that make a link down"),
        Field("probe.degraded_loss", "degraded_loss", config.number(0, 1, low_open=True),
              "probe loss above which a link is degraded"),
        Field("probe.degraded_jitter_ms", "degraded_jitter_ms", config.positive,
              "jitter above which a link is degraded"),
        Field("probe.partial_mesh_above", "partial_mesh_above", config.positive_int,
              "relays above which each measures a part of the mesh"),
        Field("probe.nearest", "nearest", config.positive_int,
              "regions each relay of a partial mesh measures at all times"),
        Field("probe.sample_every", "sample_every", config.positive,
              "in a partial mesh, every other link is measured this often"),
        Field("probe.full_report_interval", "full_report_interval", config.positive,
              "relays report every link they measure this often"),
        Field("routing.hysteresis", "hysteresis", config.number(0),
              "fraction of a route's cost a new path must be better by"),
        Field("routing.hysteresis_ms", "hysteresis_ms", config.number(0),
              "... and ms it must be better by"),
        Field("routing.resync_hold", "resync_hold", config.number(0),
              "seconds to hold pushes after a restart among relays holding tables"),
        *_tls_fields("the controller's"),
    ]


CONTROLLER_CONFIG = config.Schema("controller", _controller_fields())


def add_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """--config FILE and --check-config for `skymesh relay` or `skymesh controller`."""
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help=f"the {what}'s configuration file (YAML; the README's "
                        "Configuration files); flags given override it")
    parser.add_argument("--check-config", action="store_true",
                        help="check the configuration (file, flags, certificates) and exit")


def apply(parser: argparse.ArgumentParser, top: argparse.ArgumentParser,
          argv: list[str] | None, schema: config.Schema, path: Path) -> argparse.Namespace:
    """The arguments again with the file's settings under the flags: its values become the
    command's defaults, so what the command line gives wins. Raises ConfigError."""
    values = schema.load(path)
    parser.set_defaults(**values)
    args = top.parse_args(argv)
    args.config_values = values
    return args


def dump(settings: dict[str, Any], header: str = "") -> str:
    """YAML text of nested `settings` (paths as strings), with a comment header."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    body = yaml.safe_dump(plain(settings), sort_keys=False, default_flow_style=False)
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + body


def write(path: Path, schema: config.Schema, settings: dict[str, Any],
          header: str = "") -> Path:
    """Write a configuration file (0600: it names key files and is the process's user's
    business only) and load it back by its schema, so the local mesh never starts a process
    on a file it would refuse (ConfigError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump(settings, header), encoding="utf-8")
    path.chmod(0o600)
    schema.load(path)
    return path
