#!/usr/bin/env python3
"""Peers of scripts/bench-chunked.sh: chunked voice messages through the room
timeline, the way Element's Voice Broadcast (labs, 2022-2023) worked.
Standard library plus parec/pacat (pulseaudio-utils) and opusenc/opusdec
(opus-tools). Plain HTTP to a local Synapse, UNENCRYPTED room: Element
encrypted each chunk (Megolm for the event, AES-CTR for the file), so this
is a lower bound of the chunked approach's latency.

  chunked_peer.py setup --homeserver URL --users demo-users.json \
      --listeners N --out state.json
      signs alice in once and bob N times (one device each), creates an
      unencrypted private room alice -> bob, bob joins; writes the tokens.

  chunked_peer.py talk --state state.json --seconds S --chunk-s C
      sends the broadcast's `io.element.voice_broadcast_info` state event
      (state started, chunk_length C), records `parec --device=mic` (48 kHz
      mono s16), cuts it into C-second chunks, each encoded by its own
      opusenc while it is recorded (Ogg Opus, 24 kbit/s, complexity 3, 20 ms
      frames: Element's voice recorder settings; Element also encoded as it
      recorded, streamPages), and at each chunk's end: the encoder's flush,
      POST /_matrix/media/v3/upload, then PUT .../send/
      m.room.message/{txn} with Element's chunk content (m.audio,
      org.matrix.msc3245.voice, io.element.voice_broadcast_chunk.sequence,
      m.reference to the info event). Sends are sequential, in order (like
      matrix-js-sdk's message queue); a 429 is retried after retry_after_ms.
      After S seconds the partial last chunk is sent, then the info event
      with state stopped and last_chunk_sequence. JSON lines on stdout.

  chunked_peer.py listen --state state.json --index I [--play]
      long-polls /sync (timeout 30000, filter: this room only); for each
      chunk event downloads the file (authenticated media,
      /_matrix/client/v1/media/download), decodes it with opusdec (48 kHz
      mono s16) and, with --play, writes the PCM in sequence order to one
      long-running `pacat --device=speaker --latency-msec=200`, so chunks
      play back to back; a chunk that arrives after its predecessor ran out
      plays late (pacat reports the underrun). Without --play the PCM is
      dropped (download + decode only). Ends after the stopped info event
      once every chunk up to last_chunk_sequence is handled and played.

  chunked_peer.py report --talk talk.jsonl --listen listen1.jsonl ...
      per-chunk timing (ms after the chunk's last sample was captured):
      sent (with 429 count and wait), received and decoded by each
      listener; prints a table and a `json {...}` line of totals (429s,
      retry wait; gaps: bob1's pacat ran dry before a later chunk came;
      stalls: it ran dry in the middle of a chunk, a busy machine).
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

RATE = 48_000
INFO_TYPE = "io.element.voice_broadcast_info"
CHUNK_KEY = "io.element.voice_broadcast_chunk"


def emit(event, **kw):
    print(json.dumps({"event": event, "t": round(time.time(), 4), **kw}), flush=True)


def fail(msg):
    print(f"chunked_peer: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


class Client:
    def __init__(self, base, token=None):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, data=None, content_type="application/json", timeout=60):
        """Returns (status, parsed JSON or raw bytes, headers)."""
        req = urllib.request.Request(self.base + path, method=method)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, data, timeout=timeout) as resp:
                raw, status, headers = resp.read(), resp.status, resp.headers
        except urllib.error.HTTPError as e:
            raw, status, headers = e.read(), e.code, e.headers
        if (headers.get("Content-Type") or "").startswith("application/json"):
            try:
                return status, json.loads(raw), headers
            except ValueError:
                pass
        return status, raw, headers

    def call_retrying(self, method, path, body=None, data=None, content_type="application/json", what="request"):
        """A request retried on 429 after the server's retry_after_ms (what
        matrix-js-sdk's scheduler does). Returns (answer, 429 count, ms waited)."""
        n429, waited = 0, 0.0
        while True:
            status, answer, headers = self.call(method, path, body, data, content_type)
            if status == 200:
                return answer, n429, waited
            if status == 429:
                ms = answer.get("retry_after_ms") if isinstance(answer, dict) else None
                if ms is None and headers.get("Retry-After"):
                    ms = float(headers["Retry-After"]) * 1000
                ms = float(ms if ms is not None else 1000)
                n429 += 1
                waited += ms
                time.sleep(ms / 1000)
                continue
            fail(f"{what} failed: {method} {path} -> {status} {answer!r:.300}")


def quote(s):
    return urllib.parse.quote(s, safe="")


def load_state(path):
    with open(path) as f:
        return json.load(f)


# --- setup ---------------------------------------------------------------------

def setup(args):
    with open(args.users) as f:
        users = json.load(f)
    hs = Client(args.homeserver)

    def login(user, device):
        status, answer, _ = hs.call("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": users[user],
            "device_id": device,
            "initial_device_display_name": f"chunked bench {device}",
        })
        if status != 200:
            fail(f"cannot sign in {user} ({status}): {answer!r:.300}")
        return {"token": answer["access_token"], "user_id": answer["user_id"], "device_id": answer["device_id"]}

    alice = login("alice", "CHUNKTALKER")
    bobs = [login("bob", f"CHUNKBOB{i}") for i in range(1, args.listeners + 1)]
    a = Client(args.homeserver, alice["token"])
    status, created, _ = a.call("POST", "/_matrix/client/v3/createRoom", {
        "name": "chunked voice bench", "preset": "private_chat", "invite": [bobs[0]["user_id"]],
    })
    if status != 200:
        fail(f"cannot create the room ({status}): {created!r:.300}")
    room = created["room_id"]
    b = Client(args.homeserver, bobs[0]["token"])
    status, joined, _ = b.call("POST", f"/_matrix/client/v3/join/{quote(room)}", {})
    if status != 200:
        fail(f"bob cannot join {room} ({status}): {joined!r:.300}")
    status, enc, _ = a.call("GET", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.encryption/")
    if status == 200:
        fail(f"room {room} is encrypted ({enc}); this bench sends plaintext")
    state = {"homeserver": args.homeserver, "room_id": room, "alice": alice, "bobs": bobs}
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    emit("setup", room_id=room, listeners=len(bobs), encrypted=False)
    return 0


# --- talk ----------------------------------------------------------------------

class StreamEncoder:
    """One chunk's opusenc, fed while the chunk is recorded; finish() closes
    its input (the encoder flushes the last frames) and returns the Ogg file."""

    def __init__(self, bitrate):
        self.proc = subprocess.Popen(
            ["opusenc", "--quiet", "--raw", "--raw-rate", str(RATE), "--raw-chan", "1",
             "--bitrate", str(bitrate), "--comp", "3", "--framesize", "20", "-", "-"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.samples = 0

    def _read(self):
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                return
            self.out += data

    def write(self, pcm):
        self.proc.stdin.write(pcm)
        self.proc.stdin.flush()
        self.samples += len(pcm) // 2

    def end_input(self):
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def finish(self):
        self.end_input()
        self.reader.join()
        err = self.proc.stderr.read()
        if self.proc.wait() != 0 or not self.out:
            raise RuntimeError(f"opusenc failed: {err.decode(errors='replace')[:300]}")
        return bytes(self.out)


def chunk_content(mxc, duration_ms, size, seq, info_id):
    """Element's voice broadcast chunk (createVoiceMessageContent + the
    broadcast's relation and sequence), unencrypted: `url`, no `file`."""
    return {
        "body": "Voice message",
        "msgtype": "m.audio",
        "url": mxc,
        "info": {"duration": duration_ms, "mimetype": "audio/ogg", "size": size},
        "org.matrix.msc1767.text": "Voice message",
        "org.matrix.msc1767.file": {"url": mxc, "name": "Voice message.ogg", "mimetype": "audio/ogg", "size": size},
        "org.matrix.msc1767.audio": {"duration": duration_ms},
        "org.matrix.msc3245.voice": {},
        "m.relates_to": {"rel_type": "m.reference", "event_id": info_id},
        CHUNK_KEY: {"sequence": seq},
    }


def talk(args):
    st = load_state(args.state)
    me = st["alice"]
    cl = Client(st["homeserver"], me["token"])
    room = quote(st["room_id"])
    info_path = f"/_matrix/client/v3/rooms/{room}/state/{INFO_TYPE}/{quote(me['user_id'])}"
    ans, n429, waited = cl.call_retrying("PUT", info_path, {
        "device_id": me["device_id"], "state": "started", "chunk_length": round(args.chunk_s),  # canonical JSON: no floats
    }, what="broadcast info (started)")
    info_id = ans["event_id"]
    emit("broadcast_started", event_id=info_id, n429=n429, waited_ms=round(waited))

    rec = subprocess.Popen(
        ["parec", f"--device={args.device}", f"--rate={RATE}", "--channels=1", "--format=s16le",
         "--latency-msec=20", "--client-name=chunked-talker"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sendq = queue.Queue()
    totals = {"chunks": 0, "n429": 0, "waited_ms": 0.0}
    errors = []

    def sender():
        try:
            while True:
                item = sendq.get()
                if item is None:
                    return
                seq, enc, t_end = item
                ogg = enc.finish()
                t_enc = time.time()
                up, u429, uwait = cl.call_retrying(
                    "POST", "/_matrix/media/v3/upload?filename=" + quote("Voice message.ogg"),
                    data=ogg, content_type="audio/ogg", what=f"upload of chunk {seq}")
                t_up = time.time()
                dur_ms = round(enc.samples / RATE * 1000)
                txn = f"chunk{seq}-{int(t_end * 1000)}"
                sent, s429, swait = cl.call_retrying(
                    "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
                    chunk_content(up["content_uri"], dur_ms, len(ogg), seq, info_id),
                    what=f"send of chunk {seq}")
                t_sent = time.time()
                totals["chunks"] += 1
                totals["n429"] += u429 + s429
                totals["waited_ms"] += uwait + swait
                emit("chunk_sent", seq=seq, duration_ms=dur_ms, bytes=len(ogg), event_id=sent["event_id"],
                     t_end=round(t_end, 4), encoded_ms=round((t_enc - t_end) * 1000, 1),
                     uploaded_ms=round((t_up - t_end) * 1000, 1), sent_ms=round((t_sent - t_end) * 1000, 1),
                     n429=u429 + s429, waited_ms=round(uwait + swait))
        except SystemExit as e:
            errors.append(e)
        except Exception as e:  # noqa: BLE001 - report and stop the talk
            errors.append(e)
            print(f"chunked_peer: sender: {e!r}", file=sys.stderr, flush=True)

    th = threading.Thread(target=sender, daemon=True)
    th.start()

    fd = rec.stdout.fileno()
    first = os.read(fd, 1920)
    if not first:
        fail("parec produced no audio: " + rec.stderr.read().decode(errors="replace")[:300])
    t0 = time.time()
    emit("capture_live", device=args.device)
    total = int(args.seconds * RATE) * 2
    per_chunk = int(args.chunk_s * RATE) * 2
    enc = StreamEncoder(args.bitrate)
    enc.write(first)
    in_chunk = got = len(first)
    seq = 0
    while got < total and not errors:
        want = min(per_chunk - in_chunk, total - got)
        data = os.read(fd, min(want, 65536))
        if not data:
            fail("parec stopped: " + rec.stderr.read().decode(errors="replace")[:300])
        enc.write(data)
        got += len(data)
        in_chunk += len(data)
        if in_chunk >= per_chunk:
            seq += 1
            enc.end_input()
            sendq.put((seq, enc, time.time()))
            emit("chunk_recorded", seq=seq)
            enc = StreamEncoder(args.bitrate)
            in_chunk = 0
    t_stop = time.time()
    rec.terminate()
    rec.wait()
    if in_chunk and not errors:
        seq += 1
        enc.end_input()
        sendq.put((seq, enc, t_stop))
        emit("chunk_recorded", seq=seq, last=True)
    else:
        enc.proc.kill()
    emit("capture_stopped", seconds=round(t_stop - t0, 3), chunks=seq)
    sendq.put(None)
    th.join()
    if errors:
        fail(f"sending failed: {errors[0]!r}")
    ans, n429, waited = cl.call_retrying("PUT", info_path, {
        "device_id": me["device_id"], "state": "stopped", "last_chunk_sequence": seq,
        "m.relates_to": {"rel_type": "m.reference", "event_id": info_id},
    }, what="broadcast info (stopped)")
    emit("broadcast_stopped", event_id=ans["event_id"], last_chunk_sequence=seq, n429=n429,
         waited_ms=round(waited), chunks_n429=totals["n429"], chunks_waited_ms=round(totals["waited_ms"]))
    return 0


# --- listen --------------------------------------------------------------------

def listen(args):
    st = load_state(args.state)
    me = st["bobs"][args.index - 1]
    cl = Client(st["homeserver"], me["token"])
    room_id = st["room_id"]
    sync_filter = json.dumps({
        "room": {
            "rooms": [room_id],
            "timeline": {"limit": 100},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    }, separators=(",", ":"))
    deadline = time.time() + args.timeout

    def sync(since, timeout_ms):
        q = {"filter": sync_filter, "timeout": str(timeout_ms)}
        if since:
            q["since"] = since
        status, ans, _ = cl.call("GET", "/_matrix/client/v3/sync?" + urllib.parse.urlencode(q),
                                 timeout=timeout_ms / 1000 + 30)
        if status != 200:
            fail(f"listener {args.index}: /sync -> {status} {ans!r:.300}")
        return ans

    player = None
    playq = queue.Queue()
    pthread = None
    if args.play:
        player = subprocess.Popen(
            ["pacat", "--playback", "--verbose", f"--device={args.device}", f"--rate={RATE}", "--channels=1",
             "--format=s16le", f"--latency-msec={args.player_latency_ms}", f"--client-name=chunked-listener{args.index}"],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = threading.Event()
        writing = threading.Event()

        def pacat_log():
            # pacat -v: "Stream successfully created.", then "Stream underrun."
            # whenever it runs dry (between chunks that do not meet).
            for line in player.stderr:
                text = line.decode(errors="replace").strip()
                if "Stream successfully created" in text:
                    ready.set()
                elif "underrun" in text.lower():
                    # While the player is still writing a chunk, the data was
                    # there but pacat (or this process) was not scheduled in
                    # time: a stall of a busy machine, not a late chunk.
                    emit("underrun", while_writing=writing.is_set())
                elif "Stream started" in text:
                    emit("stream_started")

        threading.Thread(target=pacat_log, daemon=True).start()
        if not ready.wait(10) or player.poll() is not None:
            fail(f"listener {args.index}: pacat did not open {args.device}")
        emit("output_opened", device=args.device)

        def play():
            while True:
                item = playq.get()
                if item is None:
                    break
                seq, pcm = item
                emit("chunk_queued", seq=seq)
                writing.set()
                player.stdin.write(pcm)
                player.stdin.flush()
                writing.clear()
            player.stdin.close()
            player.wait()
            emit("playback_drained")

        pthread = threading.Thread(target=play, daemon=True)
        pthread.start()

    since = sync(None, 0)["next_batch"]
    emit("listening", room_id=room_id, device_id=me["device_id"])
    handled, pending, next_seq, last = set(), {}, 1, None
    while last is None or not all(s in handled for s in range(1, last + 1)):
        left = deadline - time.time()
        if left <= 0:
            fail(f"listener {args.index}: timed out; chunks handled {sorted(handled)}, last {last}")
        ans = sync(since, int(min(30000, left * 1000)))
        t_recv = time.time()
        since = ans["next_batch"]
        events = ans.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        if events.get("limited"):
            emit("warning", text="timeline limited: chunks may have been skipped")
        for ev in events.get("events", []):
            c = ev.get("content", {})
            if ev.get("type") == INFO_TYPE and c.get("state") == "stopped":
                last = int(c.get("last_chunk_sequence", 0))
                emit("broadcast_stopped", last_chunk_sequence=last)
                continue
            if ev.get("type") != "m.room.message" or c.get("msgtype") != "m.audio" or CHUNK_KEY not in c:
                continue
            seq = int(c[CHUNK_KEY]["sequence"])
            if seq in handled:
                continue
            mxc = c.get("url", "")
            if not mxc.startswith("mxc://"):
                fail(f"chunk {seq} has no plain url (encrypted?): {c!r:.200}")
            server, media = mxc[len("mxc://"):].split("/", 1)
            status, ogg, _ = cl.call("GET", f"/_matrix/client/v1/media/download/{quote(server)}/{quote(media)}")
            if status != 200:
                fail(f"listener {args.index}: download of chunk {seq} -> {status} {ogg!r:.200}")
            t_dl = time.time()
            dec = subprocess.run(["opusdec", "--quiet", "--rate", str(RATE), "-", "-"],
                                 input=ogg, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if dec.returncode != 0:
                fail(f"opusdec failed on chunk {seq}: {dec.stderr.decode(errors='replace')[:300]}")
            pcm = dec.stdout
            t_dec = time.time()
            handled.add(seq)
            emit("chunk_received", seq=seq, event_id=ev.get("event_id"), t_recv=round(t_recv, 4),
                 download_ms=round((t_dl - t_recv) * 1000, 1), decode_ms=round((t_dec - t_dl) * 1000, 1),
                 samples=len(pcm) // 2)
            if player is not None:
                pending[seq] = pcm
                while next_seq in pending:
                    playq.put((next_seq, pending.pop(next_seq)))
                    next_seq += 1
    emit("all_chunks", chunks=len(handled))
    if player is not None:
        playq.put(None)
        pthread.join(max(1.0, deadline - time.time()))
        if pthread.is_alive():
            fail(f"listener {args.index}: playback did not drain before the timeout")
    emit("done")
    return 0


# --- report ----------------------------------------------------------------------

def read_jsonl(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def pctl(vals, p):
    import math
    if not vals:
        return None
    s = sorted(vals)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def report(args):
    talk_ev = read_jsonl(args.talk)
    sent = {e["seq"]: e for e in talk_ev if e["event"] == "chunk_sent"}
    lis = [{e["seq"]: e for e in read_jsonl(p) if e["event"] == "chunk_received"} for p in args.listen]
    # Gaps: pacat ran dry before a later chunk was queued (the final
    # underrun, after the last chunk, is the end of the talk, not a gap).
    l1 = read_jsonl(args.listen[0]) if args.listen else []
    queued = [e["t"] for e in l1 if e["event"] == "chunk_queued"]
    runs_dry = [e for e in l1 if e["event"] == "underrun" and queued and e["t"] < queued[-1]]
    stalls = sum(1 for e in runs_dry if e.get("while_writing"))
    gaps = len(runs_dry) - stalls
    print("chunk  dur_ms  sent_ms  429s  wait_ms  recv_ms(l1)  decoded_ms(l1)  recv_ms(max over listeners)")
    recv1, recv_all, sent_ms = [], [], []
    for seq in sorted(sent):
        s = sent[seq]
        t_end = s["t_end"]
        r = [d[seq] for d in lis if seq in d]
        rv = [(x["t_recv"] - t_end) * 1000 for x in r]
        l1 = lis[0].get(seq) if lis else None
        r1 = (l1["t_recv"] - t_end) * 1000 if l1 else None
        d1 = r1 + l1["download_ms"] + l1["decode_ms"] if l1 else None
        sent_ms.append(s["sent_ms"])
        if r1 is not None:
            recv1.append(r1)
        recv_all.extend(rv)
        f = lambda v: "-" if v is None else f"{v:.0f}"
        print(f"{seq:5d}  {s['duration_ms']:6d}  {s['sent_ms']:7.0f}  {s['n429']:4d}  {s['waited_ms']:7d}  "
              f"{f(r1):>11}  {f(d1):>14}  {f(max(rv) if rv else None):>8}  ({len(r)}/{len(lis)} listeners)")
    res = {
        "chunks": len(sent),
        "rate_limited": sum(s["n429"] for s in sent.values()),
        "retry_wait_ms": sum(s["waited_ms"] for s in sent.values()),
        "chunk_sent_p50_ms": round(pctl(sent_ms, 50), 1) if sent_ms else None,
        "chunk_recv_p50_ms": round(pctl(recv_all, 50), 1) if recv_all else None,
        "chunk_recv_max_ms": round(max(recv_all), 1) if recv_all else None,
        "playback_gaps": gaps,
        "playback_stalls": stalls,
    }
    print("(ms after the chunk's last sample was captured; recv = the listener's /sync returned it); "
          f"bob1's player ran dry {gaps} time(s) before a chunk came (it played late: the latency stepped up)")
    if stalls:
        print(f"warning: bob1's player stalled {stalls} time(s) in the middle of a chunk (a busy machine: "
              "pacat was not fed in time); each stall adds to the latency of the clicks after it")
    print("json " + json.dumps(res))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("--homeserver", required=True)
    s.add_argument("--users", required=True, help="demo_setup.py's state file (passwords)")
    s.add_argument("--listeners", type=int, default=1)
    s.add_argument("--out", required=True)
    t = sub.add_parser("talk")
    t.add_argument("--state", required=True)
    t.add_argument("--seconds", type=float, required=True)
    t.add_argument("--chunk-s", type=float, required=True)
    t.add_argument("--bitrate", type=float, default=24, help="kbit/s (Element: 24 for voice)")
    t.add_argument("--device", default="mic")
    li = sub.add_parser("listen")
    li.add_argument("--state", required=True)
    li.add_argument("--index", type=int, default=1)
    li.add_argument("--play", action="store_true")
    li.add_argument("--device", default="speaker")
    li.add_argument("--timeout", type=float, default=600)
    li.add_argument("--player-latency-ms", type=int, default=200,
                    help="pacat's buffer; it does not delay a chunk that starts on an empty stream, "
                         "it only keeps a busy machine from running it dry mid-chunk")
    r = sub.add_parser("report")
    r.add_argument("--talk", required=True)
    r.add_argument("--listen", nargs="*", default=[])
    args = p.parse_args()
    return {"setup": setup, "talk": talk, "listen": listen, "report": report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
