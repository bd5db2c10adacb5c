// One deal's timeline: its touches and the gaps between them, coloured by class, details on hover.

import { api, link } from "./app.js";
import { duration, h, int, money, pct, s, table, tip, when, words } from "./dom.js";

const WIDTH = 1000;
const CLASS_COLOUR = {
  value_added: "var(--va)",
  necessary_non_value_added: "var(--nnva)",
  waste: "var(--waste)",
};
const CLASS_NAME = {
  value_added: "value-added",
  necessary_non_value_added: "overhead (NNVA)",
  waste: "waste",
};

function describe(touch) {
  const detail = touch.meeting_kind || touch.outcome || "";
  return [touch.direction, touch.kind, words(detail)].filter((part) => part && part !== "–")
    .join(" ");
}

function classOf(touch) {
  if (!touch.touch_class) return "ball in our court (inbound)";
  const name = CLASS_NAME[touch.touch_class] || words(touch.touch_class);
  return touch.waste ? `${name} (${words(touch.waste)})` : name;
}

function touchTip(touch) {
  return `${when(touch.started_at)} · ${touch.stage} · ${describe(touch)} · ${classOf(touch)} · ` +
    `${duration(touch.minutes)} · rule ${touch.rule} · ${touch.event_id}`;
}

function picker(current) {
  const input = h("input", { type: "search", name: "deal", list: "deal-options",
    placeholder: "deal id, e.g. deal-00292", value: current || "", "aria-label": "Deal id" });
  const options = h("datalist", { id: "deal-options" });
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const found = await api("/api/deals", { q: input.value });
      options.replaceChildren(...found.deals.map((d) => h("option", {
        value: d.deal_id, text: `${d.status}, ${d.stage}, ${d.owner_id}` })));
    }, 200);
  });
  const form = h("form", { class: "picker", role: "search" },
    [input, options, h("button", { type: "submit", text: "Show deal" })]);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) location.hash = link("deal", [input.value.trim()]);
  });
  return form;
}

function bar(timeline) {
  const { deal } = timeline;
  const start = Date.parse(deal.opened_at);
  const end = Math.max(Date.parse(deal.closed_at || deal.as_of), start + 1);
  const x = (iso) => ((Date.parse(iso) - start) / (end - start)) * WIDTH;
  const svg = s("svg", { class: "timeline-bar", viewBox: `0 0 ${WIDTH} 56`,
    preserveAspectRatio: "none", role: "img",
    "aria-label": `Deal ${deal.deal_id}: touches and gaps over its life` });
  for (const gap of timeline.gaps) {
    svg.append(s("rect", { x: x(gap.started_at), y: 10, width: Math.max(x(gap.ended_at) -
      x(gap.started_at), 0), height: 36, fill: "var(--wait)",
    dataset: { gap: "", minutes: gap.minutes } }, tip(`wait ${duration(gap.minutes)} in ` +
      `${gap.stage}: no one working on the deal (${when(gap.started_at)} – ${when(gap.ended_at)})`)));
  }
  for (const touch of timeline.touches) {
    const left = x(touch.started_at);
    const width = x(touch.ended_at) - left;
    const inbound = !touch.touch_class;
    const colour = inbound ? "var(--inbound)" : CLASS_COLOUR[touch.touch_class] || "var(--muted)";
    const [top, height] = inbound ? [0, 9] : [10, 36];
    const mark = width >= 1.5
      ? s("rect", { x: left, y: top, width, height, fill: colour })
      : s("line", { x1: left, x2: left, y1: top, y2: top + height, stroke: colour,
        "stroke-width": 2, "vector-effect": "non-scaling-stroke" });
    mark.dataset.touch = touch.event_id;
    mark.dataset.class = touch.touch_class || "inbound";
    mark.append(tip(touchTip(touch)));
    svg.append(mark);
  }
  for (const stall of timeline.stalls) {
    const left = x(stall.started_at);
    const right = stall.ended_at ? x(stall.ended_at) : WIDTH;
    svg.append(s("rect", { x: left, y: 48, width: Math.max(right - left, 1), height: 8,
      fill: "var(--bad)" }, tip(`stalled in ${stall.stage} from ${when(stall.started_at)}` +
      (stall.ended_at ? ` to ${when(stall.ended_at)}` : " (still stalled)") +
      `; threshold ${duration(stall.threshold_min)}`)));
  }
  const bands = h("div", { class: "bands", "aria-hidden": "true" });
  for (const visit of timeline.visits) {
    const left = x(visit.entered_at);
    const right = visit.left_at ? x(visit.left_at) : WIDTH;
    const band = h("span", { title: `${visit.stage}: ${when(visit.entered_at)} – ` +
      `${visit.left_at ? when(visit.left_at) : "now"}`, text: visit.stage });
    band.style.left = `${(left / WIDTH) * 100}%`;
    band.style.width = `${(Math.max(right - left, 0) / WIDTH) * 100}%`;
    bands.append(band);
  }
  return [bands, svg];
}

function mix(deal) {
  const parts = [
    ["c-va", deal.value_added_min, "value-added"],
    ["c-nnva", deal.necessary_non_value_added_min, "overhead (NNVA)"],
    ["c-waste", deal.waste_min, "waste"],
    ["c-wait", deal.wait_min, "wait"],
  ];
  const spans = parts.map(([kind, minutes, name]) => {
    const part = h("span", { class: kind, title: `${name}: ${duration(minutes)} ` +
      `(${pct(deal.lead_time_min ? minutes / deal.lead_time_min : null)})` });
    part.style.flex = `${deal.lead_time_min ? minutes / deal.lead_time_min : 0} 0 0`;
    return part;
  });
  return h("div", { class: "mix-bar", "aria-label": "Lead time by class" }, spans);
}

function rows(timeline) {
  const items = [
    ...timeline.touches.map((touch) => ({ at: touch.started_at, touch })),
    ...timeline.gaps.map((gap) => ({ at: gap.started_at, gap })),
  ].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.gap ? 1 : -1));
  return table([
    { label: "when", value: (r) => when(r.at) },
    { label: "stage", value: (r) => (r.touch ? r.touch.stage : r.gap.stage) },
    { label: "what", value: (r) => (r.touch ? describe(r.touch) : "no one working on it") },
    { label: "class", value: (r) => (r.touch ? classOf(r.touch) : "wait") },
    { label: "minutes", num: true,
      value: (r) => (r.touch ? duration(r.touch.minutes) : duration(r.gap.minutes)) },
  ], items, { class: "timeline-rows" });
}

export async function render(main, route) {
  const dealId = route.args[0];
  if (!dealId) {
    const open = await api("/api/deals", { q: "" });
    main.replaceChildren(h("h2", { text: "Deal timeline" }), picker(""),
      h("p", { class: "muted", text: "Open deals:" }),
      h("ul", {}, open.deals.map((d) => h("li", {}, [
        h("a", { href: link("deal", [d.deal_id]), text: d.deal_id }),
        ` ${d.stage}, ${d.owner_id}`]))));
    return null;
  }
  const timeline = await api(`/api/deals/${encodeURIComponent(dealId)}`);
  const deal = timeline.deal;
  const facts = [
    ["status", `${deal.status} in ${deal.stage}`], ["rep", deal.owner_id],
    ["segment", deal.segment], ["product", deal.product],
    ["amount", deal.amount ? `${money(deal.amount)} ${deal.currency}` : null],
    ["opened", when(deal.opened_at)],
    [deal.closed_at ? "closed" : "as of", when(deal.closed_at || deal.as_of)],
    ["policy", deal.policy_version],
  ];
  const figures = [
    ["lead time", deal.lead_time_min, "lead_time_min"],
    ["value-added", deal.value_added_min, "value_added_min"],
    ["overhead", deal.necessary_non_value_added_min, "necessary_non_value_added_min"],
    ["waste", deal.waste_min, "waste_min"],
    ["wait", deal.wait_min, "wait_min"],
    ["waiting on us", deal.waiting_on_us_min, "waiting_on_us_min"],
    ["stalled", deal.inventory_min, "inventory_min"],
  ];
  main.replaceChildren(
    h("h2", { text: `Deal ${deal.deal_id}` }),
    picker(deal.deal_id),
    h("p", { class: "muted" }, facts.filter(([, v]) => v).map(([k, v]) => `${k} ${v}`)
      .join(" · ")),
    h("div", { class: "headline" }, [
      ...figures.map(([label, minutes, key]) => h("div", { class: "figure" }, [
        h("strong", { dataset: { figure: key, value: minutes } }, duration(minutes)),
        h("span", { text: label })])),
      h("div", { class: "figure" }, [
        h("strong", { dataset: { figure: "pce", value: deal.pce ?? "" } }, pct(deal.pce)),
        h("span", { text: "PCE" })]),
      h("div", { class: "figure" }, [
        h("strong", { dataset: { figure: "touches", value: timeline.touches.length } },
          int(timeline.touches.length)),
        h("span", { text: `touches, rework ${deal.rework}` })]),
    ]),
    h("div", { class: "panel" }, [
      ...bar(timeline),
      h("ul", { class: "legend" }, [
        h("li", {}, [h("i", { class: "c-va" }), "value-added"]),
        h("li", {}, [h("i", { class: "c-nnva" }), "overhead (NNVA)"]),
        h("li", {}, [h("i", { class: "c-waste" }), "waste"]),
        h("li", {}, [h("i", { class: "c-wait" }), "wait"]),
        h("li", {}, [h("i", { class: "c-inbound" }), "customer spoke (top row)"]),
        h("li", {}, [h("i", { class: "c-waste" }), "stalled (bottom row)"]),
      ]),
      h("p", { class: "note", text: "Hover a mark for the touch: when, stage, what, class, " +
        "minutes, the policy rule that classified it. Short touches are drawn 2 px wide." }),
      mix(deal),
    ]),
    h("h3", { text: "Touches and gaps" }),
    rows(timeline),
  );
  return null;
}
