// The dashboard's shell: routes (#view/arg?filters), the JSON API, filters, the live alert stream.

import { h, int, when } from "./dom.js";
import * as vsm from "./vsm.js";
import * as deal from "./timeline.js";
import * as waste from "./waste.js";
import * as flow from "./flow.js";
import * as stalled from "./stalled.js";
import * as campaigns from "./campaigns.js";
import * as assumptions from "./assumptions.js";

const VIEWS = {
  vsm: { module: vsm, filters: true },
  deal: { module: deal, filters: false },
  waste: { module: waste, filters: true },
  flow: { module: flow, filters: false },
  stalled: { module: stalled, filters: false },
  campaigns: { module: campaigns, filters: false },
  assumptions: { module: assumptions, filters: false },
};
const FILTERS = [
  ["month", "Period (month)", "months"],
  ["segment", "Segment", "segments"],
  ["owner", "Rep", "owners"],
  ["product", "Product", "products"],
  ["campaign", "Campaign", "campaigns"],
];
const PENDING_RETRY_MS = 1500;

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON document; {pending: true, ...} while the server is still computing it (202). */
export async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (response.status === 202) return { pending: true, ...body };
  if (!response.ok) {
    throw new ApiError(body.error || `${response.status} ${response.statusText}`, response.status);
  }
  if (body.stamp) showStamp(body.stamp);
  return body;
}

/** Like api(), but waits (saying so in `main`) while the server computes the document. */
export async function settle(path, params, main, isCurrent) {
  for (;;) {
    const body = await api(path, params);
    if (!body.pending) return body;
    if (body.status === "failed") throw new ApiError(body.error || "the computation failed", 500);
    if (!isCurrent()) return null;
    main.replaceChildren(h("p", { class: "notice", dataset: { pending: body.view || "" } },
      `Computing: ${body.what || "this view"} (it runs once per archive state; this page updates ` +
      "by itself)…"));
    await new Promise((done) => setTimeout(done, PENDING_RETRY_MS));
    if (!isCurrent()) return null;
  }
}

function showStamp(stamp) {
  const parts = [];
  parts.push(stamp.as_of ? `as of ${when(stamp.as_of)} UTC` : "the archive holds no events yet");
  if (stamp.policy_versions && stamp.policy_versions.length) {
    parts.push(`policy ${stamp.policy_versions.join(", ")}`);
  }
  parts.push(`${int(stamp.deals)} deals`);
  if (stamp.deals_to_refresh) parts.push(`${int(stamp.deals_to_refresh)} still folding`);
  document.getElementById("stamp").textContent = parts.join(" · ");
}

// --- routes ------------------------------------------------------------------------------------

/** The current route: #view/arg1/arg2?key=value */
export function currentRoute() {
  const raw = decodeURI(location.hash.slice(1)) || "vsm";
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  const view = VIEWS[parts[0]] ? parts[0] : "vsm";
  return { view, args: parts.slice(1), params: new URLSearchParams(query || "") };
}

/** Go to a view: link("waste", ["chasing"], params) -> "#waste/chasing?month=..." */
export function link(view, args = [], params = null) {
  const path = [view, ...args.map((arg) => encodeURIComponent(arg))].join("/");
  const query = params ? params.toString() : "";
  return `#${path}${query ? `?${query}` : ""}`;
}

/** The filter values of a route as API parameters. */
export function filterParams(route) {
  const out = {};
  for (const [key] of FILTERS) {
    const value = route.params.get(key);
    if (value) out[key] = value;
  }
  return out;
}

let choices = null;

async function drawFilters(route) {
  const form = document.getElementById("filters");
  if (!VIEWS[route.view].filters) {
    form.hidden = true;
    return;
  }
  form.hidden = false;
  if (!choices) choices = await api("/api/filters");
  const fields = FILTERS.map(([key, label, list]) => {
    const select = h("select", { name: key, "aria-label": label },
      [h("option", { value: "", text: "All" }),
        ...(choices[list] || []).map((value) => h("option", { value, text: value }))]);
    select.value = route.params.get(key) || "";
    select.addEventListener("change", () => {
      const params = new URLSearchParams(currentRoute().params);
      if (select.value) params.set(key, select.value);
      else params.delete(key);
      location.hash = link(route.view, [], params);
    });
    return h("label", {}, [label, select]);
  });
  const clear = h("button", { type: "button", text: "Clear" });
  clear.addEventListener("click", () => { location.hash = link(route.view); });
  form.replaceChildren(...fields, clear);
}

let generation = 0;
let cleanup = null;

async function route() {
  const mine = ++generation;
  const isCurrent = () => mine === generation;
  const current = currentRoute();
  const hash = location.hash;
  const main = document.getElementById("view");
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  delete main.dataset.ready;
  main.dataset.hash = hash;
  document.body.dataset.view = current.view;
  for (const tab of document.querySelectorAll("#tabs a")) {
    if (tab.dataset.view === current.view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  main.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  try {
    const filtersDrawn = drawFilters(current); // in parallel with the view's own request
    const done = await VIEWS[current.view].module.render(main, current, { isCurrent, alerts });
    await filtersDrawn;
    if (!isCurrent()) {
      if (typeof done === "function") done();
      return;
    }
    if (typeof done === "function") cleanup = done;
    main.dataset.drawnMs = String(Math.round(performance.now())); // since the page's navigation
    main.dataset.ready = current.view;
  } catch (error) {
    if (!isCurrent()) return;
    main.replaceChildren(h("p", { class: "notice error", role: "alert" }, error.message));
    main.dataset.ready = "error";
  }
}

// --- live alerts -------------------------------------------------------------------------------

/** The one alert stream of the page: views subscribe to it while shown. */
const alerts = {
  listeners: new Set(),
  source: null,
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  },
  open() {
    this.source = new EventSource("/api/alerts/stream");
    this.source.addEventListener("alert", (event) => {
      const card = JSON.parse(event.data);
      card.seq = Number(event.lastEventId);
      for (const listener of this.listeners) listener(card);
    });
    this.source.addEventListener("status", (event) => showFeed(JSON.parse(event.data)));
    this.source.addEventListener("error", () => showFeed({ state: "reconnecting", topic: "" }));
  },
};

function showFeed(status) {
  const pill = document.getElementById("live");
  pill.dataset.state = status.state;
  const said = { following: "live", waiting: "waiting for topic", retrying: "broker unreachable" };
  pill.textContent = `alerts: ${said[status.state] || status.state}`;
  pill.title = [status.topic, status.detail].filter(Boolean).join(": ");
}

let resizeTimer = null;
let drawnWidth = window.innerWidth;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    // Charts are drawn to the width they have: redraw when it changed much (not the live board).
    if (Math.abs(window.innerWidth - drawnWidth) < 40 || document.body.dataset.view === "stalled") {
      return;
    }
    drawnWidth = window.innerWidth;
    route();
  }, 300);
});
window.addEventListener("hashchange", route);
alerts.open();
route();
