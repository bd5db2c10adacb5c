// The waste Pareto: categories ranked by minutes lost, drilling down to deals, then to touches.

import { api, filterParams, link, settle } from "./app.js";
import {
  duration, durationTicks, h, int, pct, s, table, tip, when, widthOf, words,
} from "./dom.js";

const PROCESS = "process time";

function paretoChart(lines, width, onPick) {
  const height = 260;
  const margin = { left: 64, right: 44, top: 12, bottom: 54 };
  const inner = { w: width - margin.left - margin.right, h: height - margin.top - margin.bottom };
  const top = Math.max(...lines.map((l) => l.minutes), 1);
  const total = lines.reduce((sum, l) => sum + l.minutes, 0) || 1;
  const band = inner.w / Math.max(lines.length, 1);
  const y = (minutes) => margin.top + inner.h - (minutes / top) * inner.h;
  const yShare = (share) => margin.top + inner.h - share * inner.h;
  const svg = s("svg", { class: "chart pareto", viewBox: `0 0 ${width} ${height}`,
    width, height, role: "img", "aria-label": "Waste Pareto chart" });
  const axis = s("g", { class: "axis" });
  for (const value of durationTicks(top, 4)) {
    axis.append(s("line", { x1: margin.left, x2: width - margin.right, y1: y(value), y2: y(value) }),
      s("text", { x: margin.left - 6, y: y(value) + 4, "text-anchor": "end",
        text: duration(value) }));
  }
  for (const share of [0, 0.5, 1]) {
    axis.append(s("text", { x: width - margin.right + 6, y: yShare(share) + 4,
      text: pct(share, 0) }));
  }
  svg.append(axis);
  let running = 0;
  const points = [];
  lines.forEach((line, index) => {
    const x = margin.left + index * band;
    const fill = line.measured_as === PROCESS ? "var(--waste)" : "var(--nnva)";
    const rect = s("rect", { x: x + band * 0.15, y: y(line.minutes), width: band * 0.7,
      height: Math.max(margin.top + inner.h - y(line.minutes), 0.5), fill, class: "bar",
      dataset: { category: line.category } },
    tip(`${words(line.category)} (${line.measured_as}): ${duration(line.minutes)}, ` +
      `${int(line.deals)} deals, ${int(line.touches)} touches`));
    rect.style.cursor = "pointer";
    rect.addEventListener("click", () => onPick(line.category));
    svg.append(rect);
    svg.append(s("text", { x: x + band / 2, y: height - margin.bottom + 16,
      "text-anchor": "middle", text: words(line.category) }));
    running += line.minutes;
    points.push([x + band / 2, yShare(running / total)]);
  });
  svg.append(s("polyline", { points: points.map((p) => p.join(",")).join(" "), fill: "none",
    stroke: "var(--accent)", "stroke-width": 2 }));
  for (const [x, yy] of points) svg.append(s("circle", { cx: x, cy: yy, r: 3, fill: "var(--accent)" }));
  return svg;
}

async function pareto(main, params, isCurrent) {
  const body = await settle("/api/waste", params, main, isCurrent);
  if (!body) return;
  const pick = (category) => {
    location.hash = link("waste", [category], new URLSearchParams(params));
  };
  const holder = h("div", { class: "panel" });
  const width = widthOf(main) - 32;
  const draw = (mode) => {
    const shown = mode === "process" ? body.lines.filter((l) => l.measured_as === PROCESS)
      : body.lines;
    holder.replaceChildren(paretoChart(shown, width, pick),
      h("ul", { class: "legend" }, [
        h("li", {}, [h("i", { class: "c-waste" }), "process time lost (touches)"]),
        h("li", {}, [h("i", { class: "c-nnva" }), "lost as wait (on us, stalled)"]),
        h("li", {}, "line: cumulative share of what is shown"),
      ]));
  };
  const mode = h("select", { class: "model", "aria-label": "Wastes shown" }, [
    h("option", { value: "all", text: "all wastes" }),
    h("option", { value: "process", text: "process-time wastes only" }),
  ]);
  mode.addEventListener("change", () => draw(mode.value));
  draw("all");
  const rows = table([
    { label: "#", num: true, value: (l) => l.rank },
    { label: "waste", value: (l) => h("a", { href: link("waste", [l.category],
      new URLSearchParams(params)), text: words(l.category) }) },
    { label: "measured as", value: (l) => l.measured_as },
    { label: "lost", num: true, value: (l) => duration(l.minutes), figure: "minutes",
      raw: (l) => l.minutes },
    { label: "share", num: true, value: (l) => pct(l.share), figure: "share", raw: (l) => l.share },
    { label: "cumulative", num: true, value: (l) => pct(l.cumulative_share) },
    { label: "deals", num: true, value: (l) => int(l.deals), figure: "deals", raw: (l) => l.deals },
    { label: "touches", num: true, value: (l) => int(l.touches), figure: "touches",
      raw: (l) => l.touches },
  ], body.lines, {
    class: "pareto-table",
    rowAttrs: (l) => ({ class: "clickable", dataset: { category: l.category },
      onclick: () => pick(l.category) }),
  });
  main.replaceChildren(
    h("h2", { text: "Waste Pareto: where the minutes are lost" }),
    h("p", { class: "muted", text: "Categories ranked by minutes lost. Click one for its deals, " +
      "then a deal for the touches." }),
    h("label", { class: "note" }, ["Show ", mode]),
    holder, rows,
  );
}

async function deals(main, category, params, isCurrent) {
  const path = `/api/waste/${encodeURIComponent(category)}/deals`;
  const body = await settle(path, params, main, isCurrent);
  if (!body) return;
  const open = (deal) => {
    location.hash = link("waste", [category, deal.deal_id], new URLSearchParams(params));
  };
  main.replaceChildren(
    h("p", {}, h("a", { href: link("waste", [], new URLSearchParams(params)),
      text: "← all wastes" })),
    h("h2", { text: `${words(category)}: the deals that lost most` }),
    h("p", { class: "muted", dataset: { figure: "total", value: body.total } },
      `${int(body.total)} deals lost time to ${words(category)}; the ` +
      `${int(body.deals.length)} that lost most:`),
    table([
      { label: "deal", value: (d) => d.deal_id },
      { label: "rep", value: (d) => d.owner_id },
      { label: "segment", value: (d) => d.segment },
      { label: "stage", value: (d) => d.stage },
      { label: "status", value: (d) => d.status },
      { label: "lost", num: true, value: (d) => duration(d.minutes), figure: "minutes",
        raw: (d) => d.minutes },
      { label: "touches", num: true, value: (d) => int(d.touches) },
    ], body.deals, {
      class: "waste-deals",
      rowAttrs: (d) => ({ class: "clickable", dataset: { deal: d.deal_id },
        onclick: () => open(d) }),
    }),
  );
}

async function details(main, category, dealId, params) {
  const path = `/api/waste/${encodeURIComponent(category)}/deals/${encodeURIComponent(dealId)}`;
  const body = await api(path);
  const stalls = category === "inventory";
  const columns = stalls ? [
    { label: "stage", value: (r) => r.stage },
    { label: "stalled from", value: (r) => when(r.started_at) },
    { label: "until", value: (r) => (r.ended_at ? when(r.ended_at) : "still stalled") },
    { label: "threshold", num: true, value: (r) => duration(r.threshold_min) },
  ] : [
    { label: "when", value: (r) => when(r.started_at) },
    { label: "stage", value: (r) => r.stage },
    { label: "what", value: (r) => [r.direction, r.kind, words(r.meeting_kind || r.outcome)]
      .filter((p) => p && p !== "–").join(" ") },
    { label: "minutes", num: true, value: (r) => duration(r.minutes) },
    { label: "rule", num: true, value: (r) => r.rule },
    { label: "event", value: (r) => r.event_id },
  ];
  const says = {
    inventory: "Its stall episodes (time sitting past the stage's threshold):",
    waiting_on_us: "The customer's messages that put the ball in our court:",
  };
  main.replaceChildren(
    h("p", {}, [h("a", { href: link("waste", [category], new URLSearchParams(params)),
      text: `← ${words(category)}` }), " · ",
    h("a", { href: link("deal", [dealId]), text: "deal timeline →" })]),
    h("h2", { text: `${dealId}: ${words(category)}` }),
    h("p", { class: "muted", text: says[category] || "Its touches of this waste:" }),
    table(columns, body.rows, { class: "waste-touches",
      rowAttrs: (r) => ({ dataset: { event: r.event_id || "" } }) }),
  );
}

export async function render(main, route, context) {
  const params = filterParams(route);
  const [category, dealId] = route.args;
  if (category && dealId) await details(main, category, dealId, params);
  else if (category) await deals(main, category, params, context.isCurrent);
  else await pareto(main, params, context.isCurrent);
  return null;
}
