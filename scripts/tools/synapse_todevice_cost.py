"""Synapse's CPU per to-device message delivered to N devices, through
/v3/sync ("v3") or simplified sliding sync with only the to-device
extension ("sss", MSC4186). Run by scripts/bench-synapse-todevice.sh.

One sender (alice) PUTs a message to N devices of bob every 20 ms for the
given seconds; N receiver threads long-poll. Synapse's CPU time (utime +
stime of its pid, from /proc) is read before and after. Prints one JSON
line. Usage: synapse_todevice_cost.py URL PID ALICE_PW BOB_PW N SECONDS MODE
"""
import json
import os
import sys
import threading
import time
import urllib.request

URL, PID, APW, BPW = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
N, SECONDS, MODE = int(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
TICK = os.sysconf("SC_CLK_TCK")


def call(method, path, token=None, body=None, timeout=60):
    req = urllib.request.Request(URL + path, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def login(user, pw):
    r = call("POST", "/_matrix/client/v3/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": pw})
    return r["access_token"], r["device_id"]


def cpu():
    f = open(f"/proc/{PID}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


alice, _ = login("alice", APW)
bobs = [login("bob", BPW) for _ in range(N)]
stop = threading.Event()
lat = []
got = [0] * N


def receiver(i, token):
    if MODE == "v3":
        since = call("GET", "/_matrix/client/v3/sync?timeout=0", token)["next_batch"]
        while not stop.is_set():
            r = call("GET", f"/_matrix/client/v3/sync?since={since}&timeout=5000", token)
            since = r["next_batch"]
            for ev in r.get("to_device", {}).get("events", []):
                got[i] += 1
                lat.append(time.time() * 1000 - ev["content"]["ts"])
    else:
        path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
        body = {"lists": {}, "room_subscriptions": {}, "extensions": {"to_device": {"enabled": True}}}
        r = call("POST", path + "?timeout=0", token, body)
        pos = r["pos"]
        td_since = r.get("extensions", {}).get("to_device", {}).get("next_batch")
        while not stop.is_set():
            b = json.loads(json.dumps(body))
            if td_since:
                b["extensions"]["to_device"]["since"] = td_since
            r = call("POST", f"{path}?pos={pos}&timeout=5000", token, b)
            pos = r["pos"]
            td = r.get("extensions", {}).get("to_device", {})
            td_since = td.get("next_batch", td_since)
            for ev in td.get("events", []):
                got[i] += 1
                lat.append(time.time() * 1000 - ev["content"]["ts"])


threads = [threading.Thread(target=receiver, args=(i, t), daemon=True) for i, (t, _) in enumerate(bobs)]
for t in threads:
    t.start()
time.sleep(1)
c0, t0, sent = cpu(), time.time(), 0
pad = "x" * 300
while time.time() - t0 < SECONDS:
    msgs = {"@bob:localhost": {d: {"ts": time.time() * 1000, "pad": pad} for _, d in bobs}}
    call("PUT", f"/_matrix/client/v3/sendToDevice/org.example.spike/{MODE}{sent}", alice, {"messages": msgs})
    sent += 1
    nxt = t0 + sent * 0.02
    time.sleep(max(0, nxt - time.time()))
time.sleep(1)
stop.set()
c1, t1 = cpu(), time.time()
lat.sort()
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")
print(json.dumps({
    "mode": MODE, "devices": N, "sent": sent, "received": sum(got), "per_device": got,
    "synapse_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
    "synapse_cpu_ms_per_message": round(1000 * (c1 - c0) / sent, 2),
    "latency_p50_ms": round(p(0.5), 1), "latency_p95_ms": round(p(0.95), 1),
}))
