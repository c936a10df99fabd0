#!/usr/bin/env python3
"""Creates the demo users (alice, bob) and the encrypted demo room (a walkie
group) on the local homeserver, if they do not exist yet. Idempotent; standard library
only (runs with the Synapse venv's Python). Passwords are generated once and
kept in --state (mode 600): this is a local demo server, not an account of
the user's."""

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request

USERS = ("alice", "bob")
ROOM_ALIAS_LOCALPART = "walkie-demo"


def call(base, method, path, body=None, token=None):
    req = urllib.request.Request(base + path, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(req, data, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {}


def register(base, secret, user, password):
    _, nonce = call(base, "GET", "/_synapse/admin/v1/register")
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join(x.encode() for x in (nonce["nonce"], user, password, "notadmin")))
    status, answer = call(base, "POST", "/_synapse/admin/v1/register", {
        "nonce": nonce["nonce"], "username": user, "password": password,
        "admin": False, "mac": mac.hexdigest(),
    })
    if status != 200:
        sys.exit(f"demo setup: registering {user} failed ({status}): {answer}")
    print(f"demo setup: registered @{user}", file=sys.stderr)


def login(base, user, password):
    return call(base, "POST", "/_matrix/client/v3/login", {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "device_id": "WALKIEDEMOSETUP",
        "initial_device_display_name": "walkie demo setup",
    })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--homeserver", required=True)
    ap.add_argument("--shared-secret", required=True)
    ap.add_argument("--state", required=True, help="JSON file with the demo passwords")
    args = ap.parse_args()
    base = args.homeserver.rstrip("/")

    if os.path.exists(args.state):
        with open(args.state) as f:
            state = json.load(f)
    else:
        state = {u: secrets.token_urlsafe(12) for u in USERS}
        fd = os.open(args.state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)

    server = "localhost"
    alias = f"#{ROOM_ALIAS_LOCALPART}:{server}"
    if state.get("room_id"):
        status, found = call(base, "GET", "/_matrix/client/v3/directory/room/" + urllib.parse.quote(alias))
        if status == 200 and found.get("room_id") == state["room_id"] and state.get("walkie_group"):
            print(f"demo setup: users and {alias} already there", file=sys.stderr)
            return

    tokens, ids = {}, {}
    for user in USERS:
        status, answer = login(base, user, state[user])
        if status == 403:
            register(base, args.shared_secret, user, state[user])
            status, answer = login(base, user, state[user])
        if status != 200:
            sys.exit(f"demo setup: cannot sign in {user} ({status}): {answer}")
        tokens[user], ids[user] = answer["access_token"], answer["user_id"]

    status, found = call(base, "GET", "/_matrix/client/v3/directory/room/" + urllib.parse.quote(alias),
                         token=tokens["alice"])
    if status == 200:
        room_id = found["room_id"]
    else:
        status, created = call(base, "POST", "/_matrix/client/v3/createRoom", {
            "name": "Walkie demo",
            "room_alias_name": ROOM_ALIAS_LOCALPART,
            "preset": "private_chat",
            "invite": [ids["bob"]],
            "initial_state": [{
                "type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }],
        }, token=tokens["alice"])
        if status != 200:
            sys.exit(f"demo setup: cannot create the demo room ({status}): {created}")
        room_id = created["room_id"]
        print(f"demo setup: created encrypted room {alias}", file=sys.stderr)
    status, joined = call(base, "POST", f"/_matrix/client/v3/join/{urllib.parse.quote(room_id)}", {},
                          token=tokens["bob"])
    if status != 200:
        sys.exit(f"demo setup: bob cannot join {alias} ({status}): {joined}")

    # A walkie group (the group marker, default settings), so the first run
    # has someone to talk to: the run command starts bob as an echo peer.
    status, answer = call(base, "PUT",
                          f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/state/org.matrix.msc4002.walkie/",
                          {"version": 1}, token=tokens["alice"])
    if status != 200:
        sys.exit(f"demo setup: cannot make {alias} a walkie group ({status}): {answer}")
    state["walkie_group"] = True

    # The setup devices are not kept: logging out deletes them.
    for user in USERS:
        call(base, "POST", "/_matrix/client/v3/logout", {}, token=tokens[user])
    state["room_id"] = room_id
    with open(args.state, "w") as f:
        json.dump(state, f)
    print(f"demo setup: users {ids['alice']} and {ids['bob']} (passwords in {args.state}), "
          f"encrypted room {alias}", file=sys.stderr)


if __name__ == "__main__":
    main()
