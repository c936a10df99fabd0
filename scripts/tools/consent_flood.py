#!/usr/bin/env python3
"""Floods a walkie group with consent grants for made-up devices (issue 12's
bench): registers ACCOUNTS members, has alice invite them (her access token
from the CLI's session file), lets each join and publish one consent state
listing DEVICES made-up devices, each grant well formed (receive + talk,
a granted_ts and a 64-byte signature) so that it reaches the trust checks
rather than the parser. Synapse caps an event at 64 KiB, so one account
holds at most ~370 such grants: 3000 need 9 accounts. Standard library
only; prints one JSON line with what it published.

    consent_flood.py --homeserver URL --shared-secret S --room ROOM \
        --alice-session DIR/session.json [--accounts 9] [--devices 334]
"""

import argparse
import base64
import json
import os
import secrets
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from demo_setup import call, login, register  # noqa: E402

CONSENT_EVENT_TYPE = "org.matrix.msc4002.consent"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--homeserver", required=True)
    ap.add_argument("--shared-secret", required=True)
    ap.add_argument("--room", required=True)
    ap.add_argument("--alice-session", required=True)
    ap.add_argument("--accounts", type=int, default=9)
    ap.add_argument("--devices", type=int, default=334)
    a = ap.parse_args()
    base = a.homeserver.rstrip("/")
    with open(a.alice_session) as f:
        alice_token = json.load(f)["session"]["access_token"]
    room = urllib.parse.quote(a.room, safe="")
    now = int(time.time() * 1000)
    published = 0
    for i in range(a.accounts):
        name, password = f"flood{i}_{secrets.token_hex(3)}", secrets.token_urlsafe(12)
        register(base, a.shared_secret, name, password)
        status, body = login(base, name, password)
        if status != 200:
            sys.exit(f"{name} signing in: {status} {body}")
        token, user_id = body["access_token"], body["user_id"]
        status, body = call(base, "POST", f"/_matrix/client/v3/rooms/{room}/invite", {"user_id": user_id}, alice_token)
        if status != 200:
            sys.exit(f"alice inviting {user_id}: {status} {body}")
        status, body = call(base, "POST", f"/_matrix/client/v3/join/{room}", {}, token)
        if status != 200:
            sys.exit(f"{user_id} joining: {status} {body}")
        sig = base64.b64encode(os.urandom(64)).decode().rstrip("=")
        devices = {
            f"FAKE{i:02d}{d:05d}": {"receive": True, "talk": True, "granted_ts": now, "signature": sig}
            for d in range(a.devices)
        }
        key = urllib.parse.quote(user_id, safe="")
        status, body = call(base, "PUT", f"/_matrix/client/v3/rooms/{room}/state/{CONSENT_EVENT_TYPE}/{key}",
                            {"devices": devices}, token)
        if status != 200:
            sys.exit(f"{user_id} publishing {a.devices} grants: {status} {body}")
        published += a.devices
    print(json.dumps({"accounts": a.accounts, "made_up_devices": published}))


if __name__ == "__main__":
    main()
