// Live curves of what the run logs: one chart per column of each metrics CSV, against total_step.
import uPlot from "./vendor/uplot/uPlot.esm.js";

const box = document.getElementById("curves");
const AXES = new Set(["step", "total_step", "epoch"]);
const files = new Map(); // file -> {columns, rows}
const charts = new Map(); // "file:column" -> {plot, wrapper}

export function update(metrics) {
  for (const [file, part] of Object.entries(metrics || {})) {
    const known = files.get(file);
    if (part.reset || !known) files.set(file, { columns: part.columns, rows: [...part.rows] });
    else known.rows.push(...part.rows);
    redraw(file);
  }
}

function redraw(file) {
  const { columns, rows } = files.get(file);
  const x = columns.indexOf("total_step");
  if (x < 0) return;
  const xs = rows.map((row) => row[x]);
  columns.forEach((column, index) => {
    if (AXES.has(column)) return;
    const ys = rows.map((row) => row[index] ?? null);
    if (!ys.some((y) => y !== null)) return;
    const key = `${file}:${column}`;
    let chart = charts.get(key);
    if (!chart) chart = charts.set(key, make(file, column)).get(key);
    chart.plot.setData([xs, ys], !chart.zoomed);
    chart.wrapper.dataset.points = xs.length;
  });
}

function make(file, column) {
  const wrapper = document.createElement("div");
  wrapper.className = "curve";
  wrapper.dataset.file = file;
  wrapper.dataset.column = column;
  const title = document.createElement("h3");
  title.textContent = `${column} (${file})`;
  wrapper.appendChild(title);
  box.appendChild(wrapper);
  const chart = { wrapper, zoomed: false };
  const options = {
    width: Math.max(280, wrapper.clientWidth),
    height: 150,
    legend: { show: true },
    scales: { x: { time: false } },
    series: [{ label: "total_step" }, { label: column, stroke: column.includes("loss") ? "#cf222e" : "#0969da", width: 1.5 }],
    hooks: {
      // A zoomed chart keeps its range as points arrive; a double-click resets it.
      setSelect: [() => { chart.zoomed = true; }],
    },
  };
  chart.plot = new uPlot(options, [[], []], wrapper);
  wrapper.addEventListener("dblclick", () => { chart.zoomed = false; });
  return chart;
}
