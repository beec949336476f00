// The journal: every change with its id, verb, origin, point and diff; UNDO from the row it would undo.
import { request } from "./api.js";

const body = document.querySelector("#journal tbody");
let entries = [];
let version = null;

export function update(newEntries, reset, currentVersion) {
  if (reset) entries = [];
  entries.push(...(newEntries || []));
  if (currentVersion !== undefined) version = currentVersion;
  render();
}

// The plan changes UNDO can still take back, the last on top (an UNDO entry's text is the id it undid).
function undoable() {
  const stack = [];
  for (const entry of entries) {
    if (!entry.diff.length) continue;
    if (entry.verb === "UNDO") {
      const at = stack.findLastIndex((e) => String(e.id) === entry.text);
      if (at >= 0) stack.splice(at, 1);
    } else stack.push(entry);
  }
  return stack.at(-1);
}

function cell(text, pre = false) {
  const td = document.createElement("td");
  if (pre) {
    const block = document.createElement("pre");
    block.textContent = text;
    td.appendChild(block);
  } else td.textContent = text;
  return td;
}

function render() {
  const last = undoable();
  const rows = entries.slice().reverse().map((entry) => {
    const row = document.createElement("tr");
    row.dataset.patchId = entry.id;
    row.dataset.verb = entry.verb;
    const counters = entry.point?.counters;
    const point = counters
      ? `${entry.point.node} step ${counters.step} · total ${counters.total_step} · epoch ${counters.epoch}`
      : "";
    const change = entry.diff.length ? entry.diff.join("\n") : `${entry.verb} ${entry.text}`.trim();
    row.append(cell(entry.id), cell(entry.verb), cell(entry.origin), cell(point), cell(change, true));
    const action = document.createElement("td");
    if (last && entry.id === last.id && entry.version === version) {
      const button = document.createElement("button");
      button.textContent = "UNDO";
      button.className = "undo";
      button.title = `take patch ${entry.id} back (only while the program is at version ${entry.version})`;
      button.addEventListener("click", async () => {
        button.disabled = true;
        const reply = await request(`UNDO@${entry.version}`);
        document.dispatchEvent(new CustomEvent("reply", { detail: reply }));
      });
      action.appendChild(button);
    }
    row.appendChild(action);
    return row;
  });
  body.replaceChildren(...rows);
}
