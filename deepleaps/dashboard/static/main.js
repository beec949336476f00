// The page: one event stream from the dashboard's server feeds every panel.
import { request } from "./api.js";
import * as consolePanel from "./console.js";
import * as curves from "./curves.js";
import * as graph from "./graph.js";
import * as journal from "./journal.js";

const connection = document.getElementById("connection");
const summary = document.getElementById("summary");
const versionLabel = document.getElementById("version");

function showState(state) {
  if (!state.connected) {
    connection.textContent = state.error || "not connected";
    connection.className = "state down";
    return;
  }
  const status = state.status || {};
  connection.textContent = status.paused ? "PAUSED" : "training";
  connection.className = `state ${status.paused ? "paused" : "live"}`;
  const loss = typeof status.last_loss === "number" ? status.last_loss.toFixed(4) : "–";
  const metrics = Object.entries(status.metrics || {}).map(([k, v]) => `${k} ${Number(v).toFixed(4)}`);
  summary.textContent = [`loss ${loss}`, ...metrics].join("  ·  ");
  versionLabel.textContent = `version ${status.version}`;
}

const state = { connected: false, status: null };
const events = new EventSource("events");
events.onmessage = (message) => {
  const event = JSON.parse(message.data);
  for (const key of ["connected", "error", "status"]) if (key in event) state[key] = event[key];
  if ("svg" in event) graph.draw(event.svg, event.graph_error);
  if (state.status && ("svg" in event || "status" in event)) graph.update(state.status);
  if ("journal" in event || "status" in event) {
    journal.update(event.journal || [], event.journal_reset, state.status?.version);
  }
  if ("metrics" in event) curves.update(event.metrics);
  showState(state);
};
events.onerror = () => {
  if (events.readyState === EventSource.CLOSED || !state.connected) return;
  showState({ connected: false, error: "the dashboard is not answering" });
};

for (const button of document.querySelectorAll("#controls button[data-verb]")) {
  button.addEventListener("click", async () => {
    consolePanel.show(await request(button.dataset.verb));
  });
}
document.getElementById("set-lr").addEventListener("click", async () => {
  const value = document.getElementById("lr").value.trim();
  consolePanel.show(await request("SET", `optimizer.lr ${value}`));
});
