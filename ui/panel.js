// The panel: renders the status the Rust side sends (`status` command on
// load, `status` events after) and calls the app's commands. No protocol
// logic of its own; countdowns are computed from the expiry the app gives.
"use strict";

const LABELS = {
  "signed-out": "signed out",
  "signing-in": "signing in…",
  online: "online",
  offline: "offline",
  failed: "sign-in failed",
};

// This device's standing in its account, as the Account section says it.
const DEVICE_STATE = {
  verified: "This device is verified",
  unverified: "This device is not verified — other people's Walkie will not talk to it or play its talks.",
  no_identity: "This account has no cross-signing identity yet — sign out and sign in again to create one.",
};

let invoke;
let lastStatus = null;
// An emoji verification is under way (started from this panel).
let verifying = false;
// The identity-changed list as last drawn (redrawn only when it changes).
let drawnIdentityChanged = "";
let groups = [];
// The group list as last drawn, but for who holds each floor (that changes
// twice a talk and is set in place): an unchanged list is not rebuilt, as
// rebuilding its controls on every status costs the webview memory.
let drawnGroups = "";
// The status the unplayed talks were last read for.
let readUnplayedFor = "";
// The other rooms as last listed.
let drawnRooms = "";
// The app's clock minus ours, so countdowns follow the app's clock.
let clockOffset = 0;

const $ = (id) => document.getElementById(id);

// The device name `walkie echo` gives itself: the panel says what it does.
const ECHO_DEVICE_NAME = "Walkie echo";

// A percentage slider's value as a gain (100 % = 1.0).
const percent = (gain) => Math.round(gain * 100);

function formatRemaining(ms) {
  if (ms <= 0) return "expired";
  const s = Math.ceil(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

async function call(command, args) {
  try {
    showError("");
    return await invoke(command, args);
  } catch (e) {
    showError(String(e));
    throw e;
  }
}

function render(s) {
  lastStatus = s;
  const state = $("state");
  state.dataset.state = s.account;
  state.textContent = LABELS[s.account] || s.account;
  const signedIn = ["online", "offline"].includes(s.account);
  const signingIn = s.account === "signing-in";
  $("sign-in").hidden = signedIn || signingIn;
  $("si-submit").disabled = signingIn;
  $("si-error").hidden = !(s.error && !signedIn);
  $("si-error").textContent = s.error || "";
  for (const id of ["radio", "groups-section", "unplayed-section", "settings", "account"]) {
    $(id).hidden = !signedIn;
  }
  const hotkeyInput = $("hotkey-input");
  if (document.activeElement !== hotkeyInput) hotkeyInput.value = s.hotkey || "";
  $("hotkey-mode").value = s.hotkey_mode;
  $("autostart").checked = s.autostart;
  $("cue-permit").checked = s.cues.talk_permit;
  $("cue-busy").checked = s.cues.busy;
  $("cue-end").checked = s.cues.talk_end;
  const tail = $("release-tail");
  if (document.activeElement !== tail) tail.value = s.release_tail_ms;
  $("user").textContent = s.user_id || "—";
  $("device").textContent = s.device_id || "—";
  $("homeserver").textContent = s.homeserver || "—";
  const radio = $("radio-state");
  radio.dataset.state = s.radio;
  radio.textContent = s.radio.replace("-", " ");
  $("talker").textContent = s.talker && ["receiving", "busy"].includes(s.radio) ? s.talker : "";
  $("mute").checked = s.muted;
  $("dnd").value = !s.dnd ? "off" : s.dnd_until ? "60" : "until";
  $("hotkey").textContent = s.hotkey
    ? `Or hold ${s.hotkey} anywhere.`
    : s.hotkey_error || "";
  renderTrust(s, signedIn);
  if (signedIn) {
    showError(s.error || "");
    refreshGroups();
    // Re-read only when the queue changed (or who or which groups: the
    // list names them), not for every status.
    const unplayedFor = JSON.stringify([s.queue_version, s.user_id, s.groups]);
    if (unplayedFor !== readUnplayedFor) {
      readUnplayedFor = unplayedFor;
      refreshUnplayed();
    }
  } else {
    readUnplayedFor = "";
  }
}

function renderTrust(s, signedIn) {
  const state = s.device_state;
  const line = $("device-state");
  line.dataset.state = state || "";
  line.textContent = state ? DEVICE_STATE[state] || state : signedIn ? "checking…" : "—";
  const key = signedIn && s.recovery_key;
  $("recovery-key-box").hidden = !key;
  $("recovery-key").textContent = key || "";
  const verify = signedIn && (state === "unverified" || verifying);
  $("verify-box").hidden = !verify;
  $("verify-state").textContent = DEVICE_STATE[state] || "";
  $("recover-form").hidden = state !== "unverified" || verifying;
  $("verify-device").hidden = verifying;
  $("verify-cancel").hidden = !verifying;
  const changed = signedIn ? s.identity_changed : [];
  const drawn = JSON.stringify(changed);
  if (drawn !== drawnIdentityChanged) {
    drawnIdentityChanged = drawn;
    $("identity-changed").replaceChildren(
      ...changed.map((user) => {
        const li = document.createElement("li");
        li.className = "identity-changed row";
        li.dataset.user = user;
        const text = document.createElement("span");
        text.textContent = `⚠ ${user}'s identity changed — Walkie stopped talking to ${user}. Check with them, then Accept.`;
        const accept = document.createElement("button");
        accept.type = "button";
        accept.className = "accept-identity";
        accept.textContent = "Accept";
        accept.addEventListener("click", async () => {
          accept.disabled = true;
          try {
            await call("accept_identity", { user });
          } finally {
            accept.disabled = false;
          }
        });
        li.append(text, accept);
        return li;
      }),
    );
  }
  $("trust").hidden = !(key || verify || changed.length);
}

function verifyMessage(id, message) {
  $(id).hidden = !message;
  $(id).textContent = message || "";
}

// The emoji verification's view: progress text, the emoji, the buttons.
function showVerification({ progress = "", emoji = null, error = "" }) {
  verifyMessage("verify-progress", progress);
  verifyMessage("verify-error", error);
  const list = $("verify-emoji");
  list.hidden = !emoji;
  list.replaceChildren(
    ...(emoji || []).map((e) => {
      const li = document.createElement("li");
      const symbol = document.createElement("span");
      symbol.className = "symbol";
      symbol.textContent = e.symbol;
      const name = document.createElement("span");
      name.className = "description";
      name.textContent = e.description;
      li.append(symbol, name);
      return li;
    }),
  );
  $("verify-compare").hidden = !emoji;
  if (lastStatus) renderTrust(lastStatus, ["online", "offline"].includes(lastStatus.account));
}

async function verifyWithDevice() {
  verifying = true;
  const device = lastStatus && lastStatus.device_id ? lastStatus.device_id : "this device";
  showVerification({
    progress: `Waiting for your other device: start the verification there (Element: "Verify session"; Walkie: walkie verify request ${device}).`,
  });
  try {
    const emoji = await invoke("verify_with_device");
    showVerification({
      progress: "Do these emoji match the ones on your other device, in the same order?",
      emoji,
    });
  } catch (e) {
    verifying = false;
    showVerification({ error: String(e) });
  }
}

async function confirmVerification(matches) {
  $("verify-compare").hidden = true;
  verifyMessage("verify-progress", matches ? "Waiting for the other device to confirm…" : "");
  try {
    await invoke("verify_confirm", { matches });
    verifying = false;
    showVerification({});
  } catch (e) {
    verifying = false;
    showVerification({ error: String(e) });
  }
}

function groupName(roomId) {
  const g = groups.find((x) => x.room_id === roomId);
  return g ? g.name : roomId;
}

function fillSelect(select, names, chosen) {
  const options = [["", "System default"], ...names.map((n) => [n, n])];
  select.replaceChildren(
    ...options.map(([value, label]) => {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = label;
      return o;
    }),
  );
  select.value = chosen || "";
}

async function refreshDevices() {
  try {
    const d = await invoke("audio_devices");
    fillSelect($("input-device"), [...new Set(d.inputs)], d.input);
    fillSelect($("output-device"), [...new Set(d.outputs)], d.output);
  } catch (e) {
    showError(String(e));
  }
}

async function refreshUnplayed() {
  let talks = [];
  try {
    talks = await invoke("unplayed_talks");
  } catch (e) {
    // Not signed in any more: the status event says so.
  }
  $("no-unplayed").hidden = talks.length > 0;
  $("unplayed").replaceChildren(
    ...talks.map((t) => {
      const li = document.createElement("li");
      li.className = "talk-item row";
      li.dataset.session = t.session;
      const label = document.createElement("span");
      const when = new Date(t.start_ts).toLocaleTimeString();
      label.textContent = `${t.sender} in ${groupName(t.room_id)}, ${when}, ${(t.duration_ms / 1000).toFixed(1)} s${t.held ? "" : " (queued)"}`;
      const play = document.createElement("button");
      play.type = "button";
      play.textContent = "Play";
      play.addEventListener("click", () => call("play_talk", { session: t.session }));
      const skip = document.createElement("button");
      skip.type = "button";
      skip.className = "secondary";
      skip.textContent = "Skip";
      skip.addEventListener("click", () => call("skip_talk", { session: t.session }));
      li.append(label, play, skip);
      return li;
    }),
  );
}

// Reads the groups and draws them; `force` after the user changed a
// control, so that it shows what applies even if nothing changed.
async function refreshGroups(force = false) {
  try {
    groups = await invoke("groups");
    const apps = groups.length ? groups[0].now_ms : Date.now();
    clockOffset = apps - Date.now();
  } catch (e) {
    groups = [];
  }
  renderGroups(force);
  try {
    const rooms = await invoke("other_rooms");
    const key = JSON.stringify(rooms);
    if (!force && key === drawnRooms) return;
    drawnRooms = key;
    const select = $("other-rooms");
    select.replaceChildren(
      ...rooms.map((r) => {
        const o = document.createElement("option");
        o.value = r.room_id;
        o.textContent = r.name;
        return o;
      }),
    );
    $("make-group-form").hidden = rooms.length === 0;
  } catch (e) {
    // Not signed in any more: the status event says so.
  }
}

// The user is typing into or dragging a control in the list: redrawing
// would take it from under them (it is drawn again when focus leaves).
function editingGroups() {
  const active = document.activeElement;
  return (
    $("groups").contains(active) &&
    active.matches("input:not([type]), input[type=text], input[type=number], input[type=range]")
  );
}

// A redraw waited for the user to leave a control.
let groupsRedrawPending = false;

// Who holds a group's floor, as its row says it.
function holderText(g) {
  return g.holder ? `${g.holder} is talking` : "";
}

function renderGroups(force = false) {
  if (editingGroups()) {
    groupsRedrawPending = true;
    return;
  }
  groupsRedrawPending = false;
  const key = JSON.stringify(groups.map(({ holder, now_ms, ...rest }) => rest));
  if (!force && key === drawnGroups) {
    for (const g of groups) {
      const li = $("groups").querySelector(`.group[data-room="${CSS.escape(g.room_id)}"]`);
      const holder = li && li.querySelector(".holder");
      if (holder) holder.textContent = holderText(g);
    }
    return;
  }
  drawnGroups = key;
  const list = $("groups");
  const template = $("group-template");
  $("no-groups").hidden = groups.length > 0;
  list.replaceChildren(
    ...groups.map((g) => {
      const li = template.content.firstElementChild.cloneNode(true);
      li.dataset.room = g.room_id;
      li.querySelector(".name").textContent = g.name;
      const radio = li.querySelector("input[type=radio]");
      radio.checked = g.talk_room;
      radio.addEventListener("change", () => call("set_talk_room", { room: g.room_id }));
      li.querySelector(".holder").textContent = holderText(g);
      const mine = g.devices.find((d) => d.mine);
      li.querySelector(".mine").textContent = mine
        ? mine.expires_ts ? "Consenting, ends in" : "Consenting until revoked"
        : "Not consenting";
      const countdown = li.querySelector(".countdown");
      countdown.dataset.expires = mine && mine.expires_ts ? mine.expires_ts : "";
      li.querySelector(".revoke").disabled = !mine;
      for (const button of li.querySelectorAll("button[data-minutes]")) {
        button.addEventListener("click", async () => {
          const minutes = button.dataset.minutes === "" ? null : Number(button.dataset.minutes);
          await call("grant_consent", { room: g.room_id, minutes });
          await refreshGroups(true);
        });
      }
      li.querySelector(".grant-custom").addEventListener("click", async () => {
        const minutes = Number(li.querySelector(".custom-minutes").value);
        if (!(minutes >= 1 && minutes <= 1440)) return showError("Give 1 to 1440 minutes");
        await call("grant_consent", { room: g.room_id, minutes });
        await refreshGroups(true);
      });
      li.querySelector(".revoke").addEventListener("click", async () => {
        await call("revoke_consent", { room: g.room_id });
        await refreshGroups(true);
      });
      const recordings = li.querySelector(".recordings");
      recordings.value = g.recordings;
      recordings.disabled = !g.can_change_settings;
      li.querySelector(".recordings-note").textContent = g.can_change_settings
        ? ""
        : "set by the group's admins";
      recordings.addEventListener("change", async () => {
        // A refusal is shown by `call`; the list then shows what applies.
        await call("set_recordings", { room: g.room_id, mode: recordings.value }).catch(() => {});
        await refreshGroups(true);
      });
      renderPlayback(li, g);
      const others = g.devices.filter((d) => !d.mine);
      li.querySelector(".no-devices").hidden = others.length > 0;
      li.querySelector(".devices").replaceChildren(
        ...others.map((d) => {
          const item = document.createElement("li");
          const echo = d.name === ECHO_DEVICE_NAME;
          item.className = echo ? "device echo" : "device";
          item.dataset.expires = d.expires_ts || "";
          item.dataset.device = d.device_id;
          const device = d.name ? `${d.name}, ${d.device_id}` : d.device_id;
          item.dataset.label =
            `${d.user_id} (${device})${d.talk ? "" : " · listens only"}` +
            (echo ? " · echo: plays each of your talks back to you" : "");
          return item;
        }),
      );
      li.querySelector(".members").replaceChildren(...g.members.map(renderMember));
      li.querySelector(".invite-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        const input = li.querySelector(".invite-user");
        await call("invite", { room: g.room_id, user: input.value }).then(
          () => (input.value = ""),
          () => {},
        );
        input.blur();
        await refreshGroups(true);
      });
      li.querySelector(".excluded").replaceChildren(
        ...g.excluded.map((x) => {
          const item = document.createElement("li");
          item.className = "excluded-device";
          item.dataset.reason = x.reason;
          item.textContent = `Won't hear you: ${x.user_id} (${x.device_id}) — ${x.why}`;
          return item;
        }),
      );
      return li;
    }),
  );
  tick();
}

// A group's volume, hold (mute) and priority controls.
function renderPlayback(li, g) {
  const volume = li.querySelector(".group-volume");
  const text = li.querySelector(".group-volume-text");
  const muted = li.querySelector(".group-muted");
  const priority = li.querySelector(".group-priority");
  volume.value = percent(g.playback.volume);
  text.textContent = `${volume.value} %`;
  muted.checked = g.playback.muted;
  priority.value = String(Math.max(-1, Math.min(1, g.playback.priority)));
  // Only the control changed is sent: a redraw from an older status cannot
  // undo another control's change.
  const save = async (change) => {
    await call("set_group_playback", { room: g.room_id, ...change }).catch(() => {});
    volume.blur();
    await refreshGroups(true);
  };
  volume.addEventListener("input", () => (text.textContent = `${volume.value} %`));
  volume.addEventListener("change", () => save({ volume: Number(volume.value) / 100 }));
  muted.addEventListener("change", () => save({ muted: muted.checked }));
  priority.addEventListener("change", () => save({ priority: Number(priority.value) }));
}

// Another member, with their volume slider.
function renderMember(m) {
  const item = document.createElement("li");
  item.className = "member row";
  item.dataset.user = m.user_id;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = (m.name ? `${m.name} (${m.user_id})` : m.user_id) + (m.invited ? " · invited" : "");
  const volume = document.createElement("input");
  volume.type = "range";
  volume.className = "person-volume";
  volume.min = "0";
  volume.max = "200";
  volume.step = "5";
  volume.value = percent(m.volume);
  volume.setAttribute("aria-label", `Volume of ${m.user_id}`);
  const text = document.createElement("span");
  text.className = "person-volume-text";
  text.textContent = `${volume.value} %`;
  volume.addEventListener("input", () => (text.textContent = `${volume.value} %`));
  volume.addEventListener("change", async () => {
    await call("set_person_volume", { user: m.user_id, volume: Number(volume.value) / 100 }).catch(() => {});
    volume.blur();
    await refreshGroups(true);
  });
  item.append(who, volume, text);
  return item;
}

// Every second: countdowns of this device and the others.
function tick() {
  // Closed to the tray: nobody reads the countdowns (shown again, the
  // panel gets a status and the next tick draws them).
  if (document.hidden) return;
  const now = Date.now() + clockOffset;
  for (const el of document.querySelectorAll(".countdown")) {
    el.textContent = el.dataset.expires ? formatRemaining(Number(el.dataset.expires) - now) : "";
  }
  for (const el of document.querySelectorAll(".device")) {
    const left = el.dataset.expires ? ` — ${formatRemaining(Number(el.dataset.expires) - now)} left` : " — until revoked";
    el.textContent = el.dataset.label + left;
  }
}

// A panel, not a browser: no Back / Reload / Inspect menu on right click.
document.addEventListener("contextmenu", (event) => event.preventDefault());

window.addEventListener("DOMContentLoaded", async () => {
  invoke = window.__TAURI__.core.invoke;
  const { listen } = window.__TAURI__.event;
  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("si-error").hidden = true;
    try {
      await invoke("sign_in", {
        user: $("si-user").value,
        password: $("si-password").value,
        homeserver: $("si-homeserver").value || null,
      });
      $("si-password").value = "";
    } catch (e) {
      $("si-error").hidden = false;
      $("si-error").textContent = String(e);
    }
  });
  $("sign-out").addEventListener("click", () => call("sign_out"));
  $("recovery-key-saved").addEventListener("click", () => call("recovery_key_saved"));
  $("recover-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("recover-submit");
    button.disabled = true;
    verifyMessage("recover-error", "");
    try {
      await invoke("verify_with_recovery_key", { key: $("recover-key").value });
      $("recover-key").value = "";
    } catch (e) {
      verifyMessage("recover-error", String(e));
    } finally {
      button.disabled = false;
    }
  });
  $("verify-device").addEventListener("click", verifyWithDevice);
  $("verify-cancel").addEventListener("click", async () => {
    await call("verify_cancel");
    verifying = false;
    showVerification({});
  });
  $("verify-match").addEventListener("click", () => confirmVerification(true));
  $("verify-mismatch").addEventListener("click", () => confirmVerification(false));
  $("mute").addEventListener("change", () => call("set_muted", { muted: $("mute").checked }));
  $("dnd").addEventListener("change", () => {
    const v = $("dnd").value;
    call("set_dnd", { minutes: v === "off" ? 0 : v === "until" ? null : Number(v) });
  });
  $("hotkey-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("hotkey-error");
    try {
      await invoke("set_hotkey", { shortcut: $("hotkey-input").value, mode: $("hotkey-mode").value });
      error.hidden = true;
    } catch (e) {
      error.hidden = false;
      error.textContent = String(e);
    }
  });
  const saveDevices = () =>
    call("set_audio_devices", {
      input: $("input-device").value || null,
      output: $("output-device").value || null,
    });
  $("input-device").addEventListener("change", saveDevices);
  $("output-device").addEventListener("change", saveDevices);
  $("mic-test").addEventListener("click", async () => {
    const button = $("mic-test");
    if (button.dataset.running) {
      await call("mic_test_stop");
    } else {
      button.dataset.running = "1";
      button.textContent = "Stop test";
      try {
        await call("mic_test_start");
      } catch (e) {
        delete button.dataset.running;
        button.textContent = "Test microphone";
      }
    }
  });
  await listen("mic-level", (event) => {
    const l = event.payload;
    $("mic-level").value = Math.max(-60, l.rms_dbfs);
    $("mic-level-text").textContent = `${l.rms_dbfs.toFixed(0)} dBFS`;
    $("mic-level-text").dataset.rms = l.rms_dbfs;
  });
  await listen("mic-test-ended", () => {
    const button = $("mic-test");
    delete button.dataset.running;
    button.textContent = "Test microphone";
    $("mic-level").value = -60;
  });
  await listen("mic-test-error", (event) => showError(`Microphone: ${event.payload}`));
  refreshDevices();
  $("autostart").addEventListener("change", () =>
    call("set_autostart", { enabled: $("autostart").checked }),
  );
  for (const id of ["cue-permit", "cue-busy", "cue-end"]) {
    $(id).addEventListener("change", () =>
      call("set_cues", {
        talkPermit: $("cue-permit").checked,
        busy: $("cue-busy").checked,
        talkEnd: $("cue-end").checked,
      }),
    );
  }
  $("make-group-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const room = $("other-rooms").value;
    if (room) await call("make_group", { room });
  });
  $("create-group-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = $("create-group");
    button.disabled = true;
    try {
      await call("create_group", {
        name: $("new-group-name").value,
        invitees: $("new-group-invitees").value,
      });
      $("new-group-name").value = "";
      $("new-group-invitees").value = "";
    } catch (e) {
      // Shown by `call`.
    } finally {
      button.disabled = false;
    }
  });
  $("release-tail").addEventListener("change", async () => {
    const error = $("release-tail-error");
    try {
      await invoke("set_release_tail", { ms: Number($("release-tail").value) });
      error.hidden = true;
    } catch (e) {
      error.hidden = false;
      error.textContent = String(e);
    }
  });
  // Drawn once the user leaves a control, if a redraw waited for that.
  $("groups").addEventListener("focusout", () => {
    if (groupsRedrawPending) setTimeout(() => renderGroups(true), 0);
  });
  const talk = $("talk");
  const press = (event) => {
    event.preventDefault();
    if (talk.classList.contains("down")) return;
    talk.classList.add("down");
    call("talk_press");
  };
  const release = () => {
    if (!talk.classList.contains("down")) return;
    talk.classList.remove("down");
    call("talk_release");
  };
  talk.addEventListener("pointerdown", press);
  talk.addEventListener("pointerup", release);
  talk.addEventListener("pointerleave", release);
  setInterval(tick, 1000);
  await listen("status", (event) => render(event.payload));
  render(await invoke("status"));
});
