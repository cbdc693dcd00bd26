import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skymesh.catalogue import CatalogueError, Region, load_catalogue, parse_region, select
from skymesh.countries import ISO_ALPHA2

SHIPPED = Path(__file__).resolve().parents[3] / "regions"
CONTINENTS = {
    "europe",
    "north-america",
    "south-america",
    "africa",
    "middle-east",
    "asia",
    "oceania",
}
GOOD = """\
id: {id}
name: Somewhere
country: DE
lat: 50.1
lon: 8.6
tags: [europe, eu]
"""


@pytest.fixture
def regions_dir(tmp_path, monkeypatch):
    """An empty `regions/` directory; messages then read `regions/<file>`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "regions").mkdir()
    return tmp_path / "regions"


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text, encoding="utf-8")


def problems_for(regions_dir: Path) -> list[str]:
    with pytest.raises(CatalogueError) as info:
        load_catalogue("regions")
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def one_problem(regions_dir: Path, text: str, name: str = "xx.yaml") -> str:
    write(regions_dir, name, text)
    problems = problems_for(regions_dir)
    assert len(problems) == 1, problems
    return problems[0]


def good_with(**changes: str | None) -> str:
    lines = GOOD.format(id="xx").splitlines()
    out = []
    for line in lines:
        key = line.split(":")[0]
        if key in changes:
            if changes[key] is not None:
                out.append(f"{key}: {changes.pop(key)}")
            else:
                changes.pop(key)
        else:
            out.append(line)
    out += [f"{key}: {value}" for key, value in changes.items()]
    return "\n".join(out) + "\n"


# --- the shipped catalogue ---------------------------------------------------------------


def test_shipped_catalogue_loads():
    regions = load_catalogue(SHIPPED)
    assert len(regions) >= 40
    assert list(regions) == sorted(regions)
    files = {path.stem for path in SHIPPED.glob("*.yaml") if path.name != "policy.yaml"}
    assert files == set(regions)
    assert (SHIPPED / "policy.yaml").is_file() and "policy" not in regions


def test_shipped_catalogue_covers_every_continent():
    regions = load_catalogue(SHIPPED).values()
    for region in regions:
        assert len(CONTINENTS & set(region.tags)) == 1, region.id
    assert {tag for r in regions for tag in r.tags if tag in CONTINENTS} == CONTINENTS


def test_shipped_jurisdiction_tags():
    regions = load_catalogue(SHIPPED)
    eu_members = {"DE", "NL", "FR", "IE", "SE", "PL", "ES", "IT"}
    for region in regions.values():
        assert ("eu" in region.tags) == (region.country in eu_members), region.id
        assert ("cn" in region.tags) == (region.country == "CN"), region.id
    assert regions["hong-kong"].country == "HK"
    assert regions["zurich"].country == "CH"
    assert regions["london"].country == "GB"


def test_shipped_regions_have_distinct_coordinates_and_capacity():
    regions = load_catalogue(SHIPPED).values()
    coords = [(r.lat, r.lon) for r in regions]
    assert len(set(coords)) == len(coords)
    for region in regions:
        capacity = region.extra["capacity"]
        assert capacity["relays"] >= 1 and capacity["gbps"] > 0, region.id


def test_shipped_spot_coordinates():
    regions = load_catalogue(SHIPPED)
    for region_id, lat, lon in [
        ("frankfurt", 50.11, 8.68),
        ("sao-paulo", -23.55, -46.63),
        ("sydney", -33.87, 151.21),
        ("tokyo", 35.68, 139.65),
        ("los-angeles", 34.05, -118.24),
    ]:
        assert math.isclose(regions[region_id].lat, lat, abs_tol=0.05)
        assert math.isclose(regions[region_id].lon, lon, abs_tol=0.05)


def test_countries_list():
    assert len(ISO_ALPHA2) == 249
    assert {"DE", "HK", "GB", "US", "CN", "AQ", "SS", "BQ"} <= ISO_ALPHA2
    assert not {"UK", "EU", "XK", "de"} & ISO_ALPHA2


# --- loading ------------------------------------------------------------------------------


def test_loads_regions_sorted_with_extra_fields(regions_dir):
    write(regions_dir, "zz.yaml", GOOD.format(id="zz") + "provider: {aws: eu-central-1}\n")
    write(regions_dir, "aa.yml", GOOD.format(id="aa") + "capacity: {relays: 2, gbps: 40}\n")
    write(regions_dir, "notes.txt", "not a region")
    (regions_dir / "sub").mkdir()
    write(regions_dir / "sub", "bad.yaml", "[")
    regions = load_catalogue(regions_dir)
    assert list(regions) == ["aa", "zz"]
    aa = regions["aa"]
    assert aa == Region(
        id="aa",
        name="Somewhere",
        country="DE",
        lat=50.1,
        lon=8.6,
        tags=("europe", "eu"),
        extra={"capacity": {"relays": 2, "gbps": 40}},
    )
    assert regions["zz"].extra == {"provider": {"aws": "eu-central-1"}}
    assert hash(aa) == hash(regions["aa"])


def test_to_dict_is_flat_and_json_ready(regions_dir):
    write(regions_dir, "xx.yaml", GOOD.format(id="xx") + "provider: {gcp: europe-west3}\n")
    region = load_catalogue("regions")["xx"]
    data = region.to_dict()
    assert data == {
        "id": "xx",
        "name": "Somewhere",
        "country": "DE",
        "lat": 50.1,
        "lon": 8.6,
        "tags": ["europe", "eu"],
        "provider": {"gcp": "europe-west3"},
    }
    json.dumps(data)
    data["provider"]["gcp"] = "changed"
    assert region.extra["provider"]["gcp"] == "europe-west3"


def test_integer_coordinates_become_floats_and_tags_are_optional(regions_dir):
    write(regions_dir, "xx.yaml", good_with(lat="50", lon="-8", tags=None))
    region = load_catalogue("regions")["xx"]
    assert (region.lat, region.lon, region.tags) == (50.0, -8.0, ())
    assert isinstance(region.lat, float)


def test_missing_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CatalogueError) as info:
        load_catalogue("regions")
    assert info.value.problems == ["regions: not a directory"]
    write(tmp_path, "regions", "a file")
    with pytest.raises(CatalogueError, match="^regions: not a directory$"):
        load_catalogue("regions")


def test_empty_directory(regions_dir):
    write(regions_dir, "README.md", "no regions here")
    assert problems_for(regions_dir) == ["regions: no region files found"]


def test_policy_file_is_not_a_region(regions_dir):
    write(regions_dir, "aa.yaml", GOOD.format(id="aa"))
    write(regions_dir, "policy.yaml", "zones:\n  global: {all: true}\n")
    assert list(load_catalogue(regions_dir)) == ["aa"]
    # Skipped by name, whatever it holds; only `policy.yaml`, not other spellings.
    write(regions_dir, "policy.yaml", "[not, a, region")
    assert list(load_catalogue(regions_dir)) == ["aa"]
    write(regions_dir, "policy.yml", "zones: {}\n")
    assert problems_for(regions_dir) == [
        "regions/policy.yml: id: missing",
        "regions/policy.yml: name: missing",
        "regions/policy.yml: country: missing",
        "regions/policy.yml: lat: missing",
        "regions/policy.yml: lon: missing",
    ]


def test_directory_with_only_a_policy_has_no_regions(regions_dir):
    write(regions_dir, "policy.yaml", "zones:\n  global: {all: true}\n")
    assert problems_for(regions_dir) == ["regions: no region files found"]


# --- one message per kind of problem ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lat": "123"}, "lat: must be a number between -90 and 90, got 123"),
        ({"lat": "-90.5"}, "lat: must be a number between -90 and 90, got -90.5"),
        ({"lon": "180.01"}, "lon: must be a number between -180 and 180, got 180.01"),
        ({"lat": ".nan"}, "lat: must be a number between -90 and 90, got nan"),
        ({"lon": ".inf"}, "lon: must be a number between -180 and 180, got inf"),
        ({"lon": "-.inf"}, "lon: must be a number between -180 and 180, got -inf"),
        ({"lat": "true"}, "lat: must be a number between -90 and 90, got True"),
        ({"lat": "'50.1'"}, "lat: must be a number between -90 and 90, got '50.1'"),
        ({"lon": "[1, 2]"}, "lon: must be a number between -180 and 180, got [1, 2]"),
        ({"country": "XX"}, "country: 'XX' is not an ISO 3166-1 alpha-2 code"),
        ({"country": "de"}, "country: 'de' is not an ISO 3166-1 alpha-2 code"),
        ({"country": "DEU"}, "country: 'DEU' is not an ISO 3166-1 alpha-2 code"),
        ({"country": "49"}, "country: 49 is not an ISO 3166-1 alpha-2 code"),
        ({"country": "UK"}, "country: 'UK' is not an ISO 3166-1 alpha-2 code (use GB)"),
        ({"country": "ON"}, "country: 'ON' is not an ISO 3166-1 alpha-2 code"),
        ({"country": "false"}, "country: False is not an ISO 3166-1 alpha-2 code"),
        ({"country": "!!bool maybe"}, "yaml: line 3, column 10: 'maybe' is not a valid boolean"),
        ({"lat": "2024-02-30"}, "lat: must be a number between -90 and 90, got '2024-02-30'"),
        ({"lat": "0x_"}, "yaml: line 4, column 6: '0x_' is not a valid integer"),
        ({"name": "!!binary aGk="},
         "yaml: line 2, column 7: could not determine a constructor for the tag "
         "'tag:yaml.org,2002:binary'"),
        ({"name": "''"}, "name: must be a non-empty string, got ''"),
        ({"name": "42"}, "name: must be a non-empty string, got 42"),
        ({"name": "{a: 1}"}, "name: must be a non-empty string, got {'a': 1}"),
        ({"name": None}, "name: missing"),
        ({"country": None}, "country: missing"),
        ({"lat": None}, "lat: missing"),
        ({"lon": None}, "lon: missing"),
        ({"tags": "europe"}, "tags: must be a list of non-empty strings, got 'europe'"),
        ({"tags": "[europe, '']"}, "tags: must be a list of non-empty strings, got ['europe', '']"),
        ({"tags": "[europe, 3]"}, "tags: must be a list of non-empty strings, got ['europe', 3]"),
        ({"tags": ""}, "tags: must be a list of non-empty strings, got None"),
        ({"tags": "[eu, eu]"}, "tags: duplicate tags in ['eu', 'eu']"),
    ],
)
def test_field_problems(regions_dir, changes, message):
    assert one_problem(regions_dir, good_with(**changes)) == f"regions/xx.yaml: {message}"


@pytest.mark.parametrize(
    ("written", "country"),
    [("NO", "NO"), ("'NO'", "NO"), ("XK", "XK"), ("GB", "GB")],
)
def test_country_codes_as_written(regions_dir, written, country):
    # YAML 1.1 reads an unquoted NO (Norway) as false; XK (Kosovo) is user-assigned but is
    # what MaxMind, the EU and WonderNetwork call Kosovo
    write(regions_dir, "xx.yaml", good_with(country=written))
    assert load_catalogue("regions")["xx"].country == country


def test_hostile_yaml_is_refused(regions_dir):
    levels = zip("abcdefgh", "bcdefghi", strict=True)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in levels)
    assert one_problem(regions_dir, good_with() + bomb) == (
        "regions/xx.yaml: yaml: aliases expand to more than 100000 values")
    assert one_problem(regions_dir, good_with() + "extra: &e [*e]\n") == (
        "regions/xx.yaml: yaml: a value contains itself (a recursive alias)")
    assert one_problem(regions_dir, good_with() + "extra: " + "[" * 5000) == (
        "regions/xx.yaml: yaml: nested too deeply")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("X", "'X'"), ("Frankfurt", "'Frankfurt'"), ("a_b", "'a_b'"), ("7", "7"), ("a" * 33, None)],
)
def test_bad_id(regions_dir, value, shown):
    shown = shown or repr(value)
    message = one_problem(regions_dir, GOOD.format(id=value))
    assert message == f"regions/xx.yaml: id: must match ^[a-z0-9-]{{2,32}}$, got {shown}"


def test_id_with_trailing_newline_is_rejected():
    _, problems = parse_region({**yaml_good("ab"), "id": "ab\n"}, "s.yaml")
    assert problems == ["s.yaml: id: must match ^[a-z0-9-]{2,32}$, got 'ab\\n'"]


def test_missing_id(regions_dir):
    assert one_problem(regions_dir, good_with(id=None)) == "regions/xx.yaml: id: missing"


def test_id_must_match_file_name(regions_dir):
    write(regions_dir, "yy.yaml", GOOD.format(id="xx"))
    assert problems_for(regions_dir) == [
        "regions/yy.yaml: id: 'xx' does not match the file name 'yy.yaml'"
    ]


def test_duplicate_ids(regions_dir):
    write(regions_dir, "aa.yaml", GOOD.format(id="bb"))
    write(regions_dir, "bb.yaml", GOOD.format(id="bb"))
    write(regions_dir, "bb.yml", GOOD.format(id="bb"))
    assert problems_for(regions_dir) == [
        "regions/aa.yaml: id: 'bb' does not match the file name 'aa.yaml'",
        "regions/bb.yaml: id: duplicate of regions/aa.yaml",
        "regions/bb.yml: id: duplicate of regions/aa.yaml",
    ]


def test_yaml_syntax_error_has_line(regions_dir):
    message = one_problem(regions_dir, "id: xx\nname: [unclosed\nlat: 1\n")
    assert message.startswith("regions/xx.yaml: yaml: line ")
    assert "column" in message and "\n" not in message
    message = one_problem(regions_dir, "id: xx\n  bad: indent\n")
    assert message == (
        "regions/xx.yaml: yaml: line 2, column 6: mapping values are not allowed here"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "document: must be a mapping of fields, got list"),
        ("just text\n", "document: must be a mapping of fields, got str"),
        ("42\n", "document: must be a mapping of fields, got int"),
        ("", "document: file is empty"),
        ("# only a comment\n", "document: file is empty"),
    ],
)
def test_top_level_not_a_mapping(regions_dir, text, message):
    assert one_problem(regions_dir, text) == f"regions/xx.yaml: {message}"


def test_non_string_field_name(regions_dir):
    message = one_problem(regions_dir, GOOD.format(id="xx") + "7: seven\n")
    assert message == "regions/xx.yaml: document: field names must be strings, got 7"


def test_undecodable_file(regions_dir):
    (regions_dir / "xx.yaml").write_bytes(b"id: xx\nname: \xff\xfe\n")
    [message] = problems_for(regions_dir)
    assert message.startswith("regions/xx.yaml: read: ")


def test_all_problems_reported_at_once(regions_dir):
    write(regions_dir, "good.yaml", GOOD.format(id="good"))
    write(regions_dir, "aa.yaml", "id: aa\nname: A\ncountry: XX\nlat: 91\nlon: 0\ntags: [x]\n")
    write(regions_dir, "bb.yaml", "id: bb\n")
    write(regions_dir, "cc.yaml", "id: cc\n  oops: 1\n")
    write(regions_dir, "dd.yml", "[1, 2]\n")
    assert problems_for(regions_dir) == [
        "regions/aa.yaml: country: 'XX' is not an ISO 3166-1 alpha-2 code",
        "regions/aa.yaml: lat: must be a number between -90 and 90, got 91",
        "regions/bb.yaml: name: missing",
        "regions/bb.yaml: country: missing",
        "regions/bb.yaml: lat: missing",
        "regions/bb.yaml: lon: missing",
        "regions/cc.yaml: yaml: line 2, column 7: mapping values are not allowed here",
        "regions/dd.yml: document: must be a mapping of fields, got list",
    ]


def test_catalogue_error_is_a_value_error():
    error = CatalogueError(["a: b: c", "d: e: f"])
    assert isinstance(error, ValueError)
    assert str(error) == "a: b: c\nd: e: f"
    assert error.problems == ["a: b: c", "d: e: f"]


# --- parse_region and select --------------------------------------------------------------


def yaml_good(region_id: str) -> dict:
    return {"id": region_id, "name": "N", "country": "FR", "lat": 1.5, "lon": 2, "tags": []}


def test_parse_region_directly():
    region, problems = parse_region({**yaml_good("ab"), "capacity": {"relays": 1}}, "src")
    assert problems == []
    assert region is not None and region.extra == {"capacity": {"relays": 1}}
    region, problems = parse_region({**yaml_good("ab"), "lat": 10**400}, "src")
    assert region is None
    assert problems == [f"src: lat: must be a number between -90 and 90, got {10**400!r}"]


def test_select():
    regions = {name: parse_region(yaml_good(name), "s")[0] for name in ("aa", "bb", "cc")}
    assert list(select(regions, ["cc", "aa", "cc"])) == ["aa", "cc"]
    assert select(regions, []) == {}
    assert list(select(regions, "bb")) == ["bb"]
    with pytest.raises(CatalogueError) as info:
        select(regions, ["aa", "xyz", "nope"])
    assert info.value.problems == [
        "--only: unknown region 'nope'",
        "--only: unknown region 'xyz'",
    ]
    assert str(CatalogueError(["--only: unknown region 'xyz'"])) == ("--only: unknown region 'xyz'")


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
field_values = st.fixed_dictionaries(
    {},
    optional={
        "id": json_like | st.from_regex(r"[a-z0-9-]{2,32}", fullmatch=True),
        "name": json_like,
        "country": json_like | st.sampled_from(sorted(ISO_ALPHA2)),
        "lat": json_like | st.floats(-90, 90),
        "lon": json_like | st.floats(-180, 180),
        "tags": json_like | st.lists(st.text(min_size=1, max_size=8), max_size=4),
        "extra": json_like,
    },
)


@given(
    st.one_of(
        json_like,
        field_values,
        st.dictionaries(
            json_like.filter(lambda v: not isinstance(v, list | dict)), json_like, max_size=4
        ),
    )
)
def test_parse_region_never_raises(data):
    region, problems = parse_region(data, "regions/p.yaml")
    assert (region is None) == bool(problems)
    assert all(p.startswith("regions/p.yaml: ") and ": " in p[16:] for p in problems)
    if region is not None:
        assert isinstance(region.lat, float) and -90 <= region.lat <= 90
        assert isinstance(region.lon, float) and -180 <= region.lon <= 180
        json.dumps(region.to_dict())
