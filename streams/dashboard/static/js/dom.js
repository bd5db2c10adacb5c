// Small helpers: build HTML and SVG elements (text always as text, never as markup), format figures.

const SVG = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of [].concat(children || [])) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: h("td", {class: "num", text: "12"}). */
export function h(tag, attrs, children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element; give it a tooltip with tip(text). */
export function s(tag, attrs, children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

/** A hover tooltip for an SVG shape. */
export function tip(text) {
  return s("title", { text });
}

/** A table with a header row and rows of cells (strings, numbers or nodes). */
export function table(columns, rows, options = {}) {
  const head = h("tr", {}, columns.map((column) => h("th", {
    class: column.num ? "num" : null, text: column.label,
  })));
  const body = rows.map((row, index) => {
    const cells = columns.map((column) => {
      const value = column.value(row);
      const cell = h("td", { class: column.num ? "num" : null });
      if (value instanceof Node) cell.append(value);
      else cell.textContent = value === null || value === undefined ? "–" : String(value);
      if (column.figure) {
        cell.dataset.figure = column.figure;
        const raw = column.raw ? column.raw(row) : null;
        if (raw !== null && raw !== undefined) cell.dataset.value = String(raw);
      }
      return cell;
    });
    const attrs = options.rowAttrs ? options.rowAttrs(row, index) : {};
    return h("tr", attrs, cells);
  });
  return h("div", { class: "scroll" }, h("table", { class: "data " + (options.class || "") }, [
    h("thead", {}, head), h("tbody", {}, body),
  ]));
}

// --- formatting --------------------------------------------------------------------------------

/** Minutes as minutes, hours or days, to read. */
export function duration(minutes) {
  if (minutes === null || minutes === undefined || Number.isNaN(minutes)) return "–";
  const size = Math.abs(minutes);
  if (size < 10) return `${minutes.toFixed(1)} min`;
  if (size < 60) return `${minutes.toFixed(0)} min`;
  if (size < 1440) return `${(minutes / 60).toFixed(1)} h`;
  return `${(minutes / 1440).toFixed(1)} d`;
}

/** A share (0..1) as a percentage with two decimals, as `gemba report` prints PCE. */
export function pct(share, digits = 2) {
  if (share === null || share === undefined) return "–";
  return `${(share * 100).toFixed(digits)}%`;
}

/** A whole number with thousands separators. */
export function int(value) {
  if (value === null || value === undefined) return "–";
  return Math.round(value).toLocaleString("en-US");
}

/** A number with thousands separators and `digits` decimals. */
export function num(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
}

/** Money (an exact decimal string) with thousands separators. */
export function money(text) {
  if (text === null || text === undefined) return "–";
  return num(Number(text), 2);
}

/** An ISO time as "YYYY-MM-DD HH:MM" (UTC, as the archive keeps it). */
export function when(iso) {
  if (!iso) return "–";
  return iso.slice(0, 16).replace("T", " ");
}

/** Days with one decimal. */
export function days(value) {
  if (value === null || value === undefined) return "–";
  return `${value.toFixed(1)} d`;
}

/** A waste or class name as words: "waiting_on_us" -> "waiting on us". */
export function words(name) {
  return name ? String(name).replaceAll("_", " ") : "–";
}

/** Round numbers for an axis from 0 to `top`. */
export function ticks(top, count = 5) {
  if (!(top > 0)) return [0];
  const raw = top / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((m) => m >= raw) || raw;
  const out = [];
  for (let value = 0; value <= top + step * 1e-9; value += step) out.push(value);
  return out;
}

/** Round minutes for a duration axis from 0 to `top`: whole minutes, hours or days. */
export function durationTicks(top, count = 4) {
  const unit = top >= 2880 ? 1440 : top >= 120 ? 60 : 1;
  return ticks(top / unit, count).map((value) => value * unit);
}

/** The width available to a chart inside `container` (its content box), in CSS pixels. */
export function widthOf(container, least = 300) {
  const style = getComputedStyle(container);
  const inner = container.clientWidth - parseFloat(style.paddingLeft || "0") -
    parseFloat(style.paddingRight || "0");
  return Math.max(least, Math.floor(inner) || least);
}
