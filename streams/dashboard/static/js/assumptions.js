// Strategy assumptions: each claim's verdict, effect and interval, and how it moved month by month.

import { settle } from "./app.js";
import { h, s, tip, when, widthOf } from "./dom.js";

const VERDICT_COLOURS = { supported: "var(--good)", refuted: "var(--bad)",
  inconclusive: "var(--unsure)" };

/** Effect and interval per month end on one axis, with zero marked. */
function trendChart(name, trend, width) {
  const points = trend.map((entry) => ({ period: entry.period, ...entry.claims[name] }));
  const values = points.flatMap((p) => [p.effect, ...(p.interval || [])]).filter((v) =>
    v !== null && v !== undefined);
  const height = 130;
  const margin = { left: 8, right: 8, top: 10, bottom: 22 };
  const svg = s("svg", { class: "chart trend", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": `${name}: effect and interval at each month end` });
  if (!values.length) return svg;
  const low = Math.min(0, ...values);
  const high = Math.max(0, ...values);
  const span = high - low || 1;
  const y = (v) => margin.top + (1 - (v - low) / span) * (height - margin.top - margin.bottom);
  const step = (width - margin.left - margin.right) / Math.max(points.length, 1);
  svg.append(s("line", { x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0),
    stroke: "var(--muted)", "stroke-dasharray": "4 3" }));
  points.forEach((point, i) => {
    const x = margin.left + step * (i + 0.5);
    const colour = VERDICT_COLOURS[point.verdict] || "var(--muted)";
    const group = s("g", { dataset: { period: point.period, verdict: point.verdict } },
      tip(`${point.period}: effect ${point.shown.effect}, interval ${point.shown.interval}, ` +
        `${point.verdict}`));
    if (point.interval) {
      group.append(s("line", { x1: x, x2: x, y1: y(point.interval[0]), y2: y(point.interval[1]),
        stroke: colour, "stroke-width": 3 }));
    }
    if (point.effect !== null && point.effect !== undefined) {
      group.append(s("circle", { cx: x, cy: y(point.effect), r: 4, fill: colour }));
    }
    group.append(s("text", { x, y: height - 6, "text-anchor": "middle",
      text: point.period.startsWith("20") ? point.period.slice(2) : "now" }));
    svg.append(group);
  });
  return svg;
}

function claimCard(claim, trend, width) {
  const shown = claim.shown;
  return h("article", { class: "claim", dataset: { claim: claim.name, verdict: claim.verdict } }, [
    h("header", {}, [h("h3", { text: claim.name }),
      h("span", { class: `verdict ${claim.verdict}`, dataset: { figure: "verdict" },
        text: claim.verdict })]),
    h("p", { text: claim.statement }),
    h("dl", {}, [
      h("dt", { text: "metric" }), h("dd", { text: `${claim.metric} (expect ${claim.expect})` }),
      h("dt", { text: "cohort" }), h("dd", {}, [h("span", { dataset: { figure: "cohort" },
        text: shown.cohort }), ` over ${claim.cohort.closed} closed deals: ${claim.cohort_definition}`]),
      h("dt", { text: "other" }), h("dd", {}, [h("span", { dataset: { figure: "other" },
        text: shown.other }), ` over ${claim.other.closed} closed deals: ${claim.other_definition}`]),
      h("dt", { text: "effect" }), h("dd", { dataset: { figure: "effect", value: claim.effect ?? "" },
        text: shown.effect }),
      h("dt", { text: "interval" }), h("dd", { dataset: { figure: "interval" },
        text: shown.interval }),
      h("dt", { text: "Holm p" }), h("dd", { text: shown.adjusted_p }),
      h("dt", { text: "why" }), h("dd", { text: claim.reason }),
    ]),
    h("p", { class: "note", text: "Trend at each month end (dot: effect; bar: interval; " +
      "dashed: zero)" }),
    trendChart(claim.name, trend, width),
  ]);
}

export async function render(main, route, context) {
  const body = await settle("/api/assumptions", {}, main, context.isCurrent);
  if (!body) return null;
  if (body.status === "none") {
    main.replaceChildren(h("h2", { text: "Strategy assumptions" }),
      h("p", { class: "notice", text: body.message }));
    return null;
  }
  const report = body.report;
  const stated = report.reproducibility;
  const room = widthOf(main);
  const gap = 12;
  const columns = Math.max(1, Math.floor((room + gap) / (300 + gap)));
  const width = Math.floor((room - gap * (columns - 1)) / columns) - 26;
  main.replaceChildren(
    h("h2", { text: report.title || "Strategy assumptions" }),
    h("p", { class: "muted", text: `${body.file}: ${report.claims.length} claims over ` +
      `${stated.events_known.toLocaleString("en-US")} events (all history up to ` +
      `${when(stated.latest_event_at)}), policy ${stated.policy_version}, seed ${stated.seed}` +
      (body.status === "stale" ? "; the archive has moved on since (recomputing)" : "") }),
    h("div", { class: "claims" }, report.claims.map((claim) =>
      claimCard(claim, body.trend, Math.max(width, 240)))),
    h("p", { class: "note", text: `Verdicts, first rule that applies: ${report.verdict_rules
      .join("; ")}. Reproduce with \`gemba assumptions check ${body.file} --trend --seed ` +
      `${stated.seed}\`.` }),
  );
  return null;
}
