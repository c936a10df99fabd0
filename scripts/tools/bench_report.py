#!/usr/bin/env python3
"""Turns the benches' JSON-lines results into docs/benchmarks.json and the
plot of mouth-to-ear latency against listening devices (issue 11).

  bench_report.py RESULTS.jsonl --json docs/benchmarks.json --plot docs/mouth-to-ear.png

Each line of RESULTS is one measurement a bench script appended (their OUT=
knob): {"kind": "mouth_to_ear", "peer": "walkie" | "mumble-default" | ...,
"listeners": N, "p50_ms": .., "p95_ms": .., ...} or {"kind": "fanout",
"fanout": "sealed" | "olm", "listeners": N, ...} or {"kind": "access", ...},
{"kind": "idle", ...}, {"kind": "opus", ...}, {"kind": "device", ...}. Later lines for the same key
(kind, peer or fan-out, listeners) replace earlier ones, so a bench can be
re-run alone. The plot needs matplotlib (the bench venv has it).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys

GOALS = {
    "mouth_to_ear_p95_ms": 100,
    "vs_mumble_p95_ratio_max": 1.25,
    "fanout_50_vs_1_p95_ratio_max": 2.0,
    "device_side_ms": 30,
    "press_to_permit_cue_ms": 50,
    "press_to_capture_live_ms": 25,
}


def machine():
    def cmd(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return None

    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        pass
    mem_kb = None
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(next(l.split()[1] for l in f if l.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
        "kernel": platform.release(),
        "os": cmd("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "rustc": cmd("rustc", "--version"),
    }


def key(r):
    return (r.get("kind"), r.get("peer") or r.get("fanout") or r.get("name"), r.get("listeners"))


def load(path):
    rows = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"{path}:{n}: skipped, not JSON: {e}", file=sys.stderr)
                continue
            rows[key(r)] = r
    return list(rows.values())


def plot(rows, out):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (scripts/bench.sh installs it into the bench venv)", file=sys.stderr)
        return False
    m2e = [r for r in rows if r.get("kind") == "mouth_to_ear" and r.get("p95_ms") is not None]
    peers = sorted({r["peer"] for r in m2e}, key=lambda p: (p != "walkie", p))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for peer in peers:
        pts = sorted((r["listeners"], r["p50_ms"], r["p95_ms"]) for r in m2e if r["peer"] == peer)
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[2] for p in pts], marker="o", label=f"{peer} p95")
        ax.plot(xs, [p[1] for p in pts], marker=".", linestyle=":", alpha=0.6, label=f"{peer} p50")
    ax.axhline(GOALS["mouth_to_ear_p95_ms"], color="grey", linestyle="--", linewidth=1, label="goal: p95 100 ms")
    ax.set_xscale("log")
    ax.set_xticks([1, 5, 10, 20, 50])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("listening devices")
    ax.set_ylabel("mouth-to-ear at the devices (ms)")
    ax.set_title("Mouth-to-ear latency, loopback, virtual PulseAudio devices")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out)
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--json", required=True)
    p.add_argument("--plot")
    a = p.parse_args()
    rows = load(a.results)
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r.get("kind", "other"), []).append(r)
    for v in by_kind.values():
        v.sort(key=lambda r: (str(r.get("peer") or r.get("fanout") or r.get("name")), r.get("listeners") or 0))
    doc = {
        "schema": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "goals": GOALS,
        "mouth_to_ear": by_kind.get("mouth_to_ear", []),
        "fanout": by_kind.get("fanout", []),
        "access": by_kind.get("access", []),
        "idle": by_kind.get("idle", []),
        "opus": by_kind.get("opus", []),
        "device": by_kind.get("device", []),
    }
    with open(a.json, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"wrote {a.json} ({sum(len(v) for v in by_kind.values())} measurements)")
    if a.plot and plot(rows, a.plot):
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
