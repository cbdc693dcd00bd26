import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from skymesh.catalogue import Region, load_catalogue
from skymesh.countries import ISO_ALPHA2
from skymesh.policy import (
    Policy,
    PolicyError,
    Zone,
    allow_all,
    default_policy_path,
    load_policy,
    parse_policy,
)

ROOT = Path(__file__).resolve().parents[3]
SHIPPED_REGIONS = ROOT / "regions"
NAME_RULE = "zone name must match ^[a-z0-9-]{1,32}$"
EMPTY = "empty: selects no region of the catalogue"


def region(region_id: str, country: str, *tags: str) -> Region:
    return Region(id=region_id, name=region_id.upper(), country=country, lat=0.0, lon=0.0,
                  tags=tags)


# A small catalogue: two EU regions, Switzerland, the US (twice), mainland China, Hong Kong.
SMALL = {
    r.id: r
    for r in (
        region("aa", "DE", "europe", "eu"),
        region("bb", "FR", "europe", "eu"),
        region("cc", "CH", "europe"),
        region("dd", "US", "north-america"),
        region("ee", "US", "north-america", "edge"),
        region("ff", "CN", "asia", "cn"),
        region("gg", "HK", "asia"),
    )
}


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Work in tmp_path, so that messages read `policy.yaml: ...`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_text(text: str, catalogue=SMALL) -> Policy:
    Path("policy.yaml").write_text(text, encoding="utf-8")
    return load_policy("policy.yaml", catalogue)


def problems_for(text: str, catalogue=SMALL) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_text(text, catalogue)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def one_problem(text: str, catalogue=SMALL) -> str:
    problems = problems_for(text, catalogue)
    assert len(problems) == 1, problems
    return problems[0]


def members(policy: Policy) -> dict[str, list[str]]:
    return {name: sorted(zone.regions) for name, zone in policy.zones.items()}


# --- the shipped policy -------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(SHIPPED_REGIONS)


@pytest.fixture(scope="module")
def shipped(catalogue):
    return load_policy(default_policy_path(), catalogue)


def test_default_policy_path():
    assert default_policy_path() == SHIPPED_REGIONS / "policy.yaml"
    assert default_policy_path().is_file()


def test_shipped_policy_loads(shipped, catalogue):
    assert len(catalogue) == 45
    assert list(shipped.zones) == [
        "africa", "asia", "cn", "eu", "europe", "global", "in", "jp", "na", "oceania", "sa",
        "us",
    ]
    assert shipped.source == str(default_policy_path())
    for name, zone in shipped.zones.items():
        assert zone.name == name
        assert zone.regions, name
        assert zone.regions <= set(catalogue), name
        assert zone.description.strip() and "\n" not in zone.description, name
    assert shipped.zones["global"].regions == set(catalogue)


def test_shipped_eu(shipped):
    eu = shipped.zone("eu").regions
    assert {"frankfurt", "paris", "stockholm", "dublin", "amsterdam", "madrid", "milan",
            "warsaw"} == eu
    assert not {"london", "zurich"} & eu


def test_shipped_europe(shipped):
    europe = shipped.zone("europe").regions
    assert shipped.zone("eu").regions < europe
    assert europe - shipped.zone("eu").regions == {"london", "zurich"}
    assert not {"tel-aviv", "dubai", "cairo"} & europe


def test_shipped_china_and_asia(shipped):
    assert shipped.zone("cn").regions == {"beijing", "shanghai"}
    asia = shipped.zone("asia").regions
    assert not asia & {"beijing", "shanghai"}  # Agora's ASIA excludes mainland China
    assert {"hong-kong", "tokyo", "osaka", "seoul", "singapore", "jakarta", "mumbai", "delhi",
            "chennai", "dubai", "tel-aviv"} == asia
    assert shipped.zone("jp").regions == {"tokyo", "osaka"}
    assert shipped.zone("in").regions == {"mumbai", "delhi", "chennai"}
    assert shipped.zone("jp").regions < asia and shipped.zone("in").regions < asia


def test_shipped_americas(shipped):
    us = shipped.zone("us").regions
    assert us == {"ashburn", "chicago", "dallas", "los-angeles", "miami", "new-york",
                  "san-jose", "seattle"}
    assert shipped.zone("na").regions == us | {"toronto", "mexico-city"}
    assert shipped.zone("sa").regions == {"bogota", "buenos-aires", "lima", "santiago",
                                          "sao-paulo"}


def test_shipped_oceania_and_africa(shipped):
    assert shipped.zone("oceania").regions == {"sydney", "melbourne"}
    assert shipped.zone("africa").regions == {"cairo", "cape-town", "johannesburg", "lagos",
                                              "nairobi"}


def test_shipped_continents_partition_the_catalogue(shipped, catalogue):
    continental = ("africa", "asia", "cn", "europe", "na", "oceania", "sa")
    for region_id in catalogue:
        zones = shipped.zones_of(region_id)
        assert "global" in zones
        assert len(set(zones) & set(continental)) == 1, (region_id, zones)


def test_shipped_policy_file_lists(catalogue):
    data = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    zones = data["zones"]
    eu = set(zones["eu"]["countries"])
    assert eu == {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS",
        "LI", "NO",
    }
    assert eu | {"GB", "CH"} <= set(zones["europe"]["countries"])
    assert "CN" not in zones["asia"]["countries"]
    assert {"HK", "MO", "TW"} <= set(zones["asia"]["countries"])
    assert zones["na"]["countries"] == ["US", "CA", "MX"]
    assert zones["global"] == {"description": zones["global"]["description"], "all": True}
    # No country sits in two continental zones.
    continental = ("africa", "asia", "cn", "europe", "na", "oceania", "sa")
    seen: dict[str, str] = {}
    for name in continental:
        for code in zones[name]["countries"]:
            assert code in ISO_ALPHA2
            assert seen.setdefault(code, name) == name, (code, seen[code], name)


def test_shipped_policy_restricted_to_a_few_regions(shipped):
    small = shipped.restrict(["frankfurt", "london", "tokyo"])
    assert members(small) == {
        "africa": [], "asia": ["tokyo"], "cn": [], "eu": ["frankfurt"],
        "europe": ["frankfurt", "london"], "global": ["frankfurt", "london", "tokyo"],
        "in": [], "jp": ["tokyo"], "na": [], "oceania": [], "sa": [], "us": [],
    }


def test_shipped_policy_to_dict(shipped):
    data = json.loads(json.dumps(shipped.to_dict()))
    assert set(data) == {"zones"}
    assert data["zones"]["jp"] == {
        "regions": ["osaka", "tokyo"],
        "description": shipped.zone("jp").description,
    }


# --- what a zone selects -------------------------------------------------------------------


def test_selectors_union_then_exclude(here):
    policy = load_text(
        """\
zones:
  mixed:
    description: union of everything
    countries: [CH]
    tags: [cn, edge]
    regions: [aa]
    exclude: [ff]
  eu:
    tags: [eu]
  us:
    countries: [US]
    exclude: [dd]
  world:
    all: true
    exclude: [ff, gg]
"""
    )
    assert members(policy) == {
        "eu": ["aa", "bb"],
        "mixed": ["aa", "cc", "ee"],
        "us": ["ee"],
        "world": ["aa", "bb", "cc", "dd", "ee"],
    }
    assert list(policy.zones) == ["eu", "mixed", "us", "world"]  # ordered by name
    assert policy.zone("mixed").description == "union of everything"
    assert policy.zone("eu").description == ""
    assert policy.source == "policy.yaml"


def test_all_false_and_empty_lists(here):
    policy = load_text("zones:\n  eu:\n    all: false\n    countries: [DE]\n    tags: []\n")
    assert members(policy) == {"eu": ["aa"]}


def test_unquoted_country_codes_are_codes(here):
    # YAML 1.1 reads NO (Norway) and ON as booleans; the policy reads them as written
    catalogue = {**SMALL, "oslo": region("oslo", "NO"), "pristina": region("pristina", "XK")}
    assert one_problem("zones:\n  north:\n    countries: [NO, ON, XK]\n", catalogue) == (
        "policy.yaml: zones.north.countries[1]: 'ON' is not an ISO 3166-1 alpha-2 code")
    policy = load_text("zones:\n  north:\n    countries: [NO, XK]\n    all: false\n",
                       catalogue)
    assert members(policy) == {"north": ["oslo", "pristina"]}


def test_duplicates_are_fine(here):
    policy = load_text(
        "zones:\n  x:\n    countries: [DE, DE, FR]\n    regions: [aa, aa]\n"
        "    tags: [eu, eu]\n    exclude: [bb, bb]\n"
    )
    assert members(policy) == {"x": ["aa"]}


def test_description_may_be_blank(here):
    policy = load_text("zones:\n  x:\n    description:\n    regions: [aa]\n")
    assert policy.zone("x").description == ""


def test_zone_names_at_the_limits(here):
    name = "a" * 32
    policy = load_text(f"zones:\n  {name}: {{regions: [aa]}}\n  '0': {{regions: [bb]}}\n")
    assert list(policy.zones) == ["0", name]


def test_load_policy_accepts_a_path(here):
    Path("p.yaml").write_text("zones: {x: {regions: [aa]}}\n")
    assert load_policy(here / "p.yaml", SMALL).source == str(here / "p.yaml")
    assert load_policy(Path("p.yaml"), SMALL).source == "p.yaml"


# --- one message per kind of problem ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "zones:\n  eu:\n    countries: [DE, FR, IT, XX]\n",
            "zones.eu.countries[3]: 'XX' is not an ISO 3166-1 alpha-2 code",
        ),
        (
            "zones:\n  eu:\n    countries: [de]\n",
            "zones.eu.countries[0]: 'de' is not an ISO 3166-1 alpha-2 code",
        ),
        (
            "zones:\n  eu:\n    countries: [UK, DE]\n",
            "zones.eu.countries[0]: 'UK' is not an ISO 3166-1 alpha-2 code (use GB)",
        ),
        (
            "zones:\n  us:\n    regions: [atlantis]\n",
            "zones.us.regions[0]: unknown region 'atlantis'",
        ),
        (
            "zones:\n  us:\n    countries: [US]\n    exclude: [dd, nowhere]\n",
            "zones.us.exclude[1]: unknown region 'nowhere'",
        ),
        ("zones:\n  cn:\n    countries: [JP]\n", f"zones.cn: {EMPTY}"),
        ("zones:\n  cn:\n    tags: [moon]\n", f"zones.cn: {EMPTY}"),
        ("zones:\n  cn: {}\n", f"zones.cn: {EMPTY}"),
        ("zones:\n  cn:\n    countries: [CN]\n    exclude: [ff]\n", f"zones.cn: {EMPTY}"),
        ("zones:\n  cn:\n    all: false\n", f"zones.cn: {EMPTY}"),
        (
            "zones:\n  eu:\n    countries: [DE]\n    countrys: [FR]\n",
            "zones.eu: unknown key 'countrys'",
        ),
        ("zones:\n  eu:\n    countries: [DE]\n    7: x\n", "zones.eu: unknown key 7"),
        ("zone:\n  eu: {countries: [DE]}\n", "document: unknown key 'zone'"),
        ("zones:\n  EU:\n    countries: [DE]\n", f"zones.EU: {NAME_RULE}"),
        ("zones:\n  e_u:\n    countries: [DE]\n", f"zones.e_u: {NAME_RULE}"),
        ("zones:\n  eu west:\n    countries: [DE]\n", f"zones.eu west: {NAME_RULE}"),
        ("zones:\n  'eu ':\n    countries: [DE]\n", f"zones.'eu ': {NAME_RULE}"),
        ("zones:\n  '':\n    countries: [DE]\n", f"zones.'': {NAME_RULE}"),
        ("zones:\n  7:\n    countries: [DE]\n", f"zones.7: {NAME_RULE}"),
        (f"zones:\n  {'a' * 33}:\n    countries: [DE]\n", f"zones.{'a' * 33}: {NAME_RULE}"),
        ("zones:\n  global:\n    all: maybe\n", "zones.global.all: must be true or false"),
        ("zones:\n  global:\n    all: 1\n", "zones.global.all: must be true or false"),
        ("zones:\n  global:\n    all: 'true'\n", "zones.global.all: must be true or false"),
        ("zones:\n  global:\n    all:\n", "zones.global.all: must be true or false"),
        (
            "zones:\n  global:\n    all: true\n    countries: [DE]\n",
            "zones.global: 'all: true' cannot be combined with countries/tags/regions",
        ),
        (
            "zones:\n  global:\n    all: true\n    tags: []\n",
            "zones.global: 'all: true' cannot be combined with countries/tags/regions",
        ),
        (
            "zones:\n  global:\n    all: true\n    regions: [aa]\n",
            "zones.global: 'all: true' cannot be combined with countries/tags/regions",
        ),
        (
            "zones:\n  eu:\n    countries: DE\n",
            "zones.eu.countries: must be a list of strings, got 'DE'",
        ),
        (
            "zones:\n  eu:\n    countries:\n",
            "zones.eu.countries: must be a list of strings, got None",
        ),
        (
            "zones:\n  eu:\n    tags: {eu: 1}\n",
            "zones.eu.tags: must be a list of strings, got {'eu': 1}",
        ),
        (
            "zones:\n  eu:\n    tags: [eu, 3]\n",
            "zones.eu.tags[1]: must be a non-empty string, got 3",
        ),
        (
            "zones:\n  eu:\n    regions: [aa, [bb]]\n",
            "zones.eu.regions[1]: must be a non-empty string, got ['bb']",
        ),
        (
            "zones:\n  eu:\n    regions: [aa]\n    exclude: ['']\n",
            "zones.eu.exclude[0]: must be a non-empty string, got ''",
        ),
        (
            "zones:\n  eu:\n    countries: [DE, ~]\n",
            "zones.eu.countries[1]: must be a non-empty string, got None",
        ),
        (
            "zones:\n  eu:\n    countries: [DE, false]\n",
            "zones.eu.countries[1]: must be a non-empty string, got False",
        ),
        (
            "zones:\n  eu:\n    countries: [DE, XX]\n",
            "zones.eu.countries[1]: 'XX' is not an ISO 3166-1 alpha-2 code",
        ),
        (
            "zones:\n  eu:\n    description: [a]\n    countries: [DE]\n",
            "zones.eu.description: must be a string, got ['a']",
        ),
        ("zones:\n  eu: [DE, FR]\n", "zones.eu: must be a mapping of zone fields, got list"),
        ("zones:\n  eu:\n", "zones.eu: must be a mapping of zone fields, got None"),
        ("zones:\n  eu: DE\n", "zones.eu: must be a mapping of zone fields, got str"),
        ("zones: [eu, us]\n", "zones: must be a mapping of zone names to zones, got list"),
        ("zones: eu\n", "zones: must be a mapping of zone names to zones, got str"),
        ("zones:\n", "zones: no zones defined"),
        ("zones: {}\n", "zones: no zones defined"),
        ("other: 1\n", "document: unknown key 'other'"),
        ("{}\n", "zones: missing"),
        ("- a\n- b\n", "document: must be a mapping with a 'zones' key, got list"),
        ("just text\n", "document: must be a mapping with a 'zones' key, got str"),
        ("42\n", "document: must be a mapping with a 'zones' key, got int"),
        ("", "document: file is empty"),
        ("# only a comment\n", "document: file is empty"),
    ],
)
def test_problem_messages(here, text, message):
    problems = problems_for(text)
    if message.startswith("document: unknown key"):
        assert problems == [f"policy.yaml: {message}", "policy.yaml: zones: missing"]
    else:
        assert problems == [f"policy.yaml: {message}"]


def test_zones_missing(here):
    assert one_problem("{}\n") == "policy.yaml: zones: missing"


def test_yaml_syntax_error(here):
    message = one_problem("zones:\n  eu:\n    countries: [DE, FR\n")
    assert message.startswith("policy.yaml: yaml: line ") and "column" in message
    assert "\n" not in message
    assert one_problem("zones: x\n  bad: indent\n") == (
        "policy.yaml: yaml: line 2, column 6: mapping values are not allowed here"
    )


def test_unreadable_file(here):
    with pytest.raises(PolicyError) as info:
        load_policy("policy.yaml", SMALL)
    assert info.value.problems == [
        "policy.yaml: read: [Errno 2] No such file or directory: 'policy.yaml'"
    ]
    Path("dir.yaml").mkdir()
    with pytest.raises(PolicyError) as info:
        load_policy("dir.yaml", SMALL)
    [message] = info.value.problems
    assert message.startswith("dir.yaml: read: ")
    Path("policy.yaml").write_bytes(b"zones:\n  eu:\n    description: \xff\xfe\n")
    with pytest.raises(PolicyError) as info:
        load_policy("policy.yaml", SMALL)
    [message] = info.value.problems
    assert message.startswith("policy.yaml: read: ")


def test_all_problems_reported_together(here):
    problems = problems_for(
        """\
zones:
  eu:
    description: EU
    countries: [DE, XX, 12]
    countrys: [FR]
  EU:
    tags: [eu]
  us:
    regions: [atlantis, dd]
    exclude: [dd, nowhere]
  cn:
    countries: [JP]
  global:
    all: yes please
  world:
    all: true
    regions: [aa]
  fine:
    countries: [DE]
  bad-body: 3
extra: true
"""
    )
    assert problems == [
        "policy.yaml: document: unknown key 'extra'",
        "policy.yaml: zones.eu: unknown key 'countrys'",
        "policy.yaml: zones.eu.countries[1]: 'XX' is not an ISO 3166-1 alpha-2 code",
        "policy.yaml: zones.eu.countries[2]: must be a non-empty string, got 12",
        f"policy.yaml: zones.EU: {NAME_RULE}",
        "policy.yaml: zones.us.regions[0]: unknown region 'atlantis'",
        "policy.yaml: zones.us.exclude[1]: unknown region 'nowhere'",
        f"policy.yaml: zones.cn: {EMPTY}",
        "policy.yaml: zones.global.all: must be true or false",
        "policy.yaml: zones.world: 'all: true' cannot be combined with countries/tags/regions",
        "policy.yaml: zones.bad-body: must be a mapping of zone fields, got int",
    ]


def test_zone_with_other_problems_is_not_also_reported_empty(here):
    # Only the root cause: `atlantis` is the problem, not that the zone ends up empty.
    assert one_problem("zones:\n  us:\n    regions: [atlantis]\n") == (
        "policy.yaml: zones.us.regions[0]: unknown region 'atlantis'"
    )


def test_empty_catalogue_makes_every_zone_empty(here):
    assert problems_for("zones:\n  global: {all: true}\n  eu: {countries: [DE]}\n", {}) == [
        f"policy.yaml: zones.global: {EMPTY}",
        f"policy.yaml: zones.eu: {EMPTY}",
    ]


def test_policy_error_is_a_value_error():
    error = PolicyError(["a: b: c", "d: e: f"])
    assert isinstance(error, ValueError)
    assert str(error) == "a: b: c\nd: e: f"
    assert error.problems == ["a: b: c", "d: e: f"]


def test_parse_policy_directly():
    policy, problems = parse_policy({"zones": {"x": {"regions": ["aa"]}}}, "mem", SMALL)
    assert problems == [] and policy is not None
    assert policy == Policy(zones={"x": Zone("x", frozenset({"aa"}))}, source="mem")
    policy, problems = parse_policy({"zones": {"x": {"regions": ["zz"]}}}, "mem", SMALL)
    assert policy is None
    assert problems == ["mem: zones.x.regions[0]: unknown region 'zz'"]
    policy, problems = parse_policy({"zones": {("a", "b"): {}}}, "mem", SMALL)
    assert problems == [
        f"mem: zones.('a', 'b'): {NAME_RULE}",
        f"mem: zones.('a', 'b'): {EMPTY}",
    ]


# --- the Policy object ----------------------------------------------------------------------


def sample() -> Policy:
    return Policy(
        zones={
            "us": Zone("us", frozenset({"dd", "ee"}), "United States"),
            "eu": Zone("eu", frozenset({"aa", "bb"}), "EU"),
            "global": Zone("global", frozenset(SMALL), "all"),
        },
        source="mem",
    )


def test_zones_are_ordered_by_name_and_frozen():
    policy = sample()
    assert list(policy.zones) == ["eu", "global", "us"]
    assert Zone("x", {"b", "a"}).regions == frozenset({"a", "b"})  # type: ignore[arg-type]
    assert isinstance(Zone("x", ["a"]).regions, frozenset)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        policy.source = "other"  # type: ignore[misc]
    assert policy == sample() and hash(policy) == hash(sample())
    assert policy != Policy(zones={"eu": policy.zones["eu"]}, source="mem")


def test_zone_lookup():
    policy = sample()
    assert policy.zone("eu").regions == {"aa", "bb"}
    with pytest.raises(KeyError) as info:
        policy.zone("cn")
    assert str(info.value) == "unknown zone 'cn' in mem; known zones: eu, global, us"
    with pytest.raises(KeyError, match="unknown zone 'x'; known zones: global"):
        allow_all(SMALL).zone("x")
    with pytest.raises(KeyError, match="known zones: none"):
        Policy(zones={}).zone("eu")
    with pytest.raises(KeyError, match=r"unknown zone \['eu'\]"):
        policy.zone(["eu"])  # type: ignore[arg-type]


def test_zones_of():
    policy = sample()
    assert policy.zones_of("aa") == ["eu", "global"]
    assert policy.zones_of("ee") == ["global", "us"]
    assert policy.zones_of("cc") == ["global"]
    assert policy.zones_of("atlantis") == []


def test_restrict():
    policy = sample()
    small = policy.restrict(["aa", "dd", "atlantis"])
    assert members(small) == {"eu": ["aa"], "global": ["aa", "dd"], "us": ["dd"]}
    assert small.source == "mem"
    assert small.zone("us").description == "United States"
    assert members(policy.restrict(iter(["cc"]))) == {"eu": [], "global": ["cc"], "us": []}
    assert members(policy.restrict("bb")) == {"eu": ["bb"], "global": ["bb"], "us": []}
    assert members(policy.restrict([])) == {"eu": [], "global": [], "us": []}
    assert policy.restrict(SMALL) == policy
    assert members(policy) == members(sample())  # the original is unchanged


def test_to_dict():
    data = sample().to_dict()
    assert data == {
        "zones": {
            "eu": {"regions": ["aa", "bb"], "description": "EU"},
            "global": {"regions": sorted(SMALL), "description": "all"},
            "us": {"regions": ["dd", "ee"], "description": "United States"},
        }
    }
    assert list(data["zones"]) == ["eu", "global", "us"]
    json.dumps(data)


def test_allow_all():
    policy = allow_all(SMALL)
    assert list(policy.zones) == ["global"]
    assert policy.zone("global").regions == set(SMALL)
    assert policy.zone("global").description
    assert all(policy.zones_of(region_id) == ["global"] for region_id in SMALL)
    assert allow_all({}).zone("global").regions == frozenset()


# --- properties ---------------------------------------------------------------------------


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)
zone_body = st.fixed_dictionaries(
    {},
    optional={
        "description": json_like | st.text(max_size=20),
        "all": json_like | st.booleans(),
        "countries": json_like | st.lists(st.sampled_from(["DE", "US", "CN", "XX", "JP"])),
        "tags": json_like | st.lists(st.sampled_from(["eu", "cn", "edge", "moon"])),
        "regions": json_like | st.lists(st.sampled_from([*SMALL, "atlantis"])),
        "exclude": json_like | st.lists(st.sampled_from([*SMALL, "atlantis"])),
        "countrys": json_like,
    },
)
zone_names = st.sampled_from(["eu", "us", "global", "EU", "a" * 33, ""]) | json_like.filter(
    lambda v: not isinstance(v, list | dict)
)
documents = st.one_of(
    json_like,
    st.fixed_dictionaries(
        {},
        optional={
            "zones": json_like | st.dictionaries(zone_names, zone_body | json_like, max_size=4),
            "other": json_like,
        },
    ),
)


@given(documents)
def test_parse_policy_never_raises(data):
    policy, problems = parse_policy(data, "p.yaml", SMALL)
    assert (policy is None) == bool(problems)
    for problem in problems:
        assert problem.startswith("p.yaml: ") and ": " in problem[len("p.yaml: ") :]
        assert "\n" not in problem
    if policy is not None:
        assert policy.zones and list(policy.zones) == sorted(policy.zones)
        for zone in policy.zones.values():
            assert zone.regions and zone.regions <= set(SMALL)
        json.dumps(policy.to_dict())


valid_body = st.fixed_dictionaries(
    {},
    optional={
        "countries": st.lists(st.sampled_from(["DE", "FR", "CH", "US", "CN", "HK", "JP"])),
        "tags": st.lists(st.sampled_from(["eu", "cn", "edge", "europe", "moon"])),
        "regions": st.lists(st.sampled_from(sorted(SMALL))),
        "exclude": st.lists(st.sampled_from(sorted(SMALL))),
    },
) | st.fixed_dictionaries(
    {"all": st.just(True)}, optional={"exclude": st.lists(st.sampled_from(sorted(SMALL)))}
)


def expected_regions(body: dict) -> set[str]:
    if body.get("all"):
        chosen = set(SMALL)
    else:
        chosen = {
            r.id
            for r in SMALL.values()
            if r.country in body.get("countries", [])
            or set(r.tags) & set(body.get("tags", []))
            or r.id in body.get("regions", [])
        }
    return chosen - set(body.get("exclude", []))


@given(st.dictionaries(st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True), valid_body,
                       min_size=1, max_size=5))
def test_valid_zones_select_what_the_rules_say(zones):
    policy, problems = parse_policy({"zones": zones}, "p.yaml", SMALL)
    empty = sorted(name for name, body in zones.items() if not expected_regions(body))
    assert problems == [
        f"p.yaml: zones.{name}: {EMPTY}" for name in zones if name in empty
    ]
    if policy is not None:
        assert members(policy) == {
            name: sorted(expected_regions(body)) for name, body in sorted(zones.items())
        }


@given(st.sets(st.sampled_from([*SMALL, "atlantis"])))
def test_restrict_and_zones_of_agree(keep):
    policy = sample()
    small = policy.restrict(keep)
    assert list(small.zones) == list(policy.zones)
    for name, zone in small.zones.items():
        assert zone.regions == policy.zones[name].regions & keep
    for region_id in [*SMALL, "atlantis"]:
        expected = policy.zones_of(region_id) if region_id in keep else []
        assert small.zones_of(region_id) == expected
