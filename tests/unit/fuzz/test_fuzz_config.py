"""Hostile configuration files: region files (skymesh/catalogue.py), the residency policy
(skymesh/policy.py), latency matrices and WAN model files (skymesh/wan.py), all read through
skymesh/yamlfile.py where they are YAML. Fed arbitrary bytes, YAML-looking text (anchors,
aliases, tags, flow and block collections, YAML 1.1 scalars) and arbitrary data structures.

Each loader raises only its documented error, every problem as `file: field: what`, or
returns well-formed values. (skymesh/apps.py, the apps file, has its own tests.)"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import yaml
from fuzzing import fuzz, nasty_floats, nasty_text
from hypothesis import event, given
from hypothesis import strategies as st

from skymesh import yamlfile
from skymesh.catalogue import CatalogueError, Region, load_catalogue
from skymesh.countries import COUNTRY_CODES
from skymesh.policy import PolicyError, load_policy
from skymesh.wan import MAX_RTT_MS, MatrixError, WanLink, load_matrix, load_model_row

SCALARS = ["NO", "no", "ON", "off", "yes", "Y", "n", "~", "null", "true", "False", "0x_",
           "0b2", "0o7", "1_000", "1:30", "._", "-.inf", ".NaN", "1e999", "-0", "2024-02-30",
           "2024-13-45 25:61:61", "=", "<<", "'NO'", '"\\ud800"', "!!bool maybe", "!!int x",
           "!!float x", "!!binary x==", "!!set {a}", "!!timestamp 2020-01-01", "!!str 1",
           "!!python/object:os.system x", "!!null", "&a x", "*a", "*nope", "DE", "XK", "UK",
           "de", "50.1", "-91", "181", "12345678901234567890123", "[]", "{}", "''", "é",
           "\t", "|\n  block", ">-\n  folded", "? complex", "%YAML 1.1", "---", "...", "#"]
KEYS = ["id", "name", "country", "lat", "lon", "tags", "zones", "global", "eu", "all",
        "countries", "regions", "exclude", "description", "<<", "? [a]", "1", "~", ""]

# YAML-looking text: lines of `key: value`, list items and nested blocks, from pieces that
# trip YAML 1.1 and PyYAML
yaml_lines = st.lists(st.builds(
    lambda indent, kind, key, value: " " * indent + {
        "map": f"{key}: {value}", "item": f"- {value}", "flow": f"{key}: [{value}, {value}]",
        "anchor": f"{key}: &{value[:3].strip('&*!') or 'a'} [{value}]", "raw": value}[kind],
    st.sampled_from([0, 0, 0, 2, 4, 1]), st.sampled_from(["map", "map", "item", "flow",
                                                           "anchor", "raw"]),
    st.sampled_from(KEYS), st.sampled_from(SCALARS) | st.text(max_size=8)), max_size=12)
yaml_text = yaml_lines.map("\n".join)

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | nasty_floats | nasty_text,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | nasty_text, c,
                                                        max_size=4),
    max_leaves=16)


def region_doc(**overrides) -> dict:
    doc = {"id": "xx", "name": "X", "country": "DE", "lat": 1.5, "lon": 2.5, "tags": ["eu"]}
    return {**doc, **overrides}


region_docs = st.one_of(
    json_like,
    st.builds(lambda changes: region_doc(**changes),
              st.dictionaries(st.sampled_from(KEYS), json_like, max_size=3)))


def dumped(data: object) -> bytes:
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, RecursionError):
        return b""


file_bytes = st.one_of(st.binary(max_size=200), yaml_text.map(str.encode),
                       region_docs.map(dumped),
                       st.sampled_from([b"\xef\xbb\xbfid: xx\n", b"\x00", b"a: \x85",
                                        "id: xx\nname: \ud800".encode("utf-8", "surrogatepass"),
                                        b"[" * 5000, b"- " * 3000]))


def within(tmp: str, name: str, data: bytes) -> Path:
    path = Path(tmp) / name
    path.write_bytes(data)
    return path


def check_problems(problems: list[str], source: str) -> None:
    assert problems
    for p in problems:
        assert p.startswith(f"{source}: ") or p.startswith(f"{Path(source).parent}: "), p
        assert ": " in p[len(source) + 2:] or "not a directory" in p or "no region" in p, p


def check_region(r: Region) -> None:
    assert isinstance(r.id, str) and isinstance(r.name, str) and r.name.strip()
    assert r.country in COUNTRY_CODES
    assert math.isfinite(r.lat) and -90 <= r.lat <= 90
    assert math.isfinite(r.lon) and -180 <= r.lon <= 180
    assert all(isinstance(t, str) and t for t in r.tags)
    json.dumps(r.to_dict(), default=str)


@fuzz()
@given(st.one_of(yaml_text, st.text(max_size=80)))
def test_the_yaml_loader_raises_only_yaml_errors(text):
    try:
        data = yamlfile.load(text)
    except yaml.YAMLError as e:
        assert str(e)
        event(f"refused: {type(e).__name__}")
        return
    json.dumps(data, default=repr)  # plain data, no cycles


@fuzz(0.5)
@given(file_bytes)
def test_a_region_file_loads_or_says_what_is_wrong(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = within(tmp, "xx.yaml", data)
        try:
            regions = load_catalogue(tmp)
        except CatalogueError as e:
            check_problems(e.problems, str(path))
            event(f"refused: {e.problems[0][len(str(path)) + 2:].split(':')[0]}")
            return
    assert list(regions) == ["xx"]
    check_region(regions["xx"])
    event("accepted")


CATALOGUE = {r.id: r for r in (
    Region("aa", "A", "DE", 1.0, 1.0, ("eu",)), Region("bb", "B", "NO", 2.0, 2.0),
    Region("cc", "C", "XK", 3.0, 3.0, ("eu",)), Region("dd", "D", "US", 4.0, 4.0))}


def policy_doc(zones: dict) -> dict:
    return {"zones": zones}


zone_bodies = st.one_of(json_like, st.fixed_dictionaries({}, optional={
    "countries": st.lists(st.sampled_from(["DE", "NO", "XK", "UK", "de", "", None, False]) |
                          json_like, max_size=4),
    "tags": st.lists(st.sampled_from(["eu", ""]) | json_like, max_size=3),
    "regions": st.lists(st.sampled_from([*CATALOGUE, "zz"]) | json_like, max_size=3),
    "exclude": st.lists(st.sampled_from([*CATALOGUE, "zz"]) | json_like, max_size=3),
    "all": json_like, "description": json_like}))
# policies as operators write them (unquoted NO, XK), with a twist or two
written_policies = st.builds(
    lambda name, countries, extra: (f"zones:\n  {name}:\n    countries: [{', '.join(countries)}]"
                                    f"\n{extra}").encode(),
    st.sampled_from(["eu", "north", "global", "EU", "a b"]),
    st.lists(st.sampled_from(["DE", "NO", "XK", "ON", "UK", "de", "'NO'", "~", "[x]"]),
             min_size=1, max_size=4),
    st.sampled_from(["", "    all: false\n", "    all: yes\n", "    tags: [eu]\n",
                     "    exclude: [aa]\n", "    regions: [zz]\n", "  us:\n    all: true\n",
                     "extra: 1\n"]))
policy_bytes = st.one_of(
    file_bytes, written_policies, written_policies,
    st.dictionaries(st.sampled_from(["global", "eu", "EU", "a" * 40, ""]) | nasty_text,
                    zone_bodies, max_size=3).map(policy_doc).map(dumped),
)


@fuzz(0.5)
@given(policy_bytes)
def test_a_policy_file_loads_or_says_what_is_wrong(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = within(tmp, "policy.yaml", data)
        try:
            policy = load_policy(path, CATALOGUE)
        except PolicyError as e:
            check_problems(e.problems, str(path))
            return
    event("accepted")
    assert policy.zones
    for name, zone in policy.zones.items():
        assert isinstance(name, str) and zone.regions and zone.regions <= set(CATALOGUE)
    json.dumps(policy.to_dict())


IDS = ["ams", "fra", "nyc"]
numbers = st.one_of(st.sampled_from(["10", "0", "-1", "nan", "inf", "1e308", "1e400", "0.5",
                                     "1", "", " 7 ", "1_0", "0x10", "60000", "60000.1"]),
                    st.floats().map(repr), st.text(max_size=6))
good_numbers = st.one_of(st.floats(0.1, 500).map(repr), st.sampled_from(["10", " 7 "]))
rows = st.builds(lambda s, d, r, loss: f"{s},{d},{r},{loss}",
                 st.sampled_from([*IDS, *IDS, "", "zz", "ams "]),
                 st.sampled_from([*IDS, *IDS, "", "zz"]),
                 st.one_of(good_numbers, good_numbers, numbers),
                 st.one_of(st.just(""), st.just("0.01"), numbers))
good_rows = st.builds(lambda s, d, r: f"{s},{d},{r},0.01", st.sampled_from(IDS),
                      st.sampled_from(IDS), good_numbers)
matrices = st.one_of(
    st.binary(max_size=200),
    st.lists(good_rows, min_size=1, max_size=6).map(
        lambda lines: "\n".join(["src,dst,rtt_ms,loss", *lines]).encode()),
    st.builds(lambda head, lines: "\n".join([head, *lines]).encode(),
              st.sampled_from(["src,dst,rtt_ms,loss", "src,dst,rtt_ms", "dst,src,rtt_ms",
                               "src,dst", "", "src,src,dst,rtt_ms", "\ufeffsrc,dst,rtt_ms,loss",
                               "src,dst,rtt_ms,loss,extra"]),
              st.lists(rows | st.text(max_size=20), max_size=8)),
    st.sampled_from([b"src,dst,rtt_ms\n\"ams,fra,10\n", b"src,dst,rtt_ms\nams,fra,\x0010\n",
                     b"src,dst,rtt_ms\n" + b"a" * 200_000 + b",fra,1\n"]),
)


@fuzz()
@given(matrices)
def test_a_latency_matrix_loads_or_says_what_is_wrong(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = within(tmp, "m.csv", data)
        try:
            model = load_matrix(path, IDS)
        except MatrixError as e:
            assert all(line.startswith(str(path)) for line in str(e).splitlines()), str(e)
            return
    event("accepted")
    for (src, dst), link in model.items():
        assert src in IDS and dst in IDS and src != dst
        assert isinstance(link, WanLink)
        # (an RTT under 2 microseconds rounds to a delay of 0: harmless)
        assert math.isfinite(link.delay_ms) and 0 <= link.delay_ms <= MAX_RTT_MS / 2
        assert math.isfinite(link.jitter_ms) and link.jitter_ms >= 0
        assert 0 <= link.loss < 1


good_link = st.fixed_dictionaries({"delay_ms": st.floats(0, 100)},
                                  optional={"jitter_ms": st.floats(0, 2), "loss": st.just(0.0)})
model_json = st.one_of(
    st.binary(max_size=100),
    st.dictionaries(st.sampled_from(["fra", "nyc"]), good_link, max_size=2).map(
        lambda row: json.dumps({"links": {"ams": row}}).encode()),
    json_like.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["ams", "fra", "x"]), st.one_of(
        json_like, st.fixed_dictionaries({}, optional={
            "delay_ms": json_like | nasty_floats, "jitter_ms": nasty_floats,
            "loss": nasty_floats, "extra": json_like})), max_size=3).map(
        lambda row: json.dumps({"links": {"ams": row, "fra": {}}}).encode()),
    st.sampled_from([b"[" * 100_000, b'{"links": {"ams": {"fra": {"delay_ms": 1' + b"0" * 400
                     + b"}}}}"]),
)


@fuzz()
@given(model_json)
def test_a_wan_model_file_loads_or_says_what_is_wrong(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = within(tmp, "wan.json", data)
        try:
            row = load_model_row(path, "ams")
        except MatrixError as e:
            assert str(e).startswith(f"{path}: "), str(e)
            return
    event("accepted")
    for dst, link in row.items():
        assert isinstance(dst, str)
        assert math.isfinite(link.delay_ms) and link.delay_ms >= 0
        assert math.isfinite(link.jitter_ms) and link.jitter_ms >= 0 and 0 <= link.loss < 1


def test_missing_files_and_directories():
    with tempfile.TemporaryDirectory() as tmp:
        for call in (lambda: load_catalogue(os.path.join(tmp, "nope")),
                     lambda: load_policy(os.path.join(tmp, "nope.yaml"), CATALOGUE),
                     lambda: load_matrix(os.path.join(tmp, "nope.csv"), IDS),
                     lambda: load_model_row(os.path.join(tmp, "nope.json"), "ams")):
            try:
                call()
            except (CatalogueError, PolicyError, MatrixError) as e:
                assert tmp in str(e)
            else:
                raise AssertionError("no error for a missing file")
