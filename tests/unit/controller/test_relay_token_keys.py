"""Relays hold no secret that can mint client tokens: the RelayConfig the controller builds,
and the protobuf it sends, carry the apps' public keys and nothing of their private keys; a
relay configured from that message verifies the app's tokens and cannot sign one."""

from __future__ import annotations

from collections import Counter

from cryptography.hazmat.primitives import serialization

from controller import translate
from controller.core import Controller, RelayConfig
from relay.edgesession import EdgeLimits, EdgeSession, SourceLimits
from skymesh import edgeproto, token
from skymesh.apps import (
    add_public_key,
    ensure_apps_file,
    load_apps,
    private_key_file,
    read_private_key,
)
from skymesh.catalogue import Region
from skymesh.policy import Policy, Zone
from skymesh.v1 import relay_pb2

REGIONS = ("a", "b")


def private_forms(key) -> list[bytes]:
    """Every spelling of a private key worth looking for: the 32-byte seed, its DER and PEM,
    and the base64url of the seed."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    seed = key.private_bytes_raw()
    return [seed, der, token.private_key_pem(key), token.encode_public_key(seed).encode()]


def controller(apps) -> Controller:
    catalogue = {r: Region(id=r, name=r.upper(), country="DE", lat=0.0, lon=0.0)
                 for r in REGIONS}
    return Controller(catalogue, Policy({"global": Zone("global", frozenset(REGIONS))}),
                      apps=apps, fabric_keys=[b"f" * 32], now=0.0)


def test_relay_config_carries_public_keys_only(tmp_path):
    # the local mesh's demo app, and a second app mid-rotation (two keys)
    apps_file = ensure_apps_file(tmp_path / "apps.yaml")
    demo_key = read_private_key(private_key_file(apps_file, "demo"))
    shop_old, shop_new = token.generate_key(), token.generate_key()
    add_public_key(apps_file, "shop", token.public_key_of(shop_old))
    add_public_key(apps_file, "shop", token.public_key_of(shop_new))
    apps = load_apps(apps_file)

    config = controller(apps).config_for("a")
    assert isinstance(config, RelayConfig)
    assert dict(config.app_keys) == {
        "demo": (token.public_key_of(demo_key),),
        "shop": (token.public_key_of(shop_new), token.public_key_of(shop_old))}
    assert not hasattr(config, "app_secrets")

    msg = translate.controller_message(config)
    wire = msg.SerializeToString()
    assert "app_secrets" not in relay_pb2.RelayConfig.DESCRIPTOR.fields_by_name
    assert {a: list(k.public_keys) for a, k in msg.config.app_keys.items()} == {
        a: list(k) for a, k in config.app_keys.items()}
    for key in (demo_key, shop_old, shop_new):
        public = token.public_key_of(key)
        assert public in wire
        for form in private_forms(key):
            assert form not in wire, "a private key reached the relay's configuration"
            assert all(form not in k for keys in config.app_keys.values() for k in keys)
            assert form not in repr(config).encode()

    # a relay configured from this message verifies each app's tokens...
    received = relay_pb2.ControllerMessage.FromString(wire).config
    relay_keys = {a: tuple(k.public_keys) for a, k in received.app_keys.items()}
    for app, key in (("demo", demo_key), ("shop", shop_old), ("shop", shop_new)):
        tok = token.issue(app, key, "room", "u", "global", ["join"], 60)
        assert token.verify(tok, relay_keys, channel="room").app == app
    # ...and refuses one signed with anything else, such as its own bytes taken for a seed
    for raw in (k for keys in relay_keys.values() for k in keys):
        as_seed = token.load_private_key(token.encode_public_key(raw))
        forged = token.issue("demo", as_seed, "room", "u", "global", ["join"], 60)
        try:
            token.verify(forged, relay_keys)
        except token.TokenError as e:
            assert e.code == "bad-signature"
        else:
            raise AssertionError("a relay's configuration minted a token")


def test_an_edge_session_checks_tokens_with_the_configured_public_keys():
    key = token.generate_key()

    class Edge:
        region = "a"
        zones = frozenset({"global"})
        app_keys = {"demo": (token.public_key_of(key),)}
        drained = False
        counters: Counter = Counter()
        limits = EdgeLimits()
        sources = SourceLimits(limits)

    now = 1_700_000_000
    good = token.issue("demo", key, "room", "u", "global", ["join"], 60, now=now)
    forged = token.issue("demo", token.generate_key(), "room", "u", "global", ["join"], 60,
                         now=now)
    s = EdgeSession(Edge)
    s.line_received(edgeproto.join(good, "room"), now=now)
    assert s.grant is not None and s.grant.app == "demo"
    bad = EdgeSession(Edge)
    bad.line_received(edgeproto.join(forged, "room"), now=now)
    assert bad.grant is None and bad.closed
