// The value-stream map: one box per stage in flow order, wait between them, the lead-time ladder.

import { filterParams, link, settle } from "./app.js";
import { duration, h, int, pct, table } from "./dom.js";

function figure(name, value, text, extra = {}) {
  return h("dd", { dataset: { figure: name, value: value ?? "" }, ...extra }, text);
}

function stageBox(stage) {
  const each = stage.per_deal;
  const process = stage.process_min || 0;
  const parts = [
    ["c-va", stage.value_added_min],
    ["c-nnva", stage.necessary_non_value_added_min],
    ["c-waste", stage.waste_min],
  ].map(([kind, minutes]) => {
    const part = h("span", { class: kind });
    part.style.flex = `${process ? minutes / process : 0} 0 0`; // CSSOM: allowed by the CSP
    return part;
  });
  const mix = h("div", { class: "stage-mix",
    title: "Process time: value-added, overhead (NNVA), waste" }, parts);
  return h("li", { class: "stage-box", dataset: { stage: stage.stage } }, [
    h("h3", { text: stage.stage }),
    h("dl", {}, [
      h("dt", { text: "deals" }), figure("deals", stage.deals, int(stage.deals)),
      h("dt", { text: "process / deal", title: "value-added + overhead + waste" }),
      figure("process_per_deal", each.process_min, duration(each.process_min)),
      h("dt", { text: "value-added" }),
      figure("value_added_per_deal", each.value_added_min, duration(each.value_added_min)),
      h("dt", { text: "waste / deal" }),
      figure("waste_per_deal", each.waste_min, duration(each.waste_min)),
      h("dt", { text: "wait / deal" }),
      figure("wait_per_deal", each.wait_min, duration(each.wait_min)),
      h("dt", { text: "PCE" }), figure("pce", stage.pce, pct(stage.pce), { class: "pce" }),
    ]),
    mix,
  ]);
}

function inventory(stage) {
  return h("li", { class: "inventory", "aria-hidden": "true",
    title: `${stage.stage}: on average a deal waits ${duration(stage.per_deal.wait_min)}` }, [
    h("span", { class: "arrow", text: "➜" }),
    h("span", { class: "triangle" }),
    h("span", { text: `${duration(stage.per_deal.wait_min)} wait` }),
  ]);
}

function ladder(chart) {
  const rungs = [];
  for (const stage of chart.stages) {
    rungs.push(h("div", { class: "rung wait", title: `${stage.stage}: wait per deal` }, [
      h("span", { dataset: { figure: "ladder_wait", value: stage.per_deal.wait_min } },
        duration(stage.per_deal.wait_min)),
      h("span", { class: "label", text: `${stage.stage} wait` }),
    ]));
    rungs.push(h("div", { class: "rung work", title: `${stage.stage}: process time per deal` }, [
      h("span", { class: "label", text: "work" }),
      h("span", { dataset: { figure: "ladder_process", value: stage.per_deal.process_min } },
        duration(stage.per_deal.process_min)),
    ]));
  }
  const total = chart.ladder;
  rungs.push(h("div", { class: "rung-total" }, [
    h("span", {}, ["Lead time ",
      h("strong", { dataset: { figure: "ladder_lead", value: total.lead_time_min } },
        duration(total.lead_time_min))]),
    h("span", {}, ["Process ",
      h("strong", { dataset: { figure: "ladder_total_process", value: total.process_min } },
        duration(total.process_min))]),
    h("span", {}, ["PCE of the path ",
      h("strong", { dataset: { figure: "ladder_pce", value: total.pce } }, pct(total.pce))]),
  ]));
  return h("div", { class: "ladder", "aria-label": "Lead-time ladder" }, rungs);
}

function figuresTable(stages, params) {
  const columns = [
    { label: "stage", value: (s) => s.stage },
    { label: "deals", num: true, value: (s) => int(s.deals), figure: "deals", raw: (s) => s.deals },
    { label: "lead", num: true, value: (s) => duration(s.lead_time_min) },
    { label: "value-added", num: true, value: (s) => duration(s.value_added_min),
      figure: "value_added_min", raw: (s) => s.value_added_min },
    { label: "overhead", num: true, value: (s) => duration(s.necessary_non_value_added_min) },
    { label: "waste", num: true, value: (s) => duration(s.waste_min),
      figure: "waste_min", raw: (s) => s.waste_min },
    { label: "wait", num: true, value: (s) => duration(s.wait_min),
      figure: "wait_min", raw: (s) => s.wait_min },
    { label: "on us", num: true, value: (s) => duration(s.waiting_on_us_min) },
    { label: "stalled", num: true, value: (s) => duration(s.inventory_min) },
    { label: "rework", num: true, value: (s) => int(s.rework) },
    { label: "PCE", num: true, value: (s) => pct(s.pce), figure: "pce", raw: (s) => s.pce },
  ];
  return table(columns, stages, {
    class: "stage-figures",
    rowAttrs: (s) => ({ dataset: { stage: s.stage } }),
  });
}

export async function render(main, route, context) {
  const params = filterParams(route);
  const chart = await settle("/api/value-stream", params, main, context.isCurrent);
  if (!chart) return null;
  const stages = chart.stages;
  if (!stages.length) {
    main.replaceChildren(h("p", { class: "notice",
      text: "No stage has deals under these filters." }));
    return null;
  }
  const row = [];
  for (const stage of stages) row.push(inventory(stage), stageBox(stage));
  const pareto = link("waste", [], new URLSearchParams(params));
  main.replaceChildren(
    h("h2", { text: "Value-stream map of the sales process" }),
    h("div", { class: "headline" }, [
      h("div", { class: "figure" }, [
        h("strong", { dataset: { figure: "deals", value: chart.deals } }, int(chart.deals)),
        h("span", { text: "deals in these boxes" })]),
      h("div", { class: "figure" }, [
        h("strong", { dataset: { figure: "pce", value: chart.pce ?? "" } }, pct(chart.pce)),
        h("span", { text: "process cycle efficiency (value-added / lead time)" })]),
      h("div", { class: "figure" }, [
        h("strong", {}, h("a", { href: pareto, text: "Waste Pareto →" })),
        h("span", { text: "where the time is lost" })]),
    ]),
    h("ol", { class: "vsm-stages", "aria-label": "Stages in flow order" }, row),
    h("h3", { text: "Lead-time ladder: an average deal through every stage" }),
    ladder(chart),
    h("ul", { class: "legend" }, [
      h("li", {}, [h("i", { class: "c-va" }), "value-added"]),
      h("li", {}, [h("i", { class: "c-nnva" }), "necessary overhead (NNVA)"]),
      h("li", {}, [h("i", { class: "c-waste" }), "waste"]),
      h("li", {}, [h("i", { class: "c-wait" }), "wait"]),
    ]),
    h("h3", { text: "Per stage, all deals together" }),
    figuresTable(stages, params),
    h("p", { class: "note", text: "Periods: a stage counts the deals that entered it in the " +
      "month (as the value_stream_by view); rep, segment, product and campaign select deals. " +
      "A campaign's deals are those its responses link to (same account, within the " +
      "lookback window)." }),
  );
  return null;
}
