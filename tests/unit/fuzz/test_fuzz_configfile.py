"""Hostile configuration files of `skymesh relay --config` and `skymesh controller --config`
(skymesh/config.py, skymesh/cli/configs.py): documents of known and unknown fields, sections
where fields go and fields where sections go, with hostile values (NaN, huge numbers, control
characters, `~user` paths, lists, mappings), as YAML text and as YAML-looking lines.

Each load raises only ConfigError, every problem `origin: ...`, or returns settings of the
types the command's own flags would give them, which the command line then takes as its
defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from fuzzing import fuzz, nasty_floats, nasty_text
from hypothesis import event, given
from hypothesis import strategies as st

from skymesh.cli import configs, main
from skymesh.config import ConfigError, Schema

ORIGIN = "/etc/skymesh/fuzz.yaml"
BASE = Path("/etc/skymesh")
SCHEMAS = {"relay": configs.RELAY_CONFIG, "controller": configs.CONTROLLER_CONFIG}

_TOP = main.parser()
_SUBS = next(a for a in _TOP._actions if isinstance(a, argparse._SubParsersAction)).choices
ACTIONS = {command: {a.dest: a for a in _SUBS[command]._actions if a.option_strings}
           for command in SCHEMAS}

# values that some field takes, so that documents are sometimes accepted
GOOD = ["london", "n1", "c2", "127.0.0.1:7400", "0.0.0.0:7000", "[::1]:7401",
        ["127.0.0.1:7400", "10.0.0.2:7400"], "a:1,b:2", "203.0.113.7", "example.com",
        "wan.json", "/abs/file.pem", "certs", 4433, 0, 1, 2.5, 0.5, 3, True, False, "info",
        "DEBUG", "12h", "0", "90s", "etcd://10.0.0.1:2379", ["london", "tokyo"], "tokyo",
        {"joins-per-source-per-s": 20, "sessions-per-source": 64}]
HOSTILE = ["", " ", "~", "~/x", "~skymesh-no-such-user/x", "x\x00y", "\u202e", "..",
           "host:", ":1", "host:99999", "a:1,a:1", "a:1,", "-", "-:1", "yes", "no", "on",
           "NaN", ".inf", "1e999", "12x", "-5s", "etcd://", "etcd://x", "a=1",
           "joins-per-source-per-s=1", 10 ** 400, -(10 ** 400), 2 ** 63, 65536, -1, -0.0,
           [], {}, [None], [[]], [{}], {"a": 1}, {1: 2}, {"joins-per-source-per-s": "1,a=2"},
           {"messages-burst": 0.5}, {None: 1}]
values = st.recursive(
    st.one_of(st.sampled_from(GOOD), st.sampled_from(GOOD), st.sampled_from(HOSTILE),
              st.none(), st.booleans(), st.integers(), nasty_floats, nasty_text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner,
                                                                max_size=3),
    max_leaves=6)
UNKNOWN = st.sampled_from(["", "regoin", "tls.cert", "probe.interval", "x" * 300, "<<",
                           "listen ", "Region", "1", "tls."]) | nasty_text


def nest(flat: dict) -> dict:
    """{"probe.interval": 1} as {"probe": {"interval": 1}}."""
    doc: dict = {}
    for path, value in flat.items():
        section, _, leaf = path.rpartition(".")
        (doc.setdefault(section, {}) if section else doc)[leaf] = value
    return doc


def _takes(schema: Schema, path: str, value: object) -> bool:
    try:
        schema.loads(yaml.safe_dump(nest({path: value})), ORIGIN, BASE)
    except Exception:  # (refused, or a crash the tests below report)
        return False
    return True


# per field, the values of GOOD it takes (only to steer the documents towards acceptance)
TAKES = {(command, path): [v for v in GOOD if _takes(schema, path, v)]
         for command, schema in SCHEMAS.items() for path in schema.fields}


def plausible(command: str) -> st.SearchStrategy:
    """Known fields where they belong, mostly with values they take."""
    schema = SCHEMAS[command]

    @st.composite
    def draw(draw: st.DrawFn) -> dict:
        paths = draw(st.lists(st.sampled_from(sorted(schema.fields)), unique=True,
                              max_size=len(schema.fields)))
        flat = {}
        for path in paths:
            good = TAKES[(command, path)]
            flat[path] = draw(st.sampled_from(good) if good and draw(st.integers(0, 9))
                              else st.sampled_from(HOSTILE))
        return nest(flat)

    return draw()


def documents(command: str) -> st.SearchStrategy:
    schema = SCHEMAS[command]
    tops = sorted({path.split(".")[0] for path in schema.fields})
    leaves = sorted({path.rpartition(".")[2] for path in schema.fields})
    section = st.dictionaries(st.sampled_from(leaves) | UNKNOWN, values, max_size=6)
    top_keys = st.sampled_from(tops) | st.sampled_from(tops) | UNKNOWN | \
        st.integers(-2, 2) | st.none() | st.booleans()
    return st.one_of(
        st.dictionaries(top_keys, values | section | st.none(), max_size=10),
        plausible(command), plausible(command),
        values)  # (a document that is no mapping)


def dumped(data: object) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=True)
    except (yaml.YAMLError, RecursionError, UnicodeEncodeError):
        return ""


def lines(schema: Schema) -> st.SearchStrategy[str]:
    """YAML-looking text: `key: value` lines, some indented under sections."""
    keys = sorted({*schema.fields, *(p.rpartition(".")[2] for p in schema.fields),
                   *schema.sections})
    line = st.builds(
        lambda indent, key, value: f"{' ' * indent}{key}: {value}",
        st.sampled_from([0, 0, 2, 4, 1]), st.sampled_from(keys) | st.text(max_size=6),
        st.sampled_from(["", "~", "yes", "true", "[a, b]", "{x: 1}", "&a 1", "*a", "!!binary x",
                         "1" + "0" * 400, ".inf", "-.inf", ".nan", "0x10", "0o7", "1_000",
                         "1:30", "'~nobody-x/y'", "[127.0.0.1:1, 127.0.0.1:1]", "12h",
                         "127.0.0.1:7400", "0.0.0.0:0", "london", "2024-02-30", "|\n  x"])
        | st.text(max_size=10))
    return st.lists(line, max_size=12).map("\n".join)


def texts(command: str) -> st.SearchStrategy[str]:
    return st.one_of(documents(command).map(dumped), documents(command).map(dumped),
                     lines(SCHEMAS[command]), st.text(max_size=60))


def check_types(command: str, settings: dict) -> None:
    """Each setting is what the command's flag would give: the type of its option."""
    actions = ACTIONS[command]
    for dest, value in settings.items():
        action = actions[dest]  # every setting fills an option
        if isinstance(action, argparse._StoreTrueAction):
            assert isinstance(value, bool), (dest, value)
        elif action.type is Path:
            assert isinstance(value, Path) and value.is_absolute(), (dest, value)
        elif action.type is int or dest in ("fabric_key_rotation", "history_age"):
            assert isinstance(value, int) and not isinstance(value, bool), (dest, value)
            assert value >= 0, (dest, value)
        elif action.type is float:
            assert isinstance(value, float) and value == value, (dest, value)  # not NaN
        else:
            assert isinstance(value, str) and value.strip(), (dest, value)
        if action.choices:
            assert value in action.choices, (dest, value)


def as_defaults(command: str, settings: dict) -> None:
    """The settings as the subcommand's defaults (what `configs.apply` does), then parsed:
    the command line takes every one as it is."""
    parser = _SUBS[command]
    saved = {a.dest: a.default for a in parser._actions}, dict(parser._defaults)
    try:
        parser.set_defaults(**settings)
        args = _TOP.parse_args([command])
    finally:
        for a in parser._actions:
            a.default = saved[0][a.dest]
        parser._defaults.clear()
        parser._defaults.update(saved[1])
    for dest, value in settings.items():
        assert getattr(args, dest) == value, dest


def load_or_refuse(command: str, text: str, record=event) -> None:
    try:
        settings = SCHEMAS[command].loads(text, ORIGIN, BASE)
    except ConfigError as e:
        assert e.problems and str(e) == "\n".join(e.problems)
        for problem in e.problems:
            assert problem.startswith(f"{ORIGIN}: ") and problem[len(ORIGIN) + 2:].strip(), \
                problem
        record("refused")
        return
    record("accepted" if settings else "accepted: empty")
    check_types(command, settings)
    as_defaults(command, settings)


@fuzz()
@given(texts("relay"))
def test_a_relay_file_loads_or_says_what_is_wrong(text):
    load_or_refuse("relay", text)


@fuzz()
@given(texts("controller"))
def test_a_controller_file_loads_or_says_what_is_wrong(text):
    load_or_refuse("controller", text)


@fuzz(0.5)
@given(st.sampled_from(sorted(SCHEMAS)), st.data())
def test_hostile_documents_of_known_fields(command, data):
    """Known fields in their sections, with nested hostile values."""
    schema = SCHEMAS[command]
    flat = data.draw(st.dictionaries(st.sampled_from(sorted(schema.fields)), values,
                                     min_size=1, max_size=4))
    text = dumped(nest(flat))
    if text:
        load_or_refuse(command, text)


def test_every_field_with_every_listed_value():
    """Each field's converter with each of the values above: every converter meets every one
    (not left to chance). Invalid or a value of the flag's type, nothing else."""
    from skymesh.config import Invalid

    failures = []
    for command, schema in SCHEMAS.items():
        for path, field in schema.fields.items():
            for value in [*GOOD, *HOSTILE]:
                try:
                    out = field.convert(value, BASE)
                except Invalid as e:
                    assert str(e), (path, value)
                    continue
                except Exception as e:  # the contract: only Invalid
                    failures.append(f"{command} {path}: {str(value)[:30]}: "
                                    f"{type(e).__name__}: {str(e)[:80]}")
                    continue
                check_types(command, {field.dest: out})
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
