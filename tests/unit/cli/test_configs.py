"""The configuration files of `skymesh relay --config FILE` and `skymesh controller --config
FILE` (skymesh/cli/configs.py): every option has its field and every field its option, the
file's values sit under the flags, the README's examples load, and `--check-config` says what
is valid and refuses what is not, naming the file and each field."""

from __future__ import annotations

import argparse
import re
import stat
from pathlib import Path

import pytest
from support import ROOT, run_cli

from skymesh.cli import configs, main
from skymesh.config import ConfigError

# not settings: what the file is, whether to only check it, and help
NOT_SETTINGS = {"config", "check_config", "help"}
SCHEMAS = {"relay": configs.RELAY_CONFIG, "controller": configs.CONTROLLER_CONFIG}


def subparser(name: str) -> argparse.ArgumentParser:
    top = main.parser()
    [subs] = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    return subs.choices[name]


def options(name: str) -> dict[str, argparse.Action]:
    """The subcommand's options by dest (settings only)."""
    return {a.dest: a for a in subparser(name)._actions
            if a.option_strings and a.dest not in NOT_SETTINGS}


def parsed(argv: list[str]) -> argparse.Namespace:
    """`argv` parsed as main() does: with --config, the file's values under the flags."""
    top = main.parser()
    args = top.parse_args(argv)
    if args.config is not None:
        args = configs.apply(args.config_parser, top, argv, args.config_schema, args.config)
    return args


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- every option has its field, every field its option ---------------------------------------

@pytest.mark.parametrize("command", SCHEMAS)
def test_every_option_is_a_field_and_every_field_an_option(command):
    schema = SCHEMAS[command]
    dests = {f.dest for f in schema.fields.values()}
    flags = options(command)
    assert "certs" in flags and schema.fields["tls.dir"].dest == "certs"
    no_field = sorted(set(flags) - dests)
    assert not no_field, f"`skymesh {command}` options without a field in the file: " \
        f"{[flags[d].option_strings[0] for d in no_field]}"
    no_option = sorted(dests - set(flags))
    assert not no_option, f"fields of the {command} file that fill no option: {no_option}"


@pytest.mark.parametrize("command", SCHEMAS)
def test_fields_have_one_dest_each_and_say_what_they_are(command):
    schema = SCHEMAS[command]
    dests = [f.dest for f in schema.fields.values()]
    assert len(dests) == len(set(dests)), sorted(d for d in dests if dests.count(d) > 1)
    for path, field in schema.fields.items():
        assert field.path == path and field.help, path
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", path), path
    if command == "controller":  # (the relay's list is not kept apart; the controller's is)
        fields = configs._controller_fields()
        assert len(fields) == len(schema.fields), "a path given twice: one field is lost"


# -- a complete file, under the flags ----------------------------------------------------------

RELAY_FILE = """\
region: london
node: n2
controllers: [10.0.0.1:7400, 10.0.0.2:7400]
listen: 0.0.0.0:7000
advertise: 203.0.113.7
wan: wan.json
edge:
  port: 4433
  cert: edge.pem
  key: /etc/edge/edge.key
  limits: {joins-per-source-per-s: 20, sessions-per-source: 64}
history: {messages: 50, max_age: 2h, db: history.db}
tls:
  dir: certs
  ca: certs/bundle.pem
  cert: certs/relay-london-n2.pem
  key: certs/relay-london-n2.key
  insecure: true
log:
  level: DEBUG
  format: JSON
metrics:
  listen: 127.0.0.1:9400
health:
  listen: 127.0.0.1:9500
"""

CONTROLLER_FILE = """\
listen: 0.0.0.0:7400
advertise: 10.0.0.1:7400
replica: c2
regions: regions
only: [london, tokyo]
policy: policy.yaml
apps: apps.yaml
state: state.json
store:
  etcd: [10.0.0.1:2379, 10.0.0.2:2379]
  election_ttl: 4
resolver:
  listen: 0.0.0.0:7443
  geoip_db: /var/lib/GeoLite2-City.mmdb
fabric:
  keys: fabric.keys
  rotation: 12h
  overlap: 10
probe:
  interval: 2.5
  neighbour_interval: 0.5
  down_after: 4
  degraded_loss: 0.2
  degraded_jitter_ms: 45
  partial_mesh_above: 50
  nearest: 6
  sample_every: 20
  full_report_interval: 60
routing:
  hysteresis: 0.2
  hysteresis_ms: 8
  resync_hold: 30
tls: {dir: certs, ca: ca.pem, cert: c.pem, key: c.key, insecure: true}
log: {level: warning, format: json}
metrics: {listen: "[::1]:9401"}
dashboard: {listen: 0.0.0.0:8470}
"""


def test_a_complete_relay_file(tmp_path):
    path = write(tmp_path, "relay.yaml", RELAY_FILE)
    values = configs.RELAY_CONFIG.load(path)
    assert values == {
        "region": "london", "node": "n2", "controller": "10.0.0.1:7400,10.0.0.2:7400",
        "bind": "0.0.0.0:7000", "advertise": "203.0.113.7", "wan": tmp_path / "wan.json",
        "edge_port": 4433, "tls_cert": tmp_path / "edge.pem",
        "tls_key": Path("/etc/edge/edge.key"),
        "edge_limits": "joins-per-source-per-s=20,sessions-per-source=64",
        "certs": tmp_path / "certs", "ca": tmp_path / "certs/bundle.pem",
        "cert": tmp_path / "certs/relay-london-n2.pem",
        "key": tmp_path / "certs/relay-london-n2.key", "insecure": True,
        "log_level": "debug", "log_format": "json", "metrics_listen": "127.0.0.1:9400",
        "health_listen": "127.0.0.1:9500", "history_messages": 50, "history_age": 7200,
        "history_db": tmp_path / "history.db"}


def test_a_complete_controller_file(tmp_path):
    path = write(tmp_path, "controller.yaml", CONTROLLER_FILE)
    values = configs.CONTROLLER_CONFIG.load(path)
    assert values["store"] == "etcd://10.0.0.1:2379,10.0.0.2:2379"
    assert values["only"] == "london,tokyo"
    assert values["fabric_key_rotation"] == 12 * 3600
    assert values["regions"] == tmp_path / "regions"
    assert values["geoip_db"] == Path("/var/lib/GeoLite2-City.mmdb")
    assert values["down_after"] == 4 and isinstance(values["down_after"], int)
    assert values["probe_interval"] == 2.5 and values["degraded_jitter_ms"] == 45.0
    assert values["log_level"] == "warning" and values["insecure"] is True
    assert values["log_format"] == "json"
    assert values["dashboard_listen"] == "0.0.0.0:8470"


@pytest.mark.parametrize("command, text", [("relay", RELAY_FILE),
                                           ("controller", CONTROLLER_FILE)])
def test_the_file_sets_every_option_over_its_built_in_default(tmp_path, command, text):
    path = write(tmp_path, f"{command}.yaml", text)
    values = SCHEMAS[command].load(path)
    flags = options(command)
    assert set(values) == set(flags), "the complete file above misses a field"
    builtin = parsed([command])
    args = parsed([command, "--config", str(path)])
    assert args.config_values == values
    for dest, value in values.items():
        assert getattr(args, dest) == value, dest
        assert getattr(builtin, dest) != value, f"{dest}: pick a value that is not the default"
        # the type the flag would give it
        kind = flags[dest].type
        if kind in (int, float, Path):
            assert isinstance(getattr(args, dest), kind), (dest, getattr(args, dest))
        if isinstance(flags[dest], argparse._StoreTrueAction):
            assert isinstance(getattr(args, dest), bool)
        if flags[dest].choices:
            assert getattr(args, dest) in flags[dest].choices


def test_relay_flags_win_over_the_file_and_the_file_over_the_defaults(tmp_path):
    path = write(tmp_path, "relay.yaml", "region: london\ncontrollers: 10.0.0.1:7400\n"
                 "listen: 10.0.0.5:7000\nedge: {cert: e.pem, key: e.key, port: 4433}\n"
                 "log: {level: debug}\n")
    assert parsed(["relay"]).bind == "127.0.0.1:0"
    from_file = parsed(["relay", "--config", str(path)])
    assert (from_file.bind, from_file.edge_port) == ("10.0.0.5:7000", 4433)
    assert from_file.tls_cert == tmp_path / "e.pem" and from_file.log_level == "debug"
    flags = parsed(["relay", "--config", str(path), "--bind", "127.0.0.1:9",
                    "--tls-cert", "other.pem", "--log-level", "WARNING",
                    "--controller", "10.9.9.9:1"])
    assert flags.bind == "127.0.0.1:9" and flags.tls_cert == Path("other.pem")
    assert flags.log_level == "warning" and flags.controller == "10.9.9.9:1"
    # what the flags do not give stays the file's
    assert (flags.region, flags.edge_port, flags.tls_key) == ("london", 4433,
                                                              tmp_path / "e.key")
    # --config after the flags: the same
    later = parsed(["relay", "--bind", "127.0.0.1:9", "--config", str(path)])
    assert later.bind == "127.0.0.1:9" and later.region == "london"


def test_controller_flags_win_over_the_file_and_the_file_over_the_defaults(tmp_path):
    from skymesh.linkstate import LINK

    path = write(tmp_path, "controller.yaml", "probe: {interval: 2.5, down_after: 7}\n"
                 "fabric: {rotation: 12h}\nonly: [london, tokyo]\n")
    assert parsed(["controller"]).probe_interval == LINK.probe_interval_s
    from_file = parsed(["controller", "--config", str(path)])
    assert (from_file.probe_interval, from_file.down_after) == (2.5, 7)
    assert from_file.fabric_key_rotation == 43200 and from_file.only == "london,tokyo"
    flags = parsed(["controller", "--config", str(path), "--probe-interval", "0.7",
                    "--fabric-key-rotation", "1h", "--only", "tokyo"])
    assert (flags.probe_interval, flags.fabric_key_rotation, flags.only) == (0.7, 3600,
                                                                             "tokyo")
    assert flags.down_after == 7
    # a flag that says the built-in default still wins over the file
    same = parsed(["controller", "--config", str(path), "--probe-interval",
                   str(LINK.probe_interval_s)])
    assert same.probe_interval == LINK.probe_interval_s
    # the file changes the parser it was applied to only
    assert parsed(["controller"]).probe_interval == LINK.probe_interval_s


def test_state_in_the_file_and_store_on_the_command_line_both_arrive(tmp_path):
    # argparse's --state/--store exclusion sees flags only: the command refuses the pair
    # (test_controller_check_config below)
    path = write(tmp_path, "controller.yaml", "state: state.json\n")
    args = parsed(["controller", "--config", str(path), "--store", "etcd://127.0.0.1:2379"])
    assert args.state == tmp_path / "state.json" and args.store == "etcd://127.0.0.1:2379"


def test_a_refused_file_is_raised_before_any_flag_is_used(tmp_path):
    path = write(tmp_path, "relay.yaml", "region: London\n")
    with pytest.raises(ConfigError) as info:
        parsed(["relay", "--config", str(path), "--region", "london"])
    assert info.value.problems == [f"{path}: region: expected a region id, got 'London'"]


# -- dump and write ----------------------------------------------------------------------------

def test_dump_writes_nested_settings_with_a_comment_header(tmp_path):
    text = configs.dump({"region": "fra", "wan": Path("/x/wan.json"), "node": None,
                         "edge": {"port": 4433, "cert": None}, "controllers": ("a:1", "b:2")},
                        header="written by skymesh up\n\ndo not edit")
    assert text.startswith("# written by skymesh up\n#\n# do not edit\nregion: fra\n")
    assert "node" not in text and "cert" not in text
    assert configs.RELAY_CONFIG.loads(text, "x", tmp_path) == {
        "region": "fra", "wan": Path("/x/wan.json"), "edge_port": 4433,
        "controller": "a:1,b:2"}


def test_write_is_private_and_refuses_what_it_could_not_load(tmp_path):
    path = configs.write(tmp_path / "sub" / "relay.yaml", configs.RELAY_CONFIG,
                         {"region": "fra", "controllers": ["127.0.0.1:7400"]})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert configs.RELAY_CONFIG.load(path)["region"] == "fra"
    with pytest.raises(ConfigError, match="listen: port 70000"):
        configs.write(tmp_path / "bad.yaml", configs.RELAY_CONFIG,
                      {"region": "fra", "listen": "127.0.0.1:70000"})


# -- the README's examples ---------------------------------------------------------------------

def readme_examples() -> dict[str, str]:
    """The ```yaml blocks of the README's "Configuration files" section whose first line is a
    comment naming relay.yaml or controller.yaml."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    heading = re.search(r"^(#+) Configuration files\s*$", text, re.M)
    assert heading, "README.md has no section \"Configuration files\""
    section, fenced = [], False
    for line in text[heading.end():].splitlines(keepends=True):
        fenced ^= line.startswith("```")
        if not fenced and re.match(rf"#{{1,{len(heading.group(1))}}} ", line):
            break  # the next section (a `# comment` in a code block is none)
        section.append(line)
    blocks = re.findall(r"^```ya?ml\n(.*?)^```", "".join(section), re.M | re.S)
    found: dict[str, list[str]] = {"relay": [], "controller": []}
    for block in blocks:
        first = block.splitlines()[0] if block.strip() else ""
        for name in found:
            if first.lstrip().startswith("#") and f"{name}.yaml" in first:
                found[name].append(block)
    for name, examples in found.items():
        assert len(examples) == 1, f"README.md, Configuration files: expected one ```yaml " \
            f"block starting with a comment naming {name}.yaml, found {len(examples)}"
    return {name: examples[0] for name, examples in found.items()}


@pytest.mark.parametrize("command", SCHEMAS)
def test_the_readme_examples_load(command):
    example = readme_examples()[command]
    values = SCHEMAS[command].loads(example, f"README.md ({command}.yaml)", ROOT)
    assert values


@pytest.mark.parametrize("command", SCHEMAS)
def test_the_readme_examples_show_every_field(command):
    """Complete: each field is there (perhaps commented out), so a new one gets documented."""
    example = readme_examples()[command]
    missing = [path for path in SCHEMAS[command].fields
               if not re.search(rf"^\s*(#\s*)?{re.escape(path.rpartition('.')[2])}:",
                                example, re.M)]
    assert not missing, f"README.md's {command}.yaml example does not show {missing}"


# -- --check-config, as operators run it -------------------------------------------------------

def test_relay_check_config(tmp_path, home):
    good = write(tmp_path, "relay.yaml", "region: london\ncontrollers: [127.0.0.1:7400, "
                 "127.0.0.1:7401]\nlisten: 0.0.0.0:7000\nadvertise: 203.0.113.7\n"
                 "tls: {insecure: true}\n")
    proc = run_cli("relay", "--config", str(good), "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{good}: valid: relay london/"), proc.stdout
    assert "controllers 127.0.0.1:7400,127.0.0.1:7401" in proc.stdout
    assert "udp 0.0.0.0:7000 advertised as 203.0.113.7" in proc.stdout

    # three problems, all named; flags that would fix them do not: the file is refused first
    bad = write(tmp_path, "bad.yaml", "region: London\ncontrollers: [127.0.0.1:7400]\n"
                "listen: 127.0.0.1:99999\ntls:\n  insecure: yes\n")
    proc = run_cli("relay", "--config", str(bad), "--check-config", "--region", "london",
                   "--bind", "127.0.0.1:0", "--insecure")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0] == f"skymesh: not starting, --config {bad} is refused:"
    assert lines[1:] == [f"{bad}: region: expected a region id, got 'London'",
                         f"{bad}: listen: port 99999 is not in 0-65535",
                         f"{bad}: tls.insecure: expected true or false, got a string ('yes')"]

    # bound to every address, and no advertised one: refused
    anywhere = write(tmp_path, "anywhere.yaml", "region: london\ncontrollers: 127.0.0.1:7400\n"
                     "listen: 0.0.0.0:7000\ntls: {insecure: true}\n")
    proc = run_cli("relay", "--config", str(anywhere), "--check-config")
    assert proc.returncode == 2 and "valid" not in proc.stdout
    assert "--bind 0.0.0.0:7000" in proc.stderr and "`advertise:` in --config" in proc.stderr


def test_relay_without_a_region_is_refused(tmp_path, capsys):
    path = write(tmp_path, "relay.yaml", "controllers: 127.0.0.1:7400\ntls: {insecure: true}\n")
    assert main.main(["relay", "--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "--region (or `region:` in --config) required" in err
    assert "controllers" not in err.partition("required")[0]


def test_controller_check_config(tmp_path, home):
    regions = ROOT / "regions"
    good = write(tmp_path, "controller.yaml", f"listen: 127.0.0.1:7400\nregions: {regions}\n"
                 "only: [london, tokyo]\nprobe: {interval: 2}\ntls: {insecure: true}\n")
    proc = run_cli("controller", "--config", str(good), "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{good}: valid: controller on 127.0.0.1:7400, 2 regions"), \
        proc.stdout
    assert "state not kept" in proc.stdout

    kept = write(tmp_path, "kept.yaml", f"regions: {regions}\nonly: [london, tokyo]\n"
                 "state: state.json\ntls: {insecure: true}\n")
    proc = run_cli("controller", "--config", str(kept), "--check-config", "--store",
                   "etcd://127.0.0.1:2379")
    assert proc.returncode == 2 and "valid" not in proc.stdout
    assert "--state and --store exclude each other" in proc.stderr


def test_controller_file_with_three_problems(tmp_path, capsys):
    bad = write(tmp_path, "controller.yaml", "listen: localhost\nprobe:\n  intervall: 2\n"
                "  down_after: 0\nonly: [london, tokyo]\n")
    assert main.main(["controller", "--config", str(bad), "--check-config",
                      "--listen", "127.0.0.1:7400", "--down-after", "3"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        f"skymesh: not starting, --config {bad} is refused:",
        f"{bad}: listen: expected HOST:PORT, got a string ('localhost')",
        f"{bad}: probe.intervall: unknown field (did you mean probe.interval?)",
        f"{bad}: probe.down_after: must be at least 1, got 0"]


def test_a_fabric_rotation_beyond_any_clock_is_refused(tmp_path, capsys):
    # durations are bounded (ten years): unbounded, 10**400 s loaded and the controller
    # died of an OverflowError
    path = write(tmp_path, "controller.yaml", f"regions: {ROOT / 'regions'}\n"
                 f"only: [london, tokyo]\ntls: {{insecure: true}}\n"
                 f"fabric: {{rotation: {10 ** 400}}}\n")
    assert main.main(["controller", "--config", str(path), "--check-config"]) == 2
    assert "fabric" in capsys.readouterr().err


def test_a_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main.main(["relay", "--config", str(missing), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert f"--config {missing} is refused:\n{missing}: cannot read: " in err
