// The page's glue: tables sorted by a click on a column's name and filtered by the box under it;
// charts drawn from their figure JSON (Plotly builds them in Python), the curves of the metric
// picked in the select. Plotly's own menus would need every metric's traces in one figure: for
// hundreds of runs that is tens of thousands of traces, which no browser draws in seconds.
"use strict";

function cellNumber(text) {
  // "92.00%", "0.8126", "1e-05", "+0.45 pp" (a difference in percentage points): numbers; "—" (no
  // value) and labels: not.
  const number = Number(text.replace(/\s*(%|pp)$/, ""));
  return text.trim() === "" || Number.isNaN(number) ? null : number;
}

const MISSING = "—";  // a value the run did not record: last, whichever way the column is sorted

function compareCells(a, b) {
  const x = cellNumber(a), y = cellNumber(b);
  if (x !== null && y !== null) return x - y;
  if (x !== null || y !== null) return x === null ? 1 : -1;  // numbers before text
  return a.localeCompare(b, undefined, {numeric: true});
}

function sortTable(table, column, button) {
  const ascending = button.dataset.order !== "ascending";
  table.querySelectorAll("th button").forEach(other => { delete other.dataset.order; });
  button.dataset.order = ascending ? "ascending" : "descending";
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((first, second) => {
    const a = first.cells[column].textContent.trim(), b = second.cells[column].textContent.trim();
    if ((a === MISSING) !== (b === MISSING)) return a === MISSING ? 1 : -1;
    const order = compareCells(a, b);
    return ascending ? order : -order;
  });
  rows.forEach(row => body.appendChild(row));
}

function matches(text, filter) {
  // ">0.9", "<=2", "=3": compared as numbers; anything else: the cell contains it (any case).
  const comparison = filter.match(/^(<=|>=|<|>|=)\s*(-?[\d.]+(?:e-?\d+)?)(%?)$/i);
  const number = cellNumber(text);
  if (comparison && number !== null) {
    const bound = Number(comparison[2]), value = number;
    return {"<": value < bound, ">": value > bound, "<=": value <= bound, ">=": value >= bound,
            "=": value === bound}[comparison[1]];
  }
  return text.toLowerCase().includes(filter.toLowerCase());
}

function filterTable(table) {
  const filters = Array.from(table.querySelectorAll("th input")).map(input => input.value.trim());
  let shown = 0;
  Array.from(table.tBodies[0].rows).forEach(row => {
    const keep = filters.every((filter, column) => !filter || matches(row.cells[column].textContent, filter));
    row.hidden = !keep;
    shown += keep ? 1 : 0;
  });
  const count = document.getElementById(table.id + "-count");
  if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " shown";
}

function drawFigure(element, source) {
  const figure = JSON.parse(document.getElementById(source).textContent);
  Plotly.react(element, figure.data, figure.layout, {displaylogo: false, responsive: true});
}

// While --watch runs, the page reloads itself: what the reader picked (metric, filters, sort) is kept
// for the tab in sessionStorage and put back after each reload.
const STATE_KEY = "mlplab-report:" + location.pathname;

function savedState() {
  try { return JSON.parse(sessionStorage.getItem(STATE_KEY)) || {}; } catch (error) { return {}; }
}

function saveState(change) {
  try { sessionStorage.setItem(STATE_KEY, JSON.stringify(Object.assign(savedState(), change))); } catch (error) {}
}

const state = savedState();
document.querySelectorAll("table.sortable").forEach(table => {
  const inputs = Array.from(table.querySelectorAll("th input"));
  table.querySelectorAll("th").forEach((header, column) => {
    const button = header.querySelector("button");
    button.addEventListener("click", () => {
      sortTable(table, column, button);
      saveState({["sort-" + table.id]: [column, button.dataset.order]});
    });
    header.querySelector("input").addEventListener("input", () => {
      filterTable(table);
      saveState({["filter-" + table.id]: inputs.map(input => input.value)});
    });
  });
  (state["filter-" + table.id] || []).forEach((value, column) => { if (inputs[column]) inputs[column].value = value; });
  filterTable(table);
  const [column, order] = state["sort-" + table.id] || [];
  const button = column === undefined ? null : table.tHead.rows[0].cells[column]?.querySelector("button");
  if (button) {
    button.dataset.order = order === "ascending" ? "descending" : "ascending";  // sortTable flips it back
    sortTable(table, column, button);
  }
});
document.querySelectorAll("div.chart[data-figure]").forEach(chart => drawFigure(chart, chart.dataset.figure));
const curvePicker = document.getElementById("curve-metric");
if (curvePicker) {
  if (Array.from(curvePicker.options).some(option => option.value === state.metric)) curvePicker.value = state.metric;
  const drawCurves = () => drawFigure(document.getElementById("curves"), curvePicker.selectedOptions[0].dataset.figure);
  curvePicker.addEventListener("change", () => { saveState({metric: curvePicker.value}); drawCurves(); });
  drawCurves();
}
