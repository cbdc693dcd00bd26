"""The generic configuration-file loader (skymesh/config.py): each converter's accepted and
refused values, sections, every problem at once as `origin: field.path: what`, unknown fields
with suggestions, YAML as operators write it, and paths relative to the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from skymesh import config
from skymesh.config import ConfigError, Field, Invalid, Schema

BASE = Path("/etc/skymesh")


def accepts(convert, value):
    return convert(value, BASE)


def refusal(convert, value) -> str:
    with pytest.raises(Invalid) as info:
        convert(value, BASE)
    return str(info.value)


# A schema of every kind of converter, with one section of two fields and one of one.
SCHEMA = Schema("thing", [
    Field("name", "name", config.text(r"[a-z]{2,8}", "a short name")),
    Field("mode", "mode", config.choice("fast", "slow")),
    Field("listen", "listen", config.host_port),
    Field("peers", "peers", config.host_ports),
    Field("public", "public", config.host),
    Field("only", "only", config.names(r"[a-z]{2,8}", "short names")),
    Field("data", "data", config.path),
    Field("timing.every", "every", config.positive),
    Field("timing.misses", "misses", config.positive_int),
    Field("limits.share", "share", config.number(0, 1, low_open=True)),
    Field("debug", "debug", config.boolean),
])


def problems(text: str, schema: Schema = SCHEMA, origin: str = "conf.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        schema.loads(text, origin, BASE)
    assert str(info.value) == "\n".join(info.value.problems)
    assert isinstance(info.value, ValueError)
    return info.value.problems


def one(text: str, schema: Schema = SCHEMA) -> str:
    found = problems(text, schema)
    assert len(found) == 1, found
    return found[0]


# -- converters --------------------------------------------------------------------------------

def test_text_with_and_without_a_pattern():
    short = config.text(r"[a-z]{2,8}", "a short name")
    assert accepts(short, "abc") == "abc"
    assert refusal(short, "ABC") == "expected a short name, got 'ABC'"
    assert "expected a short name" in refusal(short, " abc")  # not stripped into a match
    for bad in ("", "   ", 5, None, True, ["abc"], {"a": 1}):
        assert "expected a non-empty string" in refusal(short, bad)
    anything = config.text()
    assert accepts(anything, "any thing at all") == "any thing at all"
    assert "a match of [0-9]+" in refusal(config.text(r"[0-9]+"), "x")


def test_choice_is_case_insensitive_and_lowercased():
    levels = config.choice("debug", "info")
    assert accepts(levels, "INFO") == "info"
    assert accepts(levels, "debug") == "debug"
    for bad in ("verbose", "", 1, True, None, ["info"]):
        assert refusal(levels, bad).startswith("expected one of debug, info, got ")


@pytest.mark.parametrize("value", ["a:1", "example.com:443", "127.0.0.1:0", "[::1]:80",
                                   "[2001:db8::1]:65535", "  host:7400 "])
def test_host_port_accepts(value):
    assert accepts(config.host_port, value) == value.strip()


@pytest.mark.parametrize("value, wrong", [
    ("host", "expected HOST:PORT"), ("host:", "expected HOST:PORT"),
    (":80", "expected HOST:PORT"), ("::1:80", "expected HOST:PORT"),  # IPv6 needs brackets
    ("a b:1", "expected HOST:PORT"), ("host:123456", "expected HOST:PORT"),
    ("host:65536", "port 65536 is not in 0-65535"), ("host:99999", "port 99999"),
    (7400, "got a number (7400)"), (True, "got a boolean (true)"), (["a:1"], "got a list"),
    ({"a": 1}, "got a mapping"),
])
def test_host_port_refuses(value, wrong):
    assert wrong in refusal(config.host_port, value)


def test_host_port_refuses_hosts_that_are_neither_names_nor_addresses():
    # the host part is checked as `host` checks one: `listen: -:80` is refused by the file,
    # not by the process when it binds
    for value in ("-:80", "...:80", "a..b:80", "1.2.3.999:80"):
        assert "expected" in refusal(config.host_port, value)


@pytest.mark.parametrize("value, out", [
    ("example.com", "example.com"), ("localhost", "localhost"), ("EDGE.example.com",
                                                                 "EDGE.example.com"),
    ("1.2.3.4", "1.2.3.4"), ("::1", "::1"), ("[::1]", "::1"), (" 10.0.0.1 ", "10.0.0.1"),
    ("2001:DB8::1", "2001:db8::1"),  # addresses are normalised
])
def test_host_accepts_names_and_addresses(value, out):
    assert accepts(config.host, value) == out


@pytest.mark.parametrize("value", ["", "-a.com", "a-.com", "a_b.com", "a..b", "1.2.3.999",
                                   "1.2.3.4:80", "a" * 64 + ".com", "a b", 5, None, ["x"]])
def test_host_refuses(value):
    assert refusal(config.host, value).startswith("expected a DNS name or an IP address")


def test_host_ports_as_a_list_or_a_comma_separated_string():
    assert accepts(config.host_ports, ["a:1", " b:2 "]) == "a:1,b:2"
    assert accepts(config.host_ports, "a:1, b:2") == "a:1,b:2"
    assert accepts(config.host_ports, ["[::1]:7400"]) == "[::1]:7400"
    assert refusal(config.host_ports, []) == "expected a list of HOST:PORT, got a list"
    assert "got a mapping" in refusal(config.host_ports, {"a": 1})
    assert refusal(config.host_ports, ["a:1", 5]).startswith("item 2: expected HOST:PORT")
    assert refusal(config.host_ports, "a:1,").startswith("item 2: ")
    assert refusal(config.host_ports, ["a:1", "b:70000"]).startswith("item 2: port 70000")
    assert "listed twice" in refusal(config.host_ports, ["a:1", " a:1"])


def test_names():
    short = config.names(r"[a-z]{2,8}", "short names")
    assert accepts(short, ["ab", "cd"]) == "ab,cd"
    assert accepts(short, " ab , cd ") == "ab,cd"
    assert accepts(short, "ab") == "ab"
    assert refusal(short, []) == "expected a list of short names, got a list"
    assert refusal(short, 5) == "expected a list of short names, got a number (5)"
    assert refusal(short, "ab,,cd") == "expected a list of short names, got '' in it"
    assert refusal(short, ["ab", "AB"]) == "expected a list of short names, got 'AB' in it"
    assert refusal(short, ["ab", 1]) == "expected a list of short names, got 1 in it"


def test_path_relative_to_the_base_absolute_as_is(monkeypatch, tmp_path):
    assert accepts(config.path, "certs/relay.pem") == BASE / "certs/relay.pem"
    assert accepts(config.path, "/var/lib/x") == Path("/var/lib/x")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert accepts(config.path, "~/x.pem") == tmp_path / "x.pem"
    for bad in ("", "  ", 5, None, ["a"], {"a": 1}, True):
        assert refusal(config.path, bad).startswith("expected a path, got ")


def test_path_of_an_unknown_user_is_refused_not_a_crash():
    # pathlib raises RuntimeError for the home of no user: a problem of the file, not a crash
    assert refusal(config.path, "~skymesh-no-such-user-x/key.pem")
    found = one("data: ~skymesh-no-such-user-x/key.pem")
    assert found.startswith("conf.yaml: data: ")


def test_numbers_ranges_and_whole_numbers():
    zero_to_ten = config.number(0, 10)
    assert accepts(zero_to_ten, 0) == 0.0 and isinstance(accepts(zero_to_ten, 3), float)
    assert accepts(zero_to_ten, 10) == 10.0
    assert refusal(zero_to_ten, -1) == "must be at least 0, got -1"
    assert refusal(zero_to_ten, 10.5) == "must be at most 10, got 10.5"
    share = config.number(0, 1, low_open=True)
    assert accepts(share, 1) == 1.0 and accepts(share, 0.25) == 0.25
    assert refusal(share, 0) == "must be above 0, got 0"
    whole = config.number(1, integer=True)
    assert accepts(whole, 3) == 3 and isinstance(accepts(whole, 3), int)
    assert refusal(whole, 2.0) == "expected a whole number, got a number (2.0)"
    for convert in (zero_to_ten, share, whole):
        for bad in (True, False, "1", None, [1], float("nan")):
            assert refusal(convert, bad).startswith("expected a ")


def test_positive_and_positive_int():
    assert config.positive(0.5, BASE) == 0.5 and config.positive(2, BASE) == 2.0
    assert isinstance(config.positive(2, BASE), float)
    for bad in (0, -0.0, -1):
        assert refusal(config.positive, bad).startswith("must be above 0")
    assert config.positive_int(1, BASE) == 1
    assert refusal(config.positive_int, 0) == "must be at least 1, got 0"
    assert refusal(config.positive_int, 1.5).startswith("expected a whole number")


def test_infinity_is_not_a_number_of_seconds():
    value = float("inf")
    # `probe: {interval: .inf}` would be no probes, `routing: {hysteresis: .inf}` a route
    # that never moves
    assert refusal(config.positive, value)
    assert refusal(config.number(0), value)


def test_a_whole_number_too_large_for_a_float_is_refused_not_a_crash():
    # an integer beyond a float's range is refused, not an OverflowError out of loads
    huge = 10 ** 400
    assert refusal(config.positive, huge)
    found = one(f"timing:\n  every: {huge}\n")
    assert found.startswith("conf.yaml: timing.every: ")


def test_boolean_is_true_or_false_only():
    assert config.boolean(True, BASE) is True and config.boolean(False, BASE) is False
    for bad in ("yes", "true", "on", 1, 0, None):
        assert refusal(config.boolean, bad).startswith("expected true or false, got ")


def test_durations():
    for value, out in (("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), ("30", 30),
                       (" 12 h ", 43200), ("0", 0), (0, 0), (3600, 3600)):
        assert config.duration(value, BASE) == out, value
        assert type(config.duration(value, BASE)) is int
    for bad in ("1.5h", "-5s", "5w", "h", "", "12hh", "1h30m", -1, 1.5, True, None, ["1h"]):
        assert refusal(config.duration, bad).startswith("expected a duration such as 24h"), \
            bad
    assert config.seconds("2d") == 172800
    with pytest.raises(ValueError):
        config.seconds("two days")


def test_checked_refuses_by_the_commands_own_rule():
    def at_most_five(value):
        if value > 5:
            raise ValueError(f"{value} is more than five")

    small = config.checked(config.number(0), at_most_five)
    assert accepts(small, 5) == 5.0
    assert refusal(small, 6) == "6.0 is more than five"
    assert refusal(small, "x").startswith("expected a number")  # the converter first

    def crashes(value):
        raise KeyError(value)

    with pytest.raises(KeyError):  # only ValueError is a refusal
        config.checked(config.number(0), crashes)(1, BASE)


# -- documents ---------------------------------------------------------------------------------

def test_a_complete_document():
    values = SCHEMA.loads(
        "name: edge\nmode: SLOW\nlisten: 0.0.0.0:7000\npeers: [a:1, b:2]\npublic: 1.2.3.4\n"
        "only: ab,cd\ndata: d/x.json\ntiming:\n  every: 2\n  misses: 3\n"
        "limits: {share: 0.5}\ndebug: false\n", "conf.yaml", BASE)
    assert values == {"name": "edge", "mode": "slow", "listen": "0.0.0.0:7000",
                      "peers": "a:1,b:2", "public": "1.2.3.4", "only": "ab,cd",
                      "data": BASE / "d/x.json", "every": 2.0, "misses": 3, "share": 0.5,
                      "debug": False}


def test_a_key_with_no_value_is_the_default():
    assert SCHEMA.loads("name:\ntiming:\n  every:\nlimits:\n", "c", BASE) == {}
    assert SCHEMA.loads("name: ab\ntiming: {misses: ~}\n", "c", BASE) == {"name": "ab"}


def test_every_problem_at_once_in_document_order():
    found = problems(
        "name: Edge\n"             # pattern
        "mode: medium\n"           # choice
        "timing:\n"
        "  every: 0\n"             # range, in a section
        "  misses: 1.5\n"          # whole number, same section
        "  jitter: 3\n"            # unknown in a section
        "limits: [1]\n"            # a section that is not a mapping
        "debug: yes\n"             # YAML 1.2: the string "yes"
        "colour: red\n"            # unknown
        "listen: 127.0.0.1:7000\n", origin="/srv/thing.yaml")  # fine
    # (what an unknown field's suggestion says: test_unknown_fields_suggest_the_near_one)
    found[4] = found[4].partition(" (")[0]
    assert found == [
        "/srv/thing.yaml: name: expected a short name, got 'Edge'",
        "/srv/thing.yaml: mode: expected one of fast, slow, got a string ('medium')",
        "/srv/thing.yaml: timing.every: must be above 0, got 0",
        "/srv/thing.yaml: timing.misses: expected a whole number, got a number (1.5)",
        "/srv/thing.yaml: timing.jitter: unknown field",
        "/srv/thing.yaml: limits: expected a mapping of fields, got a list",
        "/srv/thing.yaml: debug: expected true or false, got a string ('yes')",
        "/srv/thing.yaml: colour: unknown field (known here: data, debug, limits, listen, "
        "mode, name, only, peers, public, timing)",
    ]


def test_unknown_fields_suggest_the_near_one():
    assert one("nmae: ab") == "conf.yaml: nmae: unknown field (did you mean name?)"
    assert one("timing:\n  evry: 1") == \
        "conf.yaml: timing.evry: unknown field (did you mean timing.every?)"
    assert one("timng:\n  every: 1") == \
        "conf.yaml: timng: unknown field (did you mean timing?)"
    # a field of a section written at top level
    assert one("misses: 3") == "conf.yaml: misses: unknown field (did you mean timing.misses?)"
    assert one("zzzzzz: 1").startswith("conf.yaml: zzzzzz: unknown field (known here: data, ")


def test_an_unknown_field_in_a_section_is_not_matched_by_its_section_name():
    # names are compared with the section's own fields: a whole dotted path would match its
    # own section's name (`limits: {zzzzzz: 1}` -> "did you mean limits?")
    assert one("limits:\n  zzzzzz: 1") == \
        "conf.yaml: limits.zzzzzz: unknown field (known here: share)"
    assert one("timing:\n  qq: 1") == \
        "conf.yaml: timing.qq: unknown field (known here: every, misses)"


def test_the_document_and_sections_must_be_mappings():
    assert one("- a\n- b") == "conf.yaml: document: expected a mapping of fields, got a list"
    assert one("42") == "conf.yaml: document: expected a mapping of fields, got a number (42)"
    assert one("just words") == \
        "conf.yaml: document: expected a mapping of fields, got a string ('just words')"
    assert one("timing: 5") == "conf.yaml: timing: expected a mapping of fields, got a " \
        "number (5)"
    assert one("timing: fast") == "conf.yaml: timing: expected a mapping of fields, got a " \
        "string ('fast')"
    assert one("1: x") == "conf.yaml: document: field names are strings, got 1"
    assert one("timing: {2: x}") == "conf.yaml: timing: field names are strings, got 2"


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing but a comment\n", "---\n", "~"])
def test_an_empty_file(text):
    assert one(text) == "conf.yaml: the file is empty: expected the thing's settings"


@pytest.mark.parametrize("text, where", [
    ("name: [ab, cd\ndebug: true\n", "line 2 column 6: "),
    ("name: a: b\n", "line 1 column 8: "),
    ("\tname: ab\n", "line 1 column 1: "),
    ("name: 'unterminated\n", "line 2 column 1: "),
])
def test_invalid_yaml_says_where(text, where):
    found = one(text)
    assert found.startswith(f"conf.yaml: {where}not valid YAML: "), found


def test_yaml_beyond_plain_data_is_refused():
    assert one("name: !!binary aGk=").startswith("conf.yaml: line 1 column 7: not valid YAML")
    assert one("name: !!python/object:os.system x").startswith("conf.yaml: ")
    assert one("a: &a [*a]") == \
        "conf.yaml: not valid YAML: a value contains itself (a recursive alias)"


def test_yaml_1_2_booleans():
    # `debug: yes`, `on`, `no` are strings in YAML 1.2, so refused as booleans...
    for word in ("yes", "no", "on", "off", "y", "n"):
        assert one(f"debug: {word}") == \
            f"conf.yaml: debug: expected true or false, got a string ('{word}')"
    for word, value in (("true", True), ("True", True), ("FALSE", False)):
        assert SCHEMA.loads(f"debug: {word}", "c", BASE) == {"debug": value}
    # ... and a name such as `no` (Norway) stays a name
    assert SCHEMA.loads("name: no", "c", BASE) == {"name": "no"}


def test_paths_relative_to_base_absolute_as_given():
    values = SCHEMA.loads("data: ../shared/model.json", "c", Path("/srv/skymesh/conf"))
    assert values["data"] == Path("/srv/skymesh/conf/../shared/model.json")
    assert SCHEMA.loads("data: /abs/model.json", "c", Path("/srv"))["data"] == \
        Path("/abs/model.json")


def test_load_reads_the_file_relative_to_its_directory(tmp_path, monkeypatch):
    conf = tmp_path / "etc" / "thing.yaml"
    conf.parent.mkdir()
    conf.write_text("name: ab\ndata: model.json\n")
    assert SCHEMA.load(conf) == {"name": "ab", "data": tmp_path / "etc" / "model.json"}
    monkeypatch.chdir(tmp_path)
    # given as a relative path: messages name it as given, paths come out absolute
    assert SCHEMA.load("etc/thing.yaml")["data"] == tmp_path / "etc" / "model.json"
    conf.write_text("name: AB\n")
    with pytest.raises(ConfigError) as info:
        SCHEMA.load("etc/thing.yaml")
    assert info.value.problems == ["etc/thing.yaml: name: expected a short name, got 'AB'"]


def test_load_of_a_missing_or_unreadable_file(tmp_path):
    for path, why in ((tmp_path / "nope.yaml", "No such file"),
                      (tmp_path, "Is a directory")):
        with pytest.raises(ConfigError) as info:
            SCHEMA.load(path)
        [problem] = info.value.problems
        assert problem.startswith(f"{path}: cannot read: ") and why in problem, problem
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        SCHEMA.load(latin)
    assert info.value.problems[0].startswith(f"{latin}: cannot read: ")


def test_a_schema_refuses_a_path_that_is_a_field_and_a_section():
    with pytest.raises(ValueError, match="both fields and sections"):
        Schema("x", [Field("tls", "tls", config.boolean), Field("tls.cert", "c", config.path)])


def test_three_levels_of_sections():
    # every prefix of a path is a section, not only the innermost (the relay's and the
    # controller's schemas are two levels deep today)
    deep = Schema("x", [Field("a.b.c", "c", config.positive)])
    assert deep.loads("a: {b: {c: 1}}", "c", BASE) == {"c": 1.0}
    with pytest.raises(ValueError, match="both fields and sections"):
        Schema("x", [Field("a", "a", config.boolean), Field("a.b.c", "c", config.positive)])


def test_config_error_reads_as_its_problems():
    e = ConfigError(["f: a: x", "f: b: y"])
    assert str(e) == "f: a: x\nf: b: y" and e.problems == ["f: a: x", "f: b: y"]
    assert isinstance(e, ValueError)
