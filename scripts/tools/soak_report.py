"""The soak's report (scripts/soak.sh): talks, recordings posted, talks
saved whole by every listener, frames lost, talks a listener did not follow,
talks the app played (when it was among the listeners), the resident memory
slope after the first minute and the CPU of every sampled process (each
listener, the app, its webview processes); a JSON summary, and a plot of
memory over time when a plot path is given (needs matplotlib). With --check
it exits 1 when any talk failed, was not posted, was not saved whole or not
followed by a listener, or was not played by the app.

    soak_report.py WORK LISTENERS TALK_S DURATION OUT PLOT EVERY [--check]
"""
import csv, json, os, platform, sys, time

args = [a for a in sys.argv[1:] if a != "--check"]
check = "--check" in sys.argv[1:]
work, listeners, talk_s, duration, out, plot, every = args[0], int(args[1]), float(args[2]), int(args[3]), args[4], args[5], args[6]
setup = json.load(open(f"{work}/setup.json")) if os.path.exists(f"{work}/setup.json") else {}
talks = [json.loads(l) for l in open(f"{work}/talks.jsonl") if l.startswith("{")]
sessions = [t["session_id"] for t in talks if "session_id" in t]
posted = sum(1 for t in talks if t.get("recording", {}).get("posted"))
expected = talk_s * 48000
per = []
for i in range(1, listeners + 1):
    ev = [json.loads(l) for l in open(f"{work}/listen{i}.jsonl") if l.startswith("{")]
    saved = {e["session_id"]: e.get("samples", 0) for e in ev if e.get("event") == "saved"}
    started = {e["session_id"] for e in ev if e.get("event") == "talk_started"}
    whole = sum(1 for s in sessions if saved.get(s, 0) >= 0.97 * expected)
    lost_frames = sum(max(0, int((expected - saved.get(s, 0)) / 960)) for s in sessions)
    per.append({"name": f"listener{i}", "talks_saved_whole": whole, "frames_lost": lost_frames,
                "talks_not_followed": sum(1 for s in sessions if s not in started),
                "talks_started_not_sent": len(started - set(sessions))})
app = None
if setup.get("app"):
    # The app's player logs each talk it finished playing (radio, debug).
    finished = [l for l in open(f"{work}/app.log", errors="replace") if "Finished" in l]
    app = {"name": "app", "talks_played": sum(1 for s in sessions if any(s in l for l in finished))}


def name_of(field):
    # Older runs wrote the listener's number instead of its name.
    return f"listener{field}" if field.isdigit() else field


rows = [(float(t), name_of(n), int(r), int(c)) for t, n, r, c in csv.reader(open(f"{work}/samples.csv"))]
names = list(dict.fromkeys(n for _, n, _, _ in rows))
hz = os.sysconf("SC_CLK_TCK")
mem = {}


def slope_per_hour(pts):
    """Least-squares slope of (seconds, KiB) points, in KiB per hour."""
    if len(pts) < 3:
        return None
    k = len(pts); mx = sum(p[0] for p in pts) / k; my = sum(p[1] for p in pts) / k
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den * 3600 if den else None


for name in names:
    pts = [(t, r) for t, n, r, _ in rows if n == name and t >= 60]
    cpu = [(t, c) for t, n, _, c in rows if n == name]
    slope = slope_per_hour(pts)
    # Whether growth levels off: the slope over the second half alone.
    late = slope_per_hour([(t, r) for t, r in pts if t >= duration / 2])
    cpu_pct = ((cpu[-1][1] - cpu[0][1]) / hz) / (cpu[-1][0] - cpu[0][0]) * 100 if len(cpu) >= 2 and cpu[-1][0] > cpu[0][0] else None
    mem[name] = {"rss_first_kib": pts[0][1] if pts else None, "rss_last_kib": pts[-1][1] if pts else None,
                 "slope_kib_per_hour": round(slope, 1) if slope is not None else None,
                 "slope_second_half_kib_per_hour": round(late, 1) if late is not None else None,
                 "cpu_pct_of_one_core": round(cpu_pct, 2) if cpu_pct is not None else None}
for p in per + ([app] if app else []):
    p.update(mem.get(p["name"], {}))
result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
          "duration_s": duration, "every_s": int(every), "talk_s": talk_s,
          "federated_one_way_ms": setup.get("one_way_ms", 0) if setup.get("federated") else None,
          "talks": len(talks), "talks_failed": sum(1 for t in talks if t.get("failed")),
          "recordings_posted": posted, "listeners": per, "app": app,
          "app_panel": setup.get("panel") if setup.get("app") else None,
          "webview": mem.get("webview")}
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
json.dump(result, open(out, "w"), indent=2)
print(json.dumps(result, indent=2))
if plot:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in names:
        pts = [(t / 60, r / 1024) for t, n, r, _ in rows if n == name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name} (slope {mem[name]['slope_kib_per_hour']} KiB/h)")
    ax.set_xlabel("minutes"); ax.set_ylabel("resident memory (MiB)")
    where = " across two homeservers 1 s apart" if setup.get("federated") else ""
    if setup.get("app") and setup.get("panel"):
        where += f", the app's panel {'on screen' if setup['panel'] == 'open' else 'in the tray'}"
    ax.set_title(f"a {talk_s:g} s talk every {every} s for {duration / 60:.0f} min{where}")
    ax.legend(fontsize="small"); fig.tight_layout(); fig.savefig(plot, dpi=100)

if check:
    problems = []
    if result["talks_failed"]:
        problems.append(f'{result["talks_failed"]} talk(s) failed')
    if result["recordings_posted"] != result["talks"]:
        problems.append(f'{result["recordings_posted"]} recording(s) posted for {result["talks"]} talks')
    for p in per:
        for key in ("frames_lost", "talks_not_followed", "talks_started_not_sent"):
            if p[key]:
                problems.append(f'{p["name"]}: {key} = {p[key]}')
        if p["talks_saved_whole"] != len(sessions):
            problems.append(f'{p["name"]}: {p["talks_saved_whole"]} of {len(sessions)} talks saved whole')
    if app and app["talks_played"] != len(sessions):
        problems.append(f'the app played {app["talks_played"]} of {len(sessions)} talks')
    if not sessions:
        problems.append("no talk happened")
    if problems:
        print("soak FAILED: " + "; ".join(problems), file=sys.stderr)
        sys.exit(1)
    print(f"soak passed: {len(sessions)} talks, all posted, all saved whole by {listeners} listener(s)"
          + (", all played by the app" if app else ""), file=sys.stderr)
