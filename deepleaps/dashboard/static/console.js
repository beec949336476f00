// The patch console: a fragment (ADD) or the whole program (APPLY), previewed with DIFF first.
import { request, replyText } from "./api.js";
import { mark, marksOf } from "./graph.js";

const text = document.getElementById("patch");
const output = document.getElementById("output");
// The first line of a program PROGRAM wrote: the version it was at (see deepleaps/control/program_text.py).
const HEADER = /^# version (\d+) of the running program/;

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

export function show(reply) {
  output.textContent = replyText(reply);
  output.classList.toggle("error", !reply.ok);
}

document.getElementById("diff").addEventListener("click", async () => {
  // DIFF previews a whole program; `DIFF ADD <fragment>` what ADD would do.
  const payload = mode() === "fragment" ? `ADD ${text.value}` : text.value;
  const reply = await request("DIFF", payload);
  show(reply);
  mark(reply.ok ? marksOf(reply.script) : []);
});

document.getElementById("apply").addEventListener("click", async () => {
  // A program PROGRAM wrote is applied only if the training is still at its version (APPLY@N).
  const exported = mode() === "program" ? HEADER.exec(text.value) : null;
  const verb = mode() === "fragment" ? "ADD" : exported ? `APPLY@${exported[1]}` : "APPLY";
  const reply = await request(verb, text.value);
  show(reply);
  mark([]);
});

document.getElementById("load-program").addEventListener("click", async () => {
  // The program as it runs now, live changes included, headed by its version.
  const reply = await request("PROGRAM", "");
  if (!reply.ok) {
    show(reply);
    return;
  }
  text.value = reply.data;
  document.querySelector('input[name="mode"][value="program"]').checked = true;
});

document.addEventListener("reply", (event) => show(event.detail));
