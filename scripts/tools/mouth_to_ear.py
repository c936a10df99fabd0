#!/usr/bin/env python3
"""Analysis half of scripts/bench-mouth-to-ear.sh (issue 11); stdlib only.

Two jobs:

  mouth_to_ear.py clicks OUT.wav --clicks N --spacing-ms MS --lead-ms MS
  mouth_to_ear.py noise OUT.wav --seconds S --dbfs DB
      writes the click train: LEAD ms of silence, then N bursts (5 ms of
      2 kHz at 0.9 full scale, 1 ms raised-cosine ramps) SPACING ms apart,
      and 1 s of silence after; 48 kHz mono s16.

  mouth_to_ear.py analyse REC.raw --channels 4 --mouth 0 --ear 2 \
      --boundary SAMPLE --clicks N --spacing-ms MS
      REC.raw is one raw s16le recording of the bench's `both` sink monitor:
      channel MOUTH is what alice's microphone hears, channel EAR what bob's
      device plays, on one sample clock. Frames before BOUNDARY are the
      calibration (the same burst played into micfeed and speaker by two
      paplay processes at once), frames from BOUNDARY on are the talk.
      Prints the figures, and one JSON line (prefix `json `) with all of them.

Onsets: the first sample whose absolute value exceeds --threshold (full scale
fraction, default 0.4: above the player's cues, which peak at 0.25), then a
dead time of a third of the spacing. Pairing: a mic click's partner is the
ear click nearest to (mic onset + the latency of the previous pair), within
half the spacing either side; the first pair is the first mic click and the
first ear click after it (so latencies above the spacing are measured right,
but a lost first click would shift every pair by one). A mic click without
partner is lost; further ear clicks in its window are doubled; ear clicks in
no window are stray. Latency swings of more than half the spacing between
consecutive clicks would show as lost + stray.

--pairing monotonic (for chunked playback, scripts/bench-chunked.sh): the
latency never falls (chunks play back to back, a late chunk plays late, so
each chunk's latency is at least its predecessor's) but may jump by seconds.
A mic click's partner is the first unused ear click at or after (mic onset +
the previous latency - half the spacing); further ear clicks less than half
a spacing after the partner are doubled; ear clicks skipped are stray. Any
jump upwards is measured right; a lost ear click shifts later pairs by one
(it reads as a jump of one spacing). The JSON then has "pairing" and "jumps"
(latency rises of more than half the spacing). The default (--pairing track)
is the behaviour above, unchanged.
"""

import argparse
import array
import json
import math
import sys

RATE = 48_000


def write_clicks(path, clicks, spacing_ms, lead_ms):
    burst_n = RATE * 5 // 1000
    ramp_n = RATE // 1000
    burst = []
    for i in range(burst_n):
        env = 1.0
        if i < ramp_n:
            env = 0.5 - 0.5 * math.cos(math.pi * i / ramp_n)
        elif i >= burst_n - ramp_n:
            env = 0.5 - 0.5 * math.cos(math.pi * (burst_n - 1 - i) / ramp_n)
        burst.append(int(0.9 * 32767 * env * math.sin(2 * math.pi * 2000 * i / RATE)))
    lead = RATE * lead_ms // 1000
    step = RATE * spacing_ms // 1000
    total = lead + step * clicks + RATE
    samples = array.array("h", bytes(2 * total))
    for c in range(clicks):
        at = lead + c * step
        samples[at:at + burst_n] = array.array("h", burst)
    write_wav(path, samples)


def write_noise(path, seconds, dbfs, seed=7):
    """White noise at `dbfs` RMS: a microphone's noise floor."""
    import random

    rng = random.Random(seed)
    amp = 32767 * 10 ** (dbfs / 20) * math.sqrt(3)
    n = int(RATE * seconds)
    write_wav(path, array.array("h", (int(rng.uniform(-amp, amp)) for _ in range(n))))


def write_wav(path, samples):
    """16-bit mono WAV at RATE."""
    import wave

    if sys.byteorder != "little":
        samples.byteswap()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def onsets(x, start, end, threshold, dead):
    out = []
    i = start
    while i < end:
        v = x[i]
        if v > threshold or v < -threshold:
            out.append(i)
            i += dead
        else:
            i += 1
    return out


def pct(sorted_vals, p):
    """Nearest-rank percentile."""
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, math.ceil(p / 100 * len(sorted_vals)) - 1))
    return sorted_vals[k]


def analyse(args):
    data = array.array("h")
    with open(args.rec, "rb") as f:
        raw = f.read()
    frame_bytes = 2 * args.channels
    raw = raw[: len(raw) - len(raw) % frame_bytes]
    data.frombytes(raw)
    if sys.byteorder != "little":
        data.byteswap()
    frames = len(data) // args.channels
    mouth = data[args.mouth :: args.channels]
    ear = data[args.ear :: args.channels]
    ms = lambda n: n * 1000.0 / RATE
    thr = int(args.threshold * 32767)
    dead = RATE * args.spacing_ms // 3000
    boundary = min(args.boundary, frames)

    # Calibration: the same burst into micfeed and speaker from two paplay
    # processes started together; pair each mouth onset with the nearest ear
    # onset within 100 ms.
    cal_m = onsets(mouth, 0, boundary, thr, dead)
    cal_e = onsets(ear, 0, boundary, thr, dead)
    cal = []
    for m in cal_m:
        near = [e for e in cal_e if abs(e - m) <= RATE // 10]
        if near:
            cal.append(ms(min(near, key=lambda e: abs(e - m)) - m))

    m_on = onsets(mouth, boundary, frames, thr, dead)
    e_on = onsets(ear, boundary, frames, thr, dead)

    half = RATE * args.spacing_ms // 2000
    lat, lost, doubled, used = [], 0, 0, set()
    per_click = []
    first_ear = [e for e in e_on if m_on and e >= m_on[0]]
    jumps = 0
    if first_ear and args.pairing == "monotonic":
        expect = first_ear[0] - m_on[0]
        for m in m_on:
            after = [e for e in e_on if e >= m + expect - half and e not in used]
            if not after:
                lost += 1
                per_click.append(None)
                continue
            best = after[0]
            extra = [e for e in after[1:] if e < best + half]
            used.add(best)
            used.update(extra)
            doubled += len(extra)
            if best - m > expect + half:
                jumps += 1
            lat.append(ms(best - m))
            per_click.append(round(ms(best - m), 1))
            expect = best - m
    elif first_ear:
        expect = first_ear[0] - m_on[0]
        for m in m_on:
            window = [e for e in e_on if m + expect - half <= e < m + expect + half and e not in used]
            if not window:
                lost += 1
                per_click.append(None)
                continue
            best = min(window, key=lambda e: abs(e - m - expect))
            used.update(window)
            doubled += len(window) - 1
            lat.append(ms(best - m))
            per_click.append(round(ms(best - m), 1))
            expect = best - m
    else:
        lost = len(m_on)
        per_click = [None] * len(m_on)
    stray = len([e for e in e_on if e not in used])
    # Cross-talk check: a leak from micfeed into speaker would put an ear
    # onset within 5 ms of each mic onset that no earlier mic click explains
    # (an ear click that merely coincides, latency ~ k x spacing, is paired).
    leaks = sum(1 for m in m_on if any(abs(e - m) <= 240 and e not in used for e in e_on))
    peak = lambda x, ons: sorted(max(abs(v) for v in x[o : o + RATE // 100]) / 32767 for o in ons)
    m_peak, e_peak = peak(mouth, m_on), peak(ear, e_on)

    s = sorted(lat)
    res = {
        "listeners": args.listeners,
        "clicks_played": args.clicks,
        "mic_clicks_detected": len(m_on),
        "ear_clicks_detected": len(e_on),
        "paired": len(lat),
        "lost": lost,
        "doubled": doubled,
        "stray": stray,
        "crosstalk": leaks,
        "p50_ms": round(pct(s, 50), 1) if s else None,
        "p95_ms": round(pct(s, 95), 1) if s else None,
        "max_ms": round(s[-1], 1) if s else None,
        "min_ms": round(s[0], 1) if s else None,
        "mean_ms": round(sum(s) / len(s), 1) if s else None,
        "calibration_ms": [round(c, 2) for c in cal],
        "mic_peak": round(m_peak[len(m_peak) // 2], 3) if m_peak else None,
        "ear_peak": round(e_peak[len(e_peak) // 2], 3) if e_peak else None,
        "recorded_s": round(frames / RATE, 2),
        "per_click_ms": per_click,
    }
    if args.pairing == "monotonic":
        res["pairing"] = "monotonic"
        res["jumps"] = jumps
    cal_txt = (
        f"{len(cal)} burst(s), ear - mouth offset " + ", ".join(f"{c:+.2f}" for c in cal) + " ms"
        if cal
        else "no calibration burst found in both channels"
    )
    print(f"calibration: {cal_txt} (not subtracted: both channels share one sample clock)")
    if len(m_on) != args.clicks:
        print(f"warning: {len(m_on)} mic clicks detected, {args.clicks} played")
    if leaks:
        print(f"warning: {leaks} mic click(s) also present in the ear channel (cross-talk)")
    if s:
        print(
            f"mouth-to-ear, {args.listeners} listening device(s): {len(s)}/{len(m_on)} clicks paired; "
            f"p50 {res['p50_ms']} ms, p95 {res['p95_ms']} ms, max {res['max_ms']} ms "
            f"(min {res['min_ms']}, mean {res['mean_ms']}); lost {lost}, doubled {doubled}, stray {stray}"
        )
    else:
        print(f"mouth-to-ear, {args.listeners} listening device(s): no click reached the speaker "
              f"({len(m_on)} mic clicks, {len(e_on)} ear onsets)")
    if m_peak and e_peak:
        print(f"median click peak: mic {res['mic_peak']}, ear {res['ear_peak']} of full scale (threshold {args.threshold})")
    print("per click (ms): " + " ".join("-" if v is None else f"{v:.0f}" for v in per_click))
    print("json " + json.dumps(res))
    return 0 if s else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("clicks")
    c.add_argument("out")
    c.add_argument("--clicks", type=int, default=40)
    c.add_argument("--spacing-ms", type=int, default=300)
    c.add_argument("--lead-ms", type=int, default=1000)
    nz = sub.add_parser("noise")
    nz.add_argument("out")
    nz.add_argument("--seconds", type=float, required=True)
    nz.add_argument("--dbfs", type=float, default=-60.0)
    a = sub.add_parser("analyse")
    a.add_argument("rec")
    a.add_argument("--channels", type=int, default=4)
    a.add_argument("--mouth", type=int, default=0)
    a.add_argument("--ear", type=int, default=2)
    a.add_argument("--boundary", type=int, default=0)
    a.add_argument("--clicks", type=int, default=40)
    a.add_argument("--spacing-ms", type=int, default=300)
    a.add_argument("--threshold", type=float, default=0.4)
    a.add_argument("--listeners", type=int, default=1)
    a.add_argument("--pairing", choices=("track", "monotonic"), default="track",
                   help="track (default): latency within half a spacing of the previous one; "
                        "monotonic: latency never falls but may jump (chunked playback)")
    args = p.parse_args()
    if args.cmd == "clicks":
        write_clicks(args.out, args.clicks, args.spacing_ms, args.lead_ms)
        return 0
    if args.cmd == "noise":
        write_noise(args.out, args.seconds, args.dbfs)
        return 0
    return analyse(args)


if __name__ == "__main__":
    sys.exit(main())
