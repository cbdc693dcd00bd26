"""`skymesh token keygen`, `skymesh token issue` and `skymesh token verify`."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from skymesh.cli.common import (
    fail,
    parse_ttl,
    split_list,
)

KEY_ENV = "SKYMESH_APP_KEY"


def add_parsers(sub) -> None:
    tok = sub.add_parser("token", help="make app keys, issue and check access tokens")
    tsub = tok.add_subparsers(title="token commands", metavar="COMMAND")
    tk = tsub.add_parser("keygen", help="make an app's Ed25519 signing key pair",
                         description="Write a new Ed25519 private key for an app to DIR/APP.key "
                         "(PEM, mode 0600; it stays on the app's server, which signs tokens "
                         "with it) and print its public key and kid. The controller's apps "
                         "file lists public keys only (`--apps FILE` adds it there); relays "
                         "verify tokens with them and cannot mint any. To rotate, add the new "
                         "key beside the old, sign with the new one, and remove the old once "
                         "its tokens have expired.")
    tk.add_argument("--app", required=True, help="app id")
    tk.add_argument("--dir", type=Path, default=Path("."),
                    help="directory of the private key file (default: the current one)")
    tk.add_argument("--apps", type=Path, metavar="FILE",
                    help="add the public key to this apps file (created if missing)")
    tk.add_argument("--json", action="store_true", help="print JSON")
    tk.set_defaults(run=cmd_token_keygen)
    ti = tsub.add_parser("issue", help="print a signed access token",
                         description="Sign a grant of privileges on one channel in one "
                         "residency zone for one user of an app with the app's private key: "
                         "a JWT (EdDSA, Ed25519) whose kid names the key. The token alone goes "
                         "to stdout, so `$(skymesh token issue ...)` works.")
    ti.add_argument("--app", required=True, help="app id")
    ti.add_argument("--channel", required=True)
    ti.add_argument("--uid", required=True, help="user id")
    ti.add_argument("--zone", required=True, help="residency zone")
    ti.add_argument("--privileges", default="join", metavar="P,...",
                    help="comma-separated, of join, publish-media, publish-messages "
                    "(default: %(default)s)")
    ti.add_argument("--ttl", default="1h",
                    help="validity: 90s, 15m, 1h, 7d or seconds; at most 30d "
                    "(default: %(default)s)")
    ti.set_defaults(run=cmd_token_issue)
    tv = tsub.add_parser("verify", help="check a token and print its grant",
                         description="Check a token's signature, times and (when given) "
                         "channel, zone and privileges, as a relay does; print its grant, or "
                         "the refusal's code and reason and exit 1. The public keys come from "
                         "--apps, --public-key or else the private key options.")
    tv.add_argument("token")
    tv.add_argument("--channel", help="the channel it must be for")
    tv.add_argument("--zone", help="the zone it must be for")
    tv.add_argument("--need", metavar="P,...", help="privileges it must grant")
    tv.set_defaults(run=cmd_token_verify)
    for t in (ti, tv):
        src = t.add_mutually_exclusive_group()
        src.add_argument("--key-env", default=KEY_ENV, metavar="VAR",
                         help="environment variable holding the app's private key, PEM or "
                         "base64url (default: %(default)s)")
        src.add_argument("--key-file", type=Path, metavar="FILE",
                         help="the app's private key file (PEM, as `token keygen` writes)")
        if t is tv:
            src.add_argument("--apps", type=Path, metavar="FILE",
                             help="the controller's apps file: app id -> public key(s)")
            src.add_argument("--public-key", metavar="KEY",
                             help="the app's public key (base64url), for the token's app")
        t.add_argument("--json", action="store_true", help="print JSON")


def private_key(args: argparse.Namespace):
    """The app's signing key named by --key-file or --key-env; ValueError if missing or bad."""
    from skymesh import token
    from skymesh.apps import AppsError, read_private_key

    if args.key_file:
        try:
            return read_private_key(args.key_file)
        except AppsError as e:
            raise ValueError(f"--key-file {e}") from None
    text = os.environ.get(args.key_env, "")
    if not text:
        raise ValueError(f"no app private key: set the environment variable {args.key_env} "
                         "(or use --key-env VAR / --key-file FILE; `skymesh token keygen` "
                         "makes one)")
    try:
        return token.load_private_key(text)
    except token.KeyFormatError as e:
        raise ValueError(f"the environment variable {args.key_env}: {e}") from None


def grant_json(grant) -> dict:
    from skymesh.token import privilege_list

    return {"app": grant.app, "channel": grant.channel, "uid": grant.uid, "zone": grant.zone,
            "privileges": privilege_list(grant.privileges), "issued_at": grant.issued_at,
            "expires_at": grant.expires_at, "jti": grant.jti}


def cmd_token_keygen(args: argparse.Namespace) -> int:
    from skymesh import apps, token

    if not apps.valid_app_id(args.app):
        return fail(f"--app {args.app!r}: an app id is 1-64 letters, digits, '.', '_' or '-'")
    if args.apps:
        try:
            if args.apps.exists():
                apps.load_apps(args.apps)  # a broken apps file stops us before any key
        except apps.AppsError as e:
            return fail(str(e))
    key = token.generate_key()
    raw = token.public_key_of(key)
    try:
        path = apps.write_private_key(args.dir / f"{args.app}.key", key)
        if args.apps:
            apps.add_public_key(args.apps, args.app, raw)
    except apps.AppsError as e:
        return fail(str(e))
    public = token.encode_public_key(raw)
    if args.json:
        print(json.dumps({"app": args.app, "kid": token.key_id(raw), "public_key": public,
                          "private_key_file": str(path),
                          "apps_file": str(args.apps) if args.apps else None}))
        return 0
    print(f"private key  {path}  (mode 0600: keep it on the app's server)")
    print(f"public key   {public}")
    print(f"kid          {token.key_id(raw)}")
    if args.apps:
        print(f"apps file    {args.apps}: added to {args.app}")
    else:
        print(f"add to the controller's apps file:\n  {args.app}: {public}")
    return 0


def cmd_token_issue(args: argparse.Namespace) -> int:
    from skymesh import token

    try:
        ttl = parse_ttl(args.ttl)
        key = private_key(args)
    except ValueError as e:
        return fail(str(e))
    try:
        text = token.issue(args.app, key, args.channel, args.uid, args.zone,
                           split_list(args.privileges), ttl)
    except token.TokenError as e:
        return fail(f"cannot issue a token: {e.reason}")
    if args.json:
        print(json.dumps({"token": text, **grant_json(token.parse(text))}))
    else:
        print(text)
    return 0


def _public_keys(args: argparse.Namespace) -> dict[str, tuple[bytes, ...]]:
    """App id -> public keys to verify with, from --apps, --public-key or the private key
    options (then for the token's app); ValueError if they cannot be read."""
    from skymesh import token
    from skymesh.apps import AppsError, load_apps

    if args.apps:
        try:
            return load_apps(args.apps)
        except AppsError as e:
            raise ValueError(f"--apps {e}") from None
    if args.public_key:
        try:
            raw = token.decode_public_key(args.public_key)
        except token.KeyFormatError as e:
            raise ValueError(f"--public-key: {e}") from None
    else:
        raw = token.public_key_of(private_key(args))
    try:
        return {token.parse(args.token).app: (raw,)}
    except token.TokenError:
        return {}  # verify reports the malformed token


def cmd_token_verify(args: argparse.Namespace) -> int:
    from skymesh import token

    need = split_list(args.need)
    unknown = [p for p in need if p not in token.PRIVILEGES]
    if unknown:
        return fail(f"--need: unknown privilege(s) {', '.join(unknown)}; known: "
                    f"{', '.join(token.PRIVILEGES)}")
    try:
        keys = _public_keys(args)
    except ValueError as e:
        return fail(str(e))
    now = int(time.time())
    try:
        grant = token.verify(args.token, keys, now=now, channel=args.channel,
                             zone=args.zone, need=need)
    except token.TokenError as e:
        if args.json:
            print(json.dumps({"valid": False, "code": e.code, "error_code": e.number,
                              "reason": e.reason}))
            return 1
        return fail(f"token refused: {e.code} ({e.number:#x}): {e.reason}", 1)
    data = {"valid": True, **grant_json(grant), "expires_in_s": grant.expires_at - now}
    if args.json:
        print(json.dumps(data))
    else:
        data["privileges"] = ",".join(data["privileges"])
        print("\n".join(f"{k:16} {v}" for k, v in data.items()))
    return 0
