// The running program as Graphviz draws it (the same picture as `deepleaps compile --svg`),
// each node marked with its counters and state.
const SVG = "http://www.w3.org/2000/svg";
const box = document.getElementById("graph");
const removedList = document.getElementById("removed");
let nodes = new Map(); // name -> the <g> of its box (a leaf) or its cluster (a graph)
let highlight = [];

export function draw(svg, error) {
  if (!svg) {
    box.textContent = error || "";
    nodes = new Map();
    return;
  }
  box.innerHTML = svg.slice(svg.indexOf("<svg"));
  nodes = new Map();
  for (const g of box.querySelectorAll("g.node, g.cluster")) {
    const title = g.querySelector(":scope > title")?.textContent ?? "";
    const cluster = g.classList.contains("cluster");
    if (!cluster && g.querySelector(":scope > ellipse, :scope > polygon, :scope > path") === null) continue;
    if (!cluster && !g.querySelector(":scope > text")) continue; // a graph's invisible anchor
    const name = cluster ? title.replace(/^cluster_/, "") : title;
    g.dataset.node = name;
    nodes.set(name, g);
    const frame = g.getBBox();
    const text = document.createElementNS(SVG, "text");
    text.classList.add("counters");
    if (cluster) {
      text.setAttribute("x", frame.x + frame.width - 4);
      text.setAttribute("y", frame.y + 11);
      text.setAttribute("text-anchor", "end");
    } else {
      text.setAttribute("x", frame.x + frame.width / 2);
      text.setAttribute("y", frame.y + frame.height + 9);
      text.setAttribute("text-anchor", "middle");
    }
    g.appendChild(text);
  }
  mark(highlight);
}

export function update(status) {
  const running = new Set(status.position || []);
  const added = status.added_by || {};
  const failed = new Set(status.failed || []);
  for (const [name, g] of nodes) {
    const counters = (status.nodes || {})[name];
    const text = g.querySelector(":scope > text.counters");
    if (counters && text) {
      text.textContent = `step ${counters.step} · total ${counters.total_step} · epoch ${counters.epoch}`;
      g.dataset.total = counters.total_step;
    }
    g.classList.toggle("running", running.has(name));
    g.classList.toggle("added", name in added);
    g.classList.toggle("failed", failed.has(name));
    const why = [running.has(name) && "running", name in added && `added by patch ${added[name]}`,
                 failed.has(name) && "failed; removed at the next safe point"].filter(Boolean);
    g.querySelector(":scope > title").textContent = [name, ...why].join(" — ");
  }
  removedList.replaceChildren(...(status.removed || []).map((event) => {
    const item = document.createElement("li");
    const by = event.added_by != null ? ` (added by patch ${event.added_by})` : "";
    item.textContent = `removed by the runtime: ${event.node}${by}: ${event.error} (patch ${event.patch_id})`;
    return item;
  }));
}

// Mark what an edit script would change: [["diff-removed", name], …]; [] clears.
export function mark(marks) {
  highlight = marks;
  for (const g of nodes.values()) g.classList.remove("diff-parent", "diff-changed", "diff-removed");
  for (const [kind, name] of marks) nodes.get(name)?.classList.add(kind);
}

// What each operation of an edit script (deepleaps.edit/1) touches on the running picture.
export function marksOf(script) {
  const kinds = {
    add_node: (op) => ["diff-parent", op.parent],
    remove_node: (op) => ["diff-removed", op.name],
    add_edge: (op) => ["diff-changed", op.graph],
    remove_edge: (op) => ["diff-changed", op.graph],
    reorder_children: (op) => ["diff-changed", op.graph],
    set_argument: (op) => ["diff-changed", op.node],
    unset_argument: (op) => ["diff-changed", op.node],
    rebind_class: (op) => ["diff-changed", op.node],
  };
  return (script?.operations || []).map((op) => kinds[op.op]?.(op)).filter(Boolean);
}
