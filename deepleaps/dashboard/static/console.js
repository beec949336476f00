// The patch console: a fragment (ADD) or the whole program (APPLY), previewed with DIFF first.
import { request, replyText } from "./api.js";
import { mark, marksOf } from "./graph.js";

const text = document.getElementById("patch");
const output = document.getElementById("output");
let program = "";

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

export function show(reply) {
  output.textContent = replyText(reply);
  output.classList.toggle("error", !reply.ok);
}

export function setProgram(source) {
  program = source || "";
}

document.getElementById("diff").addEventListener("click", async () => {
  // DIFF previews a whole program; `DIFF ADD <fragment>` what ADD would do.
  const payload = mode() === "fragment" ? `ADD ${text.value}` : text.value;
  const reply = await request("DIFF", payload);
  show(reply);
  mark(reply.ok ? marksOf(reply.script) : []);
});

document.getElementById("apply").addEventListener("click", async () => {
  const reply = await request(mode() === "fragment" ? "ADD" : "APPLY", text.value);
  show(reply);
  mark([]);
});

document.getElementById("load-program").addEventListener("click", () => {
  text.value = program;
  document.querySelector('input[name="mode"][value="program"]').checked = true;
});

document.addEventListener("reply", (event) => show(event.detail));
