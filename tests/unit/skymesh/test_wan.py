"""The emulated WAN: the geography model, RTT matrix files and the per-relay model dump."""

import math
import random
import statistics
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skymesh.geo import fiber_one_way_ms, haversine_km
from skymesh.wan import (
    ASYMMETRY,
    BASE_DELAY_MS,
    INFLATION_RANGE,
    JITTER_FRACTION,
    MAX_JITTER_MS,
    MAX_RTT_MS,
    MatrixError,
    WanLink,
    dump_model,
    geo_model,
    load_matrix,
    load_model_row,
)


@dataclass(frozen=True)
class Place:
    id: str
    lat: float
    lon: float


PLACES = [
    Place("fra", 50.11, 8.68),
    Place("ams", 52.37, 4.90),
    Place("nyc", 40.71, -74.01),
    Place("sin", 1.35, 103.82),
    Place("syd", -33.87, 151.21),
    Place("gru", -23.55, -46.63),
]


def fiber(a: Place, b: Place) -> float:
    return fiber_one_way_ms(haversine_km(a.lat, a.lon, b.lat, b.lon))


def random_places(n: int, seed: int) -> list[Place]:
    rng = random.Random(seed)
    return [Place(f"p{i}", rng.uniform(-60, 60), rng.uniform(-180, 180)) for i in range(n)]


# --- geography model -------------------------------------------------------------------------


def test_geo_model_is_a_full_mesh_without_self_pairs():
    model = geo_model(PLACES)
    ids = [p.id for p in PLACES]
    assert set(model) == {(a, b) for a in ids for b in ids if a != b}
    assert all(isinstance(link, WanLink) for link in model.values())


def test_geo_model_of_one_or_no_region_is_empty():
    assert geo_model([]) == {}
    assert geo_model(PLACES[:1]) == {}


def test_geo_model_is_deterministic_for_a_seed():
    assert geo_model(PLACES, seed=3) == geo_model(list(reversed(PLACES)), seed=3)
    assert geo_model(iter(PLACES), seed=3) == geo_model(PLACES, seed=3)


def test_geo_model_differs_between_seeds():
    a, b = geo_model(PLACES, seed=1), geo_model(PLACES, seed=2)
    assert set(a) == set(b)
    assert sum(a[k].delay_ms != b[k].delay_ms for k in a) > len(a) // 2


def test_geo_model_delays_within_inflation_bounds():
    places = random_places(20, seed=7)
    model = geo_model(places, seed=5)
    by_id = {p.id: p for p in places}
    lo, hi = INFLATION_RANGE
    for (a, b), link in model.items():
        f = fiber(by_id[a], by_id[b])
        assert BASE_DELAY_MS + f * lo * (1 - ASYMMETRY) - 1e-3 <= link.delay_ms
        assert link.delay_ms <= BASE_DELAY_MS + f * hi * (1 + ASYMMETRY) + 1e-3
        assert link.jitter_ms == pytest.approx(min(MAX_JITTER_MS, link.delay_ms * JITTER_FRACTION),
                                               abs=1e-3)
        assert link.loss == 0.0


def test_geo_model_is_about_twice_fiber_time_on_average():
    places = random_places(30, seed=11)
    by_id = {p.id: p for p in places}
    for seed in (0, 1):
        model = geo_model(places, seed=seed)
        factors = [(link.delay_ms - BASE_DELAY_MS) / fiber(by_id[a], by_id[b])
                   for (a, b), link in model.items()]
        assert statistics.mean(factors) == pytest.approx(sum(INFLATION_RANGE) / 2, abs=0.1)
        assert min(factors) < 1.6 and max(factors) > 2.4  # the factor really varies per pair


def test_geo_model_directions_differ_only_by_asymmetry():
    model = geo_model(PLACES, seed=9)
    for (a, b), link in model.items():
        back = model[(b, a)].delay_ms - BASE_DELAY_MS
        ratio = (link.delay_ms - BASE_DELAY_MS) / back
        assert (1 - ASYMMETRY) / (1 + ASYMMETRY) - 1e-3 <= ratio
        assert ratio <= (1 + ASYMMETRY) / (1 - ASYMMETRY) + 1e-3


def test_geo_model_delay_grows_with_distance():
    hub = Place("hub", 0.0, 0.0)
    spokes = [Place(f"s{d}", 0.0, float(d)) for d in (1, 3, 9, 27, 81)]  # 3x apart
    model = geo_model([hub, *spokes])
    delays = [model[("hub", s.id)].delay_ms for s in spokes]
    assert delays == sorted(delays)
    assert delays[-1] > 20 * (delays[0] - BASE_DELAY_MS)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**6))
def test_geo_model_far_pairs_are_slower_than_near_ones(seed):
    # the inflation range cannot reorder pairs whose distances differ by more than its span
    hub = Place("hub", 10.0, 20.0)
    near, far = Place("near", 10.0, 30.0), Place("far", 10.0, 45.0)
    model = geo_model([hub, near, far], seed=seed)
    assert model[("hub", far.id)].delay_ms > model[("hub", near.id)].delay_ms
    assert model[(far.id, "hub")].delay_ms > model[(near.id, "hub")].delay_ms


def test_geo_model_colocated_regions_have_base_delay():
    model = geo_model([Place("a", 1.0, 2.0), Place("b", 1.0, 2.0)])
    assert model[("a", "b")].delay_ms == pytest.approx(BASE_DELAY_MS)


def test_geo_model_caps_jitter():
    model = geo_model([Place("a", 0.0, 0.0), Place("b", 0.0, 180.0)])
    assert model[("a", "b")].delay_ms * JITTER_FRACTION > MAX_JITTER_MS
    assert model[("a", "b")].jitter_ms == MAX_JITTER_MS


# --- RTT matrix files ------------------------------------------------------------------------

IDS = ["ams", "fra", "nyc", "sin"]


@pytest.fixture
def matrix(tmp_path):
    def write(text: str, name: str = "rtt.csv"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def error(path, ids=IDS) -> str:
    with pytest.raises(MatrixError) as info:
        load_matrix(path, ids)
    return str(info.value)


def test_one_way_delay_is_half_the_rtt(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms\nams,fra,10\n"), IDS)
    assert model[("ams", "fra")].delay_ms == pytest.approx(5.0)
    assert model[("ams", "fra")].jitter_ms == pytest.approx(5.0 * JITTER_FRACTION)


def test_both_directions_are_two_measurements_of_one_round_trip(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms\nams,fra,10\nfra,ams,12.5\n"), IDS)
    assert model[("ams", "fra")].delay_ms == pytest.approx(5.625)
    assert model[("fra", "ams")].delay_ms == pytest.approx(5.625)
    assert model[("ams", "fra")].loss == 0.0


def test_jitter_is_capped(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms\nams,sin,300\n"), IDS)
    assert model[("ams", "sin")].jitter_ms == MAX_JITTER_MS


def test_pair_given_in_one_direction_is_used_for_both(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms,loss\nams,nyc,80,0.01\n"), IDS)
    assert model[("nyc", "ams")] == model[("ams", "nyc")] == WanLink(40.0, 0.8, 0.01)


def test_missing_pairs_have_no_link(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms\nams,fra,10\nfra,nyc,90\n"), IDS)
    assert set(model) == {("ams", "fra"), ("fra", "ams"), ("fra", "nyc"), ("nyc", "fra")}


def test_rows_outside_the_selection_are_ignored(matrix):
    path = matrix("src,dst,rtt_ms\nams,fra,10\nams,lhr,8\nlhr,cdg,9\n")
    model = load_matrix(path, IDS)
    assert set(model) == {("ams", "fra"), ("fra", "ams")}
    assert set(load_matrix(path, ["ams", "fra", "lhr"])) == {
        ("ams", "fra"), ("fra", "ams"), ("ams", "lhr"), ("lhr", "ams")}


def test_loss_column_is_optional(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms,loss\nams,fra,10,0.05\nfra,nyc,90,\n"), IDS)
    assert model[("ams", "fra")].loss == pytest.approx(0.05)
    assert model[("fra", "nyc")].loss == 0.0


def test_header_and_fields_tolerate_spaces_and_column_order(matrix):
    model = load_matrix(matrix(" rtt_ms , dst ,src\n 10 , fra , ams \n"), IDS)
    assert model[("ams", "fra")].delay_ms == pytest.approx(5.0)


def test_extra_columns_are_ignored(matrix):
    model = load_matrix(matrix("src,dst,rtt_ms,note\nams,fra,10,x\n"), IDS)
    assert model[("ams", "fra")].delay_ms == pytest.approx(5.0)


def test_accepts_path_as_string(matrix):
    assert load_matrix(str(matrix("src,dst,rtt_ms\nams,fra,10\n")), IDS)


@pytest.mark.parametrize("header", ["dst,rtt_ms", "src,rtt_ms", "src,dst", "a,b,c", ""])
def test_missing_header_column(matrix, header):
    path = matrix(header + "\nams,fra,10\n" if header else "")
    message = error(path)
    assert str(path) in message
    assert "line 1" in message
    assert "header" in message
    for column in ("src", "dst", "rtt_ms"):
        if column not in header.split(","):
            assert column in message.split("missing column(s)")[1]


@pytest.mark.parametrize("rtt", ["abc", "", "-5", "0", "0.0", "nan", "NaN", "inf", "-inf", "1e400"])
def test_bad_rtt(matrix, rtt):
    path = matrix(f"src,dst,rtt_ms\nams,fra,10\nfra,nyc,{rtt}\n")
    message = error(path)
    assert message.startswith(f"{path}: line 3: rtt_ms:")
    assert repr(rtt) in message


@pytest.mark.parametrize("loss", ["1", "1.5", "-0.1", "x", "nan", "inf"])
def test_loss_out_of_range(matrix, loss):
    path = matrix(f"src,dst,rtt_ms,loss\nams,fra,10,{loss}\n")
    message = error(path)
    assert message.startswith(f"{path}: line 2: loss:")
    assert repr(loss) in message


def test_duplicate_pair(matrix):
    path = matrix("src,dst,rtt_ms\nams,fra,10\nfra,ams,11\nams,fra,12\n")
    message = error(path)
    assert message.startswith(f"{path}: line 4:")
    assert "ams,fra" in message and "duplicate" in message


def test_src_equal_to_dst(matrix):
    path = matrix("src,dst,rtt_ms\nams,ams,10\n")
    message = error(path)
    assert message.startswith(f"{path}: line 2: dst:")
    assert "same as src" in message


@pytest.mark.parametrize("row, field", [(",fra,10", "src"), ("ams,,10", "dst"), ("ams", "dst")])
def test_empty_region(matrix, row, field):
    path = matrix(f"src,dst,rtt_ms\n{row}\n")
    message = error(path)
    assert f"{path}: line 2: {field}: missing" in message


def test_all_problems_are_reported_one_per_line(matrix):
    path = matrix("src,dst,rtt_ms\nams,fra,x\nams,nyc,10\nfra,fra,1\nsin,ams,-1\n")
    lines = error(path).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == ["line 2", "line 4", "line 5"]
    assert all(line.startswith(str(path)) for line in lines)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    message = error(path)
    assert str(path) in message


def test_no_links_among_the_selection(matrix):
    path = matrix("src,dst,rtt_ms\nlhr,cdg,10\n")
    message = error(path)
    assert str(path) in message and "no links" in message


def test_header_only_has_no_links(matrix):
    assert "no links" in error(matrix("src,dst,rtt_ms\n"))


def test_matrix_error_is_a_value_error():
    assert issubclass(MatrixError, ValueError)


@pytest.mark.parametrize("data", [b"src,dst,rtt_ms\nams,fra,1\xff0\n",
                                  "src,dst,rtt_ms\nams,fra,10\n".encode("utf-16")],
                         ids=["latin-1 byte", "utf-16"])
def test_undecodable_file_is_a_matrix_error(tmp_path, data):
    path = tmp_path / "binary.csv"
    path.write_bytes(data)
    assert str(path) in error(path)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(
    st.tuples(st.sampled_from(IDS), st.sampled_from(IDS)).filter(lambda p: p[0] != p[1]),
    st.floats(0.01, 1000.0),
    min_size=1,
))
def test_matrix_round_trip_property(tmp_path_factory, rtts):
    path = tmp_path_factory.mktemp("m") / "rtt.csv"
    path.write_text("src,dst,rtt_ms\n" + "".join(f"{a},{b},{r!r}\n" for (a, b), r in rtts.items()))
    model = load_matrix(path, IDS)
    expected = set(rtts) | {(b, a) for a, b in rtts}
    assert set(model) == expected
    for (a, b), link in model.items():
        given = [r for r in (rtts.get((a, b)), rtts.get((b, a))) if r is not None]
        assert link.delay_ms == pytest.approx(sum(given) / len(given) / 2, abs=1e-3)
        assert 0 <= link.jitter_ms <= MAX_JITTER_MS
        assert math.isfinite(link.delay_ms)


# --- model dump ------------------------------------------------------------------------------


def test_dump_model_and_load_rows_round_trip(tmp_path):
    model = geo_model(PLACES, seed=2)
    model[("fra", "ams")] = WanLink(3.5, 0.25, 0.01)
    path = tmp_path / "model.json"
    dump_model(model, path)
    for place in PLACES:
        row = load_model_row(path, place.id)
        assert row == {b: link for (a, b), link in model.items() if a == place.id}
    assert load_model_row(str(path), "fra")["ams"] == WanLink(3.5, 0.25, 0.01)


def test_load_model_row_of_region_without_links(tmp_path):
    path = tmp_path / "model.json"
    dump_model({("a", "b"): WanLink(1.0)}, path)
    assert load_model_row(path, "b") == {}
    assert load_model_row(path, "zzz") == {}
    assert load_model_row(path, "a") == {"b": WanLink(1.0, 0.0, 0.0)}


def test_dump_of_loaded_matrix_round_trips(matrix, tmp_path):
    model = load_matrix(matrix("src,dst,rtt_ms,loss\nams,fra,10,0.1\nnyc,sin,230\n"), IDS)
    dump_model(model, tmp_path / "m.json")
    rebuilt = {(src, dst): link for src in IDS
               for dst, link in load_model_row(tmp_path / "m.json", src).items()}
    assert rebuilt == model


def test_an_rtt_beyond_a_minute_is_refused(matrix):
    # (found by tests/unit/fuzz) 1e308 both ways averaged to an infinite delay
    path = matrix("src,dst,rtt_ms\nams,fra,1e308\nfra,ams,1e308\n")
    assert error(path).startswith(f"{path}: line 2: rtt_ms: must be at most 60000 (a minute)")
    assert load_matrix(matrix(f"src,dst,rtt_ms\nams,fra,{MAX_RTT_MS}\n"), IDS)


@pytest.mark.parametrize(("text", "says"), [
    ("not json", "not a WAN model (JSON)"),
    ("[1, 2]", "links: missing, or not a mapping of regions"),
    ('{"links": []}', "links: missing, or not a mapping of regions"),
    ('{"links": {"ams": [1]}}', "links.ams: not a mapping of regions to links"),
    ('{"links": {"ams": {"fra": 3}}}', "links.ams.fra: not a mapping of delay_ms, jitter_ms"),
    ('{"links": {"ams": {"fra": {"delay": 3}}}}', "links.ams.fra: unknown field(s) delay"),
    ('{"links": {"ams": {"fra": {}}}}', "links.ams.fra: delay_ms: must be a non-negative"),
    ('{"links": {"ams": {"fra": {"delay_ms": NaN}}}}', "delay_ms: must be a non-negative"),
    ('{"links": {"ams": {"fra": {"delay_ms": 1' + "0" * 400 + '}}}}', "delay_ms: must be"),
    ('{"links": {"ams": {"fra": {"delay_ms": 1, "loss": 1}}}}', "loss: must be a number in"),
    ('{"links": {"ams": {"fra": {"delay_ms": true}}}}', "delay_ms: must be a non-negative"),
    ("[" * 100_000, "not a WAN model (JSON)"),
])
def test_a_bad_model_file_says_what_is_wrong(tmp_path, text, says):
    # (found by tests/unit/fuzz) KeyError, AttributeError, TypeError, RecursionError before
    path = tmp_path / "wan.json"
    path.write_text(text)
    with pytest.raises(MatrixError) as info:
        load_model_row(path, "ams")
    assert str(info.value).startswith(f"{path}: ") and says in str(info.value)
