// The panel: shows the app status the Rust side sends (`status` command on
// load, `status` events after). No logic of its own.
"use strict";

const LABELS = {
  "signed-out": "signed out",
  "signing-in": "signing in…",
  online: "online",
  offline: "offline",
  failed: "sign-in failed",
};

function render(s) {
  const state = document.getElementById("state");
  state.dataset.state = s.account;
  state.textContent = LABELS[s.account] || s.account;
  document.getElementById("user").textContent = s.user_id || "—";
  document.getElementById("device").textContent = s.device_id || "—";
  document.getElementById("homeserver").textContent = s.homeserver || "—";
  document.getElementById("rooms").textContent = s.account === "online" ? String(s.joined_rooms) : "—";
  const error = document.getElementById("error");
  error.hidden = !s.error;
  error.textContent = s.error || "";
}

window.addEventListener("DOMContentLoaded", async () => {
  const { invoke } = window.__TAURI__.core;
  const { listen } = window.__TAURI__.event;
  await listen("status", (event) => render(event.payload));
  render(await invoke("status"));
});
