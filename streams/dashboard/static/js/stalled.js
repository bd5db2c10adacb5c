// The stalled deals board: one column per stage, a card per stalled deal with its evidence,
// updated as alerts arrive on the page's event stream (no reload).

import { api, link } from "./app.js";
import { days, duration, h, int, when, words } from "./dom.js";

const SOURCES = {
  live: "live alert",
  "archived alert": "alert",
  archive: "value stream",
};

function day(iso) {
  return iso ? iso.slice(0, 10) : "–";
}

function card(item) {
  const last = item.last_value_added_id
    ? `${day(item.last_value_added_at)} (${item.last_value_added_id})`
    : "none";
  return h("article", { class: "card", dataset: { deal: item.deal_id, source: item.source,
    kind: item.kind } }, [
    h("h4", {}, [h("a", { href: link("deal", [item.deal_id]), text: item.deal_id }),
      h("span", { class: "badge", text: SOURCES[item.source] || item.source })]),
    h("dl", {}, [
      h("dt", { text: "rep" }), h("dd", { text: [item.owner_id, item.segment].filter(Boolean)
        .join(", ") }),
      h("dt", { text: "stalled" }),
      h("dd", { dataset: { figure: "stalled_days", value: item.stalled_days } },
        `${days(item.stalled_days)} since ${day(item.stalled_at)}`),
      h("dt", { text: "threshold" }),
      h("dd", { dataset: { figure: "threshold_days", value: item.threshold_days } },
        `${days(item.threshold_days)} (${item.threshold_basis})`),
      h("dt", { text: "silent" }),
      h("dd", { dataset: { figure: "silent_days", value: item.silent_days } },
        `${days(item.silent_days)}`),
      h("dt", { text: "last VA" }), h("dd", { dataset: { figure: "last_value_added" },
        text: last }),
      h("dt", { text: "waste" }),
      h("dd", { dataset: { figure: "waste_accrued_min", value: item.waste_accrued_min },
        title: "accrued while stalled: time stalled plus process-time waste" },
      duration(item.waste_accrued_min)),
      h("dt", { text: "as of" }), h("dd", { text: when(item.evidence_at) }),
    ]),
  ]);
}

function column(stage, items) {
  return h("section", { class: "column", dataset: { stage } }, [
    h("h3", {}, [h("span", { text: stage }), h("span", { class: "muted", text: int(items.length) })]),
    ...items.map(card),
  ]);
}

export async function render(main, route, context) {
  const body = await api("/api/stalled");
  const open = new Map(body.cards.map((item) => [item.deal_id, item]));
  const ended = [];
  let lastSeq = 0;
  let received = 0;

  const apply = (item) => {
    if (item.seq && item.seq <= lastSeq) return false;
    if (item.seq) lastSeq = item.seq;
    received += 1;
    if (item.kind === "deal-stalled") {
      open.delete(item.deal_id);
      open.set(item.deal_id, item);
    } else {
      open.delete(item.deal_id);
      ended.unshift(item);
      ended.splice(20);
    }
    return true;
  };

  const draw = () => {
    const stages = [...body.stages];
    for (const item of open.values()) if (!stages.includes(item.stage)) stages.push(item.stage);
    const byStage = new Map(stages.map((stage) => [stage, []]));
    const ordered = [...open.values()].sort((a, b) =>
      (b.source === "live") - (a.source === "live") || b.stalled_days - a.stalled_days);
    for (const item of ordered) byStage.get(item.stage).push(item);
    main.replaceChildren(
      h("h2", { text: "Stalled deals" }),
      h("div", { class: "headline" }, [
        h("div", { class: "figure" }, [
          h("strong", { dataset: { figure: "stalled", value: open.size } }, int(open.size)),
          h("span", { text: "deals stalled now" })]),
        h("div", { class: "figure" }, [
          h("strong", { dataset: { figure: "received", value: received } }, int(received)),
          h("span", { text: `alerts received live from ${body.feed.topic}` })]),
      ]),
      h("p", { class: "muted", text: "A deal is stalled when the time since its last " +
        "value-added touch (or its stage entry) passes its stage's threshold. Cards come from " +
        "the archive's value streams and alerts; new alerts appear here as they arrive." }),
      h("div", { class: "board" }, stages.map((stage) => column(stage, byStage.get(stage)))),
      h("h3", { text: "Unstalled since the dashboard started" }),
      ended.length
        ? h("ul", { class: "feed" }, ended.map((item) => h("li", { dataset: { deal: item.deal_id } },
          `${when(item.evidence_at)} ${item.deal_id} in ${item.stage}: ${words(item.ended_by)} ` +
          `after ${days(item.stalled_days)}, waste while stalled ` +
          `${duration(item.waste_accrued_min)}`)))
        : h("p", { class: "muted", text: "None yet." }),
    );
    main.dataset.ready = "stalled";
  };

  for (const item of body.live) apply(item);
  draw();
  return context.alerts.subscribe((item) => {
    if (apply(item)) draw();
  });
}
