"""`skymesh token issue` and `skymesh token verify`."""

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


def add_parsers(sub) -> None:
    tok = sub.add_parser("token", help="issue and check access tokens")
    tsub = tok.add_subparsers(title="token commands", metavar="COMMAND")
    ti = tsub.add_parser("issue", help="print a signed access token",
                         description="Sign a grant of privileges on one channel in one "
                         "residency zone for one user of an app, with the app's secret. The "
                         "token alone goes to stdout, so `$(skymesh token issue ...)` works.")
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
                         "channel, zone and privileges; print its grant, or the refusal's "
                         "code and reason and exit 1.")
    tv.add_argument("token")
    tv.add_argument("--channel", help="the channel it must be for")
    tv.add_argument("--zone", help="the zone it must be for")
    tv.add_argument("--need", metavar="P,...", help="privileges it must grant")
    tv.add_argument("--app-secrets", type=Path, metavar="FILE",
                    help='JSON object {"APP": "SECRET", ...} (instead of one secret)')
    tv.set_defaults(run=cmd_token_verify)
    for t in (ti, tv):
        src = t.add_mutually_exclusive_group()
        src.add_argument("--secret-env", default="SKYMESH_APP_SECRET", metavar="VAR",
                         help="environment variable holding the app secret "
                         "(default: %(default)s)")
        src.add_argument("--secret-file", type=Path, metavar="FILE",
                         help="file holding the app secret (a trailing newline is ignored)")
        t.add_argument("--json", action="store_true", help="print JSON")


def app_secret(args: argparse.Namespace) -> bytes:
    """The one app secret named by --secret-file or --secret-env; ValueError if missing."""
    if args.secret_file:
        try:
            secret = args.secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as e:
            raise ValueError(f"--secret-file: {e}") from None
        if not secret:
            raise ValueError(f"--secret-file {args.secret_file}: the file is empty")
        return secret
    secret = os.environ.get(args.secret_env, "")
    if not secret:
        raise ValueError(f"no app secret: set the environment variable {args.secret_env} "
                         "(or use --secret-env VAR / --secret-file FILE)")
    return secret.encode()


def grant_json(grant) -> dict:
    from skymesh.token import privilege_list

    return {"app": grant.app, "channel": grant.channel, "uid": grant.uid, "zone": grant.zone,
            "privileges": privilege_list(grant.privileges), "issued_at": grant.issued_at,
            "expires_at": grant.expires_at}


def cmd_token_issue(args: argparse.Namespace) -> int:
    from skymesh import token

    try:
        ttl = parse_ttl(args.ttl)
        secret = app_secret(args)
    except ValueError as e:
        return fail(str(e))
    try:
        text = token.issue(args.app, secret, args.channel, args.uid, args.zone,
                           split_list(args.privileges), ttl)
    except token.TokenError as e:
        return fail(f"cannot issue a token: {e.reason}")
    if args.json:
        print(json.dumps({"token": text, **grant_json(token.parse(text))}))
    else:
        print(text)
    return 0


def cmd_token_verify(args: argparse.Namespace) -> int:
    from skymesh import token

    need = split_list(args.need)
    unknown = [p for p in need if p not in token.PRIVILEGES]
    if unknown:
        return fail(f"--need: unknown privilege(s) {', '.join(unknown)}; known: "
                    f"{', '.join(token.PRIVILEGES)}")
    try:
        if args.app_secrets:
            try:
                table = json.loads(args.app_secrets.read_text())
            except (OSError, UnicodeDecodeError, ValueError) as e:
                raise ValueError(f"--app-secrets {args.app_secrets}: {e}") from None
            if not isinstance(table, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
                raise ValueError(f"--app-secrets {args.app_secrets}: expected a JSON object "
                                 '{"APP": "SECRET", ...}')
            secrets = {k: v.encode() for k, v in table.items()}
        else:
            secret = app_secret(args)
            try:
                secrets = {token.parse(args.token).app: secret}
            except token.TokenError:
                secrets = {}  # verify reports the malformed token
    except ValueError as e:
        return fail(str(e))
    now = int(time.time())
    try:
        grant = token.verify(args.token, secrets, now=now, channel=args.channel,
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
