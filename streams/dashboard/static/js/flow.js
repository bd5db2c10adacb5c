// Flow over time: the cumulative flow diagram, and throughput, WIP and lead time by month.

import { api } from "./app.js";
import { days, h, int, num, s, table, ticks, tip, widthOf } from "./dom.js";

const OPEN_COLOURS = ["#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"];
const CLOSED_COLOURS = { Won: "#2e7d32", Lost: "#9e9e9e" };

/** Stages bottom to top: closed states first (done work sits at the bottom), then open stages
 * from the last to the first. */
function stacking(stages) {
  const closed = stages.filter((stage) => CLOSED_COLOURS[stage]);
  const open = stages.filter((stage) => !CLOSED_COLOURS[stage]);
  return [...closed, ...open.reverse()];
}

function colourOf(stages) {
  const open = stages.filter((stage) => !CLOSED_COLOURS[stage]);
  return (stage) => CLOSED_COLOURS[stage] ||
    OPEN_COLOURS[Math.min(open.indexOf(stage), OPEN_COLOURS.length - 1)] || "#999";
}

function cfd(chart, width) {
  const height = 320;
  const margin = { left: 48, right: 12, top: 10, bottom: 28 };
  const inner = { w: width - margin.left - margin.right, h: height - margin.top - margin.bottom };
  const order = stacking(chart.stages);
  const colour = colourOf(chart.stages);
  const n = chart.days.length;
  const totals = chart.days.map((_, i) => order.reduce((sum, st) => sum + chart.deals[st][i], 0));
  const top = Math.max(...totals, 1);
  const x = (i) => margin.left + (n > 1 ? (i / (n - 1)) * inner.w : 0);
  const y = (v) => margin.top + inner.h - (v / top) * inner.h;
  const svg = s("svg", { class: "chart cfd", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": "Cumulative flow diagram: deals per stage per day" });
  const axis = s("g", { class: "axis" });
  for (const value of ticks(top, 5)) {
    axis.append(s("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
      s("text", { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end", text: int(value) }));
  }
  chart.days.forEach((day, i) => {
    if (day.endsWith("-01")) {
      axis.append(s("text", { x: x(i), y: height - 8, "text-anchor": "middle",
        text: day.slice(0, 7) }));
    }
  });
  svg.append(axis);
  const below = new Array(n).fill(0);
  for (const stage of order) {
    const series = chart.deals[stage];
    const upper = series.map((v, i) => below[i] + v);
    const forward = upper.map((v, i) => `${x(i)},${y(v)}`);
    const back = below.map((v, i) => `${x(i)},${y(v)}`).reverse();
    const last = series[n - 1];
    svg.append(s("polygon", { points: [...forward, ...back].join(" "), fill: colour(stage),
      dataset: { stage } }, tip(`${stage}: ${int(last)} deals on ${chart.days[n - 1]}`)));
    upper.forEach((v, i) => { below[i] = v; });
  }
  const legend = h("ul", { class: "legend" }, [...order].reverse().map((stage) => {
    const swatch = h("i");
    swatch.style.background = colour(stage);
    return h("li", {}, [swatch, stage]);
  }));
  return [svg, legend];
}

function bars(months, key, label, format, width) {
  const height = 150;
  const margin = { left: 44, right: 8, top: 18, bottom: 22 };
  const inner = { w: width - margin.left - margin.right, h: height - margin.top - margin.bottom };
  const values = months.map((m) => m[key] ?? 0);
  const top = Math.max(...values, 1e-9);
  const band = inner.w / Math.max(months.length, 1);
  const svg = s("svg", { class: "chart small", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": label });
  svg.append(s("text", { x: margin.left, y: 12, text: label }));
  months.forEach((month, i) => {
    const value = month[key];
    const barHeight = value ? (value / top) * inner.h : 0;
    const x = margin.left + i * band;
    svg.append(s("rect", { x: x + band * 0.15, y: margin.top + inner.h - barHeight,
      width: band * 0.7, height: barHeight, fill: "var(--accent)",
      dataset: { month: month.month, metric: key, value: value ?? "" } },
    tip(`${month.month}: ${format(value)}`)));
    svg.append(s("text", { x: x + band / 2, y: height - 6, "text-anchor": "middle",
      text: month.month.slice(2) }));
  });
  return svg;
}

export async function render(main) {
  const chart = await api("/api/flow");
  if (!chart.days.length) {
    main.replaceChildren(h("p", { class: "notice", text: "No deals in the archive yet." }));
    return null;
  }
  const width = widthOf(main) - 32;
  const small = width >= 700 ? Math.floor((width - 24) / 3) : width;
  main.replaceChildren(
    h("h2", { text: "Cumulative flow" }),
    h("p", { class: "muted", text: "Deals in each stage at the end of each day; closed deals " +
      "pile up at the bottom. A band that widens is work piling up in that stage." }),
    h("div", { class: "panel" }, cfd(chart, width)),
    h("h2", { text: "Throughput, WIP and lead time by month" }),
    h("div", { class: "panel smalls" }, [
      bars(chart.months, "throughput_per_day", "throughput (closed per day)", (v) => num(v, 2),
        small),
      bars(chart.months, "avg_wip", "average WIP (open deals)", (v) => num(v, 1), small),
      bars(chart.months, "avg_lead_time_days", "average lead time of closed deals (days)", days,
        small),
    ]),
    table([
      { label: "month", value: (m) => m.month },
      { label: "closed", num: true, value: (m) => int(m.closed), figure: "closed",
        raw: (m) => m.closed },
      { label: "won", num: true, value: (m) => int(m.won) },
      { label: "lost", num: true, value: (m) => int(m.lost) },
      { label: "per day", num: true, value: (m) => num(m.throughput_per_day, 2),
        figure: "throughput_per_day", raw: (m) => m.throughput_per_day },
      { label: "avg WIP", num: true, value: (m) => num(m.avg_wip, 1), figure: "avg_wip",
        raw: (m) => m.avg_wip },
      { label: "avg lead time", num: true, value: (m) => days(m.avg_lead_time_days),
        figure: "avg_lead_time_days", raw: (m) => m.avg_lead_time_days },
      { label: "Little's law WIP", num: true, value: (m) => num(m.littles_law_wip, 1) },
      { label: "WIP / Little", num: true, value: (m) => num(m.littles_law_ratio, 2) },
    ], chart.months, { class: "flow-months",
      rowAttrs: (m) => ({ dataset: { month: m.month } }) }),
    h("p", { class: "note", text: "Little's law: average WIP = throughput × average lead time; " +
      "a ratio near 1 says the figures are consistent (months at the start of the history " +
      "are still filling up)." }),
  );
  return null;
}
