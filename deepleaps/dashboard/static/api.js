// The one way the page changes anything: a request to the controller, as `deepleaps send` makes it.
export async function request(verb, payload = "") {
  const response = await fetch("api/request", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ verb, payload }),
  });
  return response.json();
}

// A reply as `deepleaps send` prints it: the diff, the message, where it was applied.
export function replyText(reply) {
  return (reply.lines || []).map(([line]) => line).join("\n");
}
