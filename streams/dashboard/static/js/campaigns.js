// Campaign flow: a Sankey from campaigns through the stages to won or lost, and the attribution
// table under the credit model chosen.

import { link, settle } from "./app.js";
import { days, h, int, money, pct, s, table, tip, widthOf, words } from "./dom.js";
import { sankey } from "./sankey.js";

const LAYERS = ["campaign", "opened", "furthest", "outcome"];
const LAYER_TITLES = {
  campaign: "campaign", opened: "opened in", furthest: "got as far as", outcome: "outcome",
};
const OUTCOMES = ["Won", "Lost", "Open"];
const PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
  "#7f7f7f"];
const OUTCOME_COLOURS = { Won: "#2e7d32", Lost: "#c62828", Open: "#9e9e9e" };

function flowChart(body, width) {
  const height = Math.max(260, Math.min(520, 40 * body.rows.length + 120));
  const top = 22;
  const stageOrder = body.stage_order;
  const orderIn = (layer, names) => {
    if (layer === "outcome") return [...names].sort((a, b) => OUTCOMES.indexOf(a) - OUTCOMES.indexOf(b));
    if (layer === "campaign") return [...names].sort();
    const rank = (name) => (stageOrder.includes(name) ? stageOrder.indexOf(name) : 99);
    return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  };
  const labelRoom = width < 600 ? 72 : 104;
  const layout = sankey(body.flow, { width: width - 2 * labelRoom, height: height - top - 8,
    layers: LAYERS, orderIn });
  const campaigns = orderIn("campaign", layout.nodes.filter((n) => n.layer === "campaign")
    .map((n) => n.name));
  const colour = (n) => (n.layer === "campaign"
    ? PALETTE[campaigns.indexOf(n.name) % PALETTE.length]
    : n.layer === "outcome" ? OUTCOME_COLOURS[n.name] || "#777" : "var(--accent)");
  const svg = s("svg", { class: "chart sankey", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": "Campaign flow: campaigns to stages to outcome" });
  const shift = s("g", { transform: `translate(${labelRoom},${top})` });
  const byId = new Map(layout.nodes.map((n) => [n.id, n]));
  for (const band of layout.bands) {
    const from = byId.get(`${band.link.source.layer}:${band.link.source.name}`);
    const hue = from.layer === "campaign" ? colour(from)
      : OUTCOME_COLOURS[band.link.target.name] || "var(--muted)";
    shift.append(s("path", { d: band.path, fill: hue, "fill-opacity": 0.35, class: "band",
      dataset: { source: from.id, target: `${band.link.target.layer}:${band.link.target.name}`,
        deals: band.link.deals } },
    tip(`${band.link.source.name} → ${band.link.target.name}: ${int(band.link.deals)} deals, ` +
      `${money(band.link.value)}`)));
  }
  for (const n of layout.nodes) {
    const right = n.layer === "outcome";
    shift.append(s("rect", { x: n.x, y: n.y, width: layout.nodeWidth, height: Math.max(n.height, 1),
      fill: colour(n), class: "node", dataset: { node: n.id, deals: n.deals } },
    tip(`${LAYER_TITLES[n.layer]} ${n.name}: ${int(n.deals)} deals`)));
    shift.append(s("text", { x: right ? n.x + layout.nodeWidth + 4 : n.x - 4,
      y: n.y + n.height / 2 + 4, "text-anchor": right ? "start" : "end",
      text: `${n.name} (${int(n.deals)})` }));
  }
  LAYERS.forEach((layer) => {
    const members = layout.nodes.filter((n) => n.layer === layer);
    if (!members.length) return;
    svg.append(s("text", { x: labelRoom + members[0].x, y: 14,
      "text-anchor": layer === "campaign" ? "end" : "middle", class: "muted",
      text: LAYER_TITLES[layer] }));
  });
  svg.append(shift);
  return svg;
}

function attribution(body) {
  return table([
    { label: "campaign", value: (r) => r.campaign_id },
    { label: "responses", num: true, value: (r) => int(r.responses) },
    { label: "accounts", num: true, value: (r) => int(r.accounts_reached) },
    { label: "deals", num: true, value: (r) => int(r.deals_influenced), figure: "deals_influenced",
      raw: (r) => r.deals_influenced },
    { label: "won", num: true, value: (r) => int(r.deals_won), figure: "deals_won",
      raw: (r) => r.deals_won },
    { label: "stalled", num: true, value: (r) => int(r.deals_stalled) },
    { label: "pipeline", num: true, value: (r) => money(r.pipeline) },
    { label: `revenue (${words(body.model)})`, num: true, value: (r) => money(r.revenue),
      figure: "revenue", raw: (r) => r.revenue },
    { label: "ROI", num: true, value: (r) => pct(r.roi) },
    { label: "days to win", num: true, value: (r) => (r.median_days_to_win === null ? "–"
      : days(r.median_days_to_win)) },
    { label: "PCE", num: true, value: (r) => pct(r.pce) },
    { label: "waste", num: true, value: (r) => pct(r.waste_share) },
  ], body.rows, { class: "attribution",
    rowAttrs: (r) => ({ dataset: { campaign: r.campaign_id } }) });
}

export async function render(main, route, context) {
  const model = route.params.get("model") || "linear";
  const body = await settle("/api/campaigns", { model }, main, context.isCurrent);
  if (!body) return null;
  const choose = h("select", { class: "model", name: "model", "aria-label": "Credit model" },
    body.models.map((name) => h("option", { value: name, text: words(name) })));
  choose.value = body.model;
  choose.addEventListener("change", () => {
    location.hash = link("campaigns", [], new URLSearchParams({ model: choose.value }));
  });
  const width = widthOf(main) - 32;
  main.replaceChildren(
    h("h2", { text: "Campaign flow" }),
    h("p", { class: "muted", text: `${int(body.deals)} deals, ${int(body.responses)} campaign ` +
      `responses; a deal influenced by several campaigns flows once for each. Policy ` +
      `${body.policy_version}` + (body.status === "stale" ? " (the archive has moved on since; " +
      "recomputing)" : "") }),
    h("div", { class: "panel scroll" }, flowChart(body, Math.max(width, 640))),
    h("h2", {}, ["Attribution under ", choose]),
    attribution(body),
    h("p", { class: "note", text: `Won revenue with no campaign on its journey: ` +
      `${money(body.unattributed_revenue)}. The same table as \`gemba campaigns --model ` +
      `${body.model}\`; ROI needs costs (\`gemba campaigns --costs\`).` }),
    ...(body.not_opened.length ? [h("p", { class: "note", text: `${int(body.not_opened.length)} ` +
      `deal(s) with events but no deal_opened yet, so on no journey: ` +
      body.not_opened.map((deal) => `${deal.deal_id} (${int(deal.events)} events)`).join(", ") })]
      : []),
  );
  return null;
}
