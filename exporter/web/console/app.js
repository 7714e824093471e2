// The operator console: a page over the JSON API (/api/v1), no build step, no dependencies.
// Everything shown is built with DOM calls and textContent (never innerHTML): data from the
// API cannot become markup. Live: the WebSocket feed (through a ticket when the service
// offers them); on any failure, lists are refetched every 1.5 s until the feed is back.

const $ = (selector, root = document) => root.querySelector(selector);
const main = $("#main");
const SEVERITIES = ["critical", "high", "medium", "low"];
const STATUSES = ["active", "acknowledged", "resolved"];
const TYPES = ["performance", "data_quality", "system_error", "security"];
const CHANNELS = ["system_alerts", "health_metrics", "data_quality"];

// ``requests`` aborts whatever the page still has in flight when the person signs out
const state = { session: null, page: null, params: new URLSearchParams(), refresh: null, requests: new AbortController() };

// ------------------------------------------------------------------ DOM helpers
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

const badge = (text) => h("span", { class: `badge s-${text ?? "none"}` }, text ?? "none");
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const number = (v) => (v === null || v === undefined ? "—" : Number(v).toLocaleString(undefined, { maximumFractionDigits: 3 }));

function toast(message) {
  const el = $("#toast");
  el.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.textContent = ""; }, 4000);
}

// ------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

async function api(path, { method = "GET", body, query, signal = state.requests.signal } = {}) {
  const url = new URL(path, location.origin);
  if (query) for (const [k, v] of Object.entries(query)) {
    for (const one of [].concat(v)) if (one !== "" && one !== null && one !== undefined) url.searchParams.append(k, one);
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session?.csrf_token) headers["X-CSRF-Token"] = state.session.csrf_token;
  const resp = await fetch(url, {
    method, headers, credentials: "same-origin", signal,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (resp.status === 401 && state.session && !state.session.auth_disabled) {
    signedOut("Your session has ended or is not valid. Sign in again.");
  }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}

const can = (scope) => {
  const scopes = state.session?.scopes ?? [];
  return scopes.includes(scope) || scopes.includes("admin");
};

// ------------------------------------------------------------------ live feed
const live = {
  socket: null, backoff: 1000, retry: null, poll: null, pending: null, last: 0, stopped: true,
  cursors: {},

  start() {
    this.stopped = false;
    this.cursors = {};
    this.connect();
  },

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    clearInterval(this.poll);
    clearTimeout(this.pending);
    this.poll = this.pending = null;
    if (this.socket) { this.socket.onclose = null; this.socket.close(); this.socket = null; }
    this.show(false);
  },

  async connect() {
    if (this.stopped) return;
    let url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/stream`;
    try {
      if (state.session?.stream_tickets) {
        const ticket = await api("/api/v1/stream/tickets", { method: "POST" });
        url += `?ticket=${encodeURIComponent(ticket.ticket)}`;
      }
    } catch {
      this.failed();
      return;
    }
    if (this.stopped) return;
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer"; // the feed sends its JSON in binary frames
    this.socket = socket;
    socket.onopen = () => {
      // resume after the last change seen (cursors are opaque); the server replays the rest,
      // or says "reset" when it cannot
      socket.send(JSON.stringify({ type: "subscribe", channels: CHANNELS, after: this.cursors }));
      this.backoff = 1000;
      clearInterval(this.poll);
      this.poll = null;
      this.show(true);
      this.changed(null); // whatever happened while we were away
    };
    socket.onmessage = (msg) => {
      let event;
      const text = typeof msg.data === "string" ? msg.data : new TextDecoder().decode(msg.data);
      try { event = JSON.parse(text); } catch { return; }
      if (event.type === "event") {
        if (event.cursor && CHANNELS.includes(event.channel)) this.cursors[event.channel] = event.cursor;
        this.changed(event.channel);
      } else if (event.type === "reset") {
        this.cursors = {};
        this.changed(null);
      }
    };
    socket.onclose = (ev) => {
      if (ev.code === 1008) this.cursors = {}; // a subscription it refused: start afresh
      if (this.socket === socket) this.failed();
    };
  },

  failed() {
    this.socket = null;
    this.show(false);
    if (this.stopped) return;
    // until the feed is back, the page refetches what it shows
    if (!this.poll) this.poll = setInterval(() => this.changed(null), 1500);
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, 30000);
  },

  changed(channel) {
    const refresh = state.refresh;
    if (!refresh || (channel && refresh.channels && !refresh.channels.includes(channel))) return;
    if (this.pending) return;
    // at most one refetch a second (samples arrive in bursts), the first after 150 ms; it
    // refetches the page shown when it runs (the page may have changed since)
    const wait = Math.max(150, 1000 - (Date.now() - this.last));
    this.pending = setTimeout(async () => {
      this.pending = null;
      this.last = Date.now();
      const current = state.refresh;
      const done = current ? await current.run().catch(() => true) : true;
      if (!done) this.changed(null); // someone is typing: try again later
    }, wait);
  },

  show(on) {
    const el = $("#live");
    el.textContent = on ? "live" : this.stopped ? "" : "reconnecting…";
    el.classList.toggle("on", on);
  },
};

// ------------------------------------------------------------------ sign-in and the frame
function signedOut(message) {
  state.session = null;
  state.refresh = null;
  state.requests.abort();
  state.requests = new AbortController();
  live.stop();
  $("#top").hidden = true;
  renderSignIn(message);
}

function renderSignIn(message) {
  const error = h("p", { class: "error", id: "signin-error", role: "alert" }, message ?? "");
  const token = h("input", { type: "password", name: "token", id: "token", required: true, autocomplete: "off" });
  const form = h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        state.session = await api("/api/v1/session", { method: "POST", body: { token: token.value } });
        token.value = "";
        start();
      } catch (err) {
        error.textContent = err.status === 401 ? "That token is not valid." : err.message;
        token.focus();
      }
    },
  },
  h("label", { for: "token" }, "API token", token),
  h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(h("section", { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", { class: "muted" }, "Paste your API token once; the console keeps a session (a cookie) until it expires or you sign out."),
    error, form));
  token.focus();
}

function start() {
  const session = state.session;
  $("#top").hidden = false;
  $("#whoami").textContent = session.auth_disabled ? "demo (no sign-in)" : session.name;
  $("#signout").hidden = session.auth_disabled;
  live.start();
  route();
}

async function signOut() {
  // nothing of the page may ask the API between now and the sign-in form
  live.stop();
  state.refresh = null;
  state.requests.abort();
  state.requests = new AbortController();
  try { await api("/api/v1/session", { method: "DELETE" }); } catch { /* ended anyway */ }
  signedOut("You are signed out.");
}

// ------------------------------------------------------------------ routing
const PAGES = {
  overview: overviewPage,
  incidents: incidentsPage,
  incident: incidentPage,
  quality: qualityPage,
  services: servicesPage,
  views: viewsPage,
  grafana: grafanaPage,
};

function parseHash() {
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "overview").split("?");
  const parts = path.split("/").map(decodeURIComponent);
  let page = parts[0] || "overview";
  if (page === "incidents" && parts[1]) page = "incident";
  return { page, parts, params: new URLSearchParams(query ?? "") };
}

async function route() {
  if (!state.session) return;
  const { page, parts, params } = parseHash();
  state.page = page;
  state.params = params;
  state.refresh = null;
  const navPage = page === "incident" ? "incidents" : page;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === navPage) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const render = PAGES[page] ?? overviewPage;
  try {
    await render(parts, params);
  } catch (err) {
    if (err.status === 401 || err.name === "AbortError") return;
    main.replaceChildren(h("h1", {}, "Something went wrong"), h("p", { class: "error" }, err.message));
  }
}

// Install a page: its static part once, its data part refreshed on every change.
async function mount(title, controls, load, channels) {
  const data = h("div", { id: "data" });
  const heading = h("h1", {}, title);
  main.replaceChildren(heading, controls ?? "", data);
  const refresh = {
    channels,
    async run({ force = false } = {}) {
      // never pull a form out from under someone typing into it: wait for the next change
      const active = document.activeElement;
      const editing = data.contains(active) && ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName)
        && active.type !== "checkbox";
      if (!force && (editing || data.querySelector("details[open]"))) return false;
      const content = await load();
      if (state.refresh === refresh) data.replaceChildren(...[].concat(content));
      return true;
    },
  };
  state.refresh = refresh;
  await refresh.run({ force: true });
}

function focusMain() {
  main.focus({ preventScroll: true });
}

// ------------------------------------------------------------------ Overview
async function overviewPage() {
  await mount("Overview", null, async () => {
    const [overview, quality, windows, open] = await Promise.all([
      api("/api/v1/overview"),
      api("/api/v1/quality/overview"),
      api("/api/v1/maintenance"),
      api("/api/v1/alerts", { query: { status: ["active", "acknowledged"], limit: 5 } }),
    ]);
    // the latest samples of each service (a few per metric: replicas and hosts push too)
    const recent = await Promise.all(overview.services.map((svc) => api("/api/v1/health-metrics", {
      query: { service: svc.service, limit: Math.min(1000, 3 * Object.keys(svc.metrics).length + 2) },
    })));
    const latest = latestValues(recent.flatMap((page) => page.items));
    const worst = [...quality.sources].sort((a, b) => (a.score ?? 0) - (b.score ?? 0)).slice(0, 3);
    const inForce = windows.items.filter((w) => w.active);
    return h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "ov-status" },
        h("h2", { id: "ov-status" }, "Overall status"),
        h("p", { class: "big" }, badge(overview.status)),
        h("p", { class: "muted" }, `as of ${when(overview.generated_at)}`)),
      h("section", { class: "card", "aria-labelledby": "ov-incidents" },
        h("h2", { id: "ov-incidents" }, "Open incidents by severity"),
        h("div", { class: "counts" }, SEVERITIES.map((sev) =>
          h("div", {}, h("a", { href: `#/incidents?status=active&status=acknowledged&severity=${sev}` }, badge(sev)),
            h("div", { class: "big" }, overview.alerts[sev] ?? 0)))),
        h("ul", {}, open.items.map((a) => h("li", {}, badge(a.severity), " ",
          h("a", { href: `#/incidents/${a.id}` }, a.title))))),
      h("section", { class: "card", "aria-labelledby": "ov-quality" },
        h("h2", { id: "ov-quality" }, "Data quality"),
        h("p", {}, h("span", { class: "big" }, quality.overall.score === null ? "—" : `${number(quality.overall.score)}`), " ",
          badge(quality.overall.status)),
        h("p", { class: "muted" }, "Worst sources"),
        h("ul", {}, worst.map((src) => h("li", {}, h("a", { href: "#/quality" }, src.source), ` ${number(src.score)} `, badge(src.status))))),
      h("section", { class: "card", "aria-labelledby": "ov-maint" },
        h("h2", { id: "ov-maint" }, "Maintenance windows in effect"),
        inForce.length ? h("ul", {}, inForce.map((w) => h("li", {},
          matcherText(w.matchers), ` until ${when(w.occurrence_ends_at ?? w.ends_at)}`, w.comment ? ` — ${w.comment}` : "")))
          : h("p", { class: "muted" }, "None")),
      h("section", { class: "card wide", "aria-labelledby": "ov-services" },
        h("h2", { id: "ov-services" }, "Services"),
        h("div", { class: "scroll" }, h("table", {},
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Service"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Latest values"))),
          h("tbody", {}, overview.services.map((svc) => h("tr", {},
            h("th", { scope: "row" }, h("a", { href: `#/services/${encodeURIComponent(svc.service)}` }, svc.service)),
            h("td", {}, badge(svc.status)),
            h("td", {}, Object.keys(svc.metrics).map((m) => {
              const sample = latest.get(`${svc.service}/${m}`);
              return h("div", {}, `${m}: `, sample ? `${number(sample.value)}${sample.unit ? " " + sample.unit : ""}` : "—");
            })))))))));
  }, null);
}

function latestValues(items) {
  const latest = new Map();
  for (const sample of items) {
    const key = `${sample.service_name}/${sample.metric_type}`;
    if (!latest.has(key)) latest.set(key, sample);
  }
  return latest;
}

function matcherText(matchers) {
  const parts = [];
  for (const key of ["service", "alertname", "source"]) if (matchers[key]) parts.push(`${key}=${matchers[key]}`);
  for (const [k, v] of Object.entries(matchers.labels ?? {})) parts.push(`${k}=${v}`);
  return parts.join(", ") || "everything";
}

// ------------------------------------------------------------------ Incidents
function incidentFilters(params) {
  return {
    status: params.getAll("status"),
    severity: params.getAll("severity"),
    alert_type: params.getAll("alert_type"),
    service: params.get("service") ?? "",
    text: params.get("text") ?? "",
  };
}

function filtersToHash(filters) {
  const params = new URLSearchParams();
  for (const key of ["status", "severity", "alert_type"]) for (const v of filters[key] ?? []) params.append(key, v);
  if (filters.service) params.set("service", filters.service);
  if (filters.text) params.set("text", filters.text);
  return params.toString();
}

function multiSelect(name, label, options, chosen) {
  return h("label", {}, label, h("select", { name, multiple: true, size: Math.min(options.length, 4) },
    options.map((o) => h("option", { value: o, selected: chosen.includes(o) }, o))));
}

async function incidentsPage(_parts, params) {
  const filters = incidentFilters(params);
  if (!params.has("status") && !params.toString()) filters.status = ["active", "acknowledged"];
  const form = h("form", {
    class: "filters", "aria-label": "Filters",
    onsubmit: (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const chosen = {
        status: data.getAll("status"), severity: data.getAll("severity"), alert_type: data.getAll("alert_type"),
        service: data.get("service").trim(), text: data.get("text").trim(),
      };
      location.hash = `#/incidents?${filtersToHash(chosen)}`;
    },
  },
  multiSelect("status", "Status", STATUSES, filters.status),
  multiSelect("severity", "Severity", SEVERITIES, filters.severity),
  multiSelect("alert_type", "Type", TYPES, filters.alert_type),
  h("label", {}, "Service", h("input", { name: "service", value: filters.service, size: 12 })),
  h("label", {}, "Text", h("input", { name: "text", type: "search", value: filters.text, size: 14 })),
  h("button", { type: "submit" }, "Apply"),
  saveViewForm("incidents", filters));

  const selected = new Set();
  const bulk = h("div", { class: "actions" });
  if (can("ack")) {
    const button = h("button", {
      type: "button", id: "bulk-ack",
      onclick: async () => {
        const ids = [...selected];
        if (!ids.length) return toast("Select incidents first");
        button.disabled = true;
        const results = await Promise.allSettled(ids.map((id) =>
          api(`/api/v1/alerts/${id}/acknowledge`, { method: "POST", body: { by: state.session.name } })));
        const failed = results.filter((r) => r.status === "rejected").length;
        toast(failed ? `${ids.length - failed} acknowledged, ${failed} failed` : `${ids.length} acknowledged`);
        selected.clear();
        button.disabled = false;
        await state.refresh?.run({ force: true });
      },
    }, "Acknowledge selected");
    bulk.append(button);
  }

  await mount("Incidents", h("div", {}, form, bulk), async () => {
    const page = await api("/api/v1/alerts", {
      query: { status: filters.status, severity: filters.severity, alert_type: filters.alert_type, service: filters.service || undefined, limit: 200 },
    });
    const text = filters.text.toLowerCase();
    const items = text ? page.items.filter((a) =>
      [a.title, a.description, a.service_name, ...Object.values(a.labels)].some((v) => (v ?? "").toLowerCase().includes(text)))
      : page.items;
    if (!items.length) return h("p", { class: "muted", id: "no-incidents" }, "No incidents match.");
    for (const id of [...selected]) if (!items.some((a) => a.id === id)) selected.delete(id);
    return h("div", { class: "scroll" }, h("table", { id: "incidents" },
      h("caption", { class: "muted" }, `${items.length} incident${items.length === 1 ? "" : "s"}`),
      h("thead", {}, h("tr", {},
        can("ack") ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Select")) : null,
        h("th", { scope: "col" }, "Severity"), h("th", { scope: "col" }, "Title"), h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col", class: "hide-narrow" }, "Service"), h("th", { scope: "col", class: "hide-narrow" }, "Started"))),
      h("tbody", {}, items.map((a) => h("tr", { "data-id": a.id },
        can("ack") ? h("td", {}, h("input", {
          type: "checkbox", "aria-label": `Select ${a.title}`, checked: selected.has(a.id), disabled: a.status === "resolved",
          onchange: (ev) => (ev.target.checked ? selected.add(a.id) : selected.delete(a.id)),
        })) : null,
        h("td", {}, badge(a.severity)),
        h("td", {}, h("a", { href: `#/incidents/${a.id}` }, a.title)),
        h("td", { class: "status" }, badge(a.status)),
        h("td", { class: "hide-narrow" }, a.service_name ?? "—"),
        h("td", { class: "hide-narrow" }, when(a.starts_at)))))));
  }, ["system_alerts"]);
}

async function incidentPage(parts) {
  const id = Number(parts[1]);
  await mount(`Incident ${id}`, h("p", {}, h("a", { href: "#/incidents" }, "← All incidents")), async () => {
    const a = await api(`/api/v1/alerts/${id}`);
    return [
      h("div", { class: "grid" },
        h("section", { class: "card", "aria-labelledby": "inc-title" },
          h("h2", { id: "inc-title" }, a.title),
          h("p", {}, badge(a.severity), " ", h("span", { id: "incident-status" }, badge(a.status)), " ", a.alert_type),
          a.description ? h("p", {}, a.description) : null,
          h("dl", { class: "kv" },
            kv("Service", a.service_name ?? "—"), kv("Source", a.source), kv("Started", when(a.starts_at)),
            kv("Acknowledged", a.acknowledged_by ? `${a.acknowledged_by} at ${when(a.acknowledged_at)}` : "—"),
            kv("Acknowledged until", when(a.acknowledged_until)),
            kv("Resolved", a.resolved_by ? `${a.resolved_by} at ${when(a.resolved_at)}` : "—"),
            a.maintenance_id ? kv("Maintenance window", `#${a.maintenance_id}`) : null)),
        h("section", { class: "card", "aria-labelledby": "inc-silence" },
          h("h2", { id: "inc-silence" }, "Silence"),
          h("dl", { class: "kv", id: "silence" },
            kv("Silence", a.silence_id ?? "none"),
            kv("Silence ends", when(a.silence_ends_at)),
            kv("Silenced by", a.silenced_by.join(", ") || "—"),
            kv("Inhibited by", a.inhibited_by.join(", ") || "—"),
            kv("Alertmanager", a.alertmanager_state ?? "not seen"),
            a.alertmanager_pending.length ? kv("Waiting for", a.alertmanager_pending.join(", ")) : null)),
        h("section", { class: "card", "aria-labelledby": "inc-labels" },
          h("h2", { id: "inc-labels" }, "Labels and annotations"),
          h("dl", { class: "kv" }, Object.entries(a.labels).map(([k, v]) => kv(k, v))),
          Object.keys(a.annotations).length ? h("dl", { class: "kv" }, Object.entries(a.annotations).map(([k, v]) => kv(k, v))) : null)),
      incidentActions(a),
      h("section", { class: "card", "aria-labelledby": "inc-timeline" },
        h("h2", { id: "inc-timeline" }, "Timeline"),
        h("ol", { class: "timeline" }, a.events.map((e) => h("li", {},
          h("strong", {}, e.from_status === e.to_status ? "note" : e.from_status ? `${e.from_status} → ${e.to_status}` : e.to_status),
          ` by ${e.actor}, ${when(e.at)}`, e.note ? h("div", {}, e.note) : null)))),
    ];
  }, ["system_alerts"]);
}

function kv(key, value) {
  return [h("dt", {}, key), h("dd", {}, value)];
}

function incidentActions(a) {
  if (!can("ack") || a.status === "resolved") return null;
  const act = (path, body) => async (ev) => {
    ev.preventDefault();
    const button = ev.submitter ?? ev.target;
    button.disabled = true;
    try {
      await api(`/api/v1/alerts/${a.id}/${path}`, { method: "POST", body: { by: state.session.name, ...body() } });
      toast("Done");
      await state.refresh?.run({ force: true });
    } catch (err) {
      toast(err.message);
      button.disabled = false;
    }
  };
  const until = h("input", { type: "datetime-local", name: "until" });
  const ackNote = h("input", { name: "note", size: 14 });
  const resolveNote = h("input", { name: "note", size: 14 });
  const note = h("textarea", { name: "note", required: true, rows: 2 });
  const forms = [];
  if (a.status === "active") {
    forms.push(h("form", { onsubmit: act("acknowledge", () => ({
      note: ackNote.value || undefined,
      until: until.value ? new Date(until.value).toISOString() : undefined,
    })) },
    h("label", {}, "Until (optional)", until), h("label", {}, "Note (optional)", ackNote),
    h("button", { type: "submit" }, "Acknowledge")));
  } else {
    forms.push(h("form", { onsubmit: act("unacknowledge", () => ({})) }, h("button", { type: "submit", class: "secondary" }, "Unacknowledge")));
  }
  forms.push(h("form", { onsubmit: act("resolve", () => ({ note: resolveNote.value || undefined })) },
    h("label", {}, "Resolution note", resolveNote), h("button", { type: "submit", class: "danger" }, "Resolve")));
  forms.push(h("form", { onsubmit: async (ev) => { await act("notes", () => ({ note: note.value }))(ev); note.value = ""; } },
    h("label", {}, "Note", note), h("button", { type: "submit", class: "secondary" }, "Add note")));
  if (can("admin")) forms.push(maintenanceForm(a));
  return h("section", { class: "actions", "aria-label": "Actions" }, forms);
}

function maintenanceForm(a) {
  const hours = h("select", { name: "hours" }, [1, 2, 4, 8, 24].map((n) => h("option", { value: n }, `${n} h`)));
  const comment = h("input", { name: "comment", size: 14, value: `from incident ${a.id}` });
  const matchers = a.service_name ? { service: a.service_name } : a.labels.alertname ? { alertname: a.labels.alertname } : { labels: a.labels };
  return h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      const ends = new Date(Date.now() + Number(hours.value) * 3600e3).toISOString();
      try {
        const w = await api("/api/v1/maintenance", { method: "POST", body: { matchers, ends_at: ends, comment: comment.value } });
        toast(`Maintenance window ${w.id} opened`);
      } catch (err) { toast(err.message); }
    },
  }, h("label", {}, `Maintenance for ${matcherText(matchers)}`, hours), h("label", {}, "Comment", comment),
  h("button", { type: "submit", class: "secondary" }, "Open maintenance window"));
}

// ------------------------------------------------------------------ Data quality
async function qualityPage(parts) {
  const [, source, dimension] = parts;
  if (source && dimension) return qualityCheckPage(source, dimension);
  await mount("Data quality", null, async () => {
    const overview = await api("/api/v1/quality/overview");
    const dimensions = [...new Set(overview.sources.flatMap((src) => src.dimensions.map((d) => d.dimension)))].sort();
    return h("section", { class: "card" },
      h("p", {}, "Average ", h("strong", {}, number(overview.overall.score)), " ", badge(overview.overall.status)),
      h("div", { class: "scroll" }, h("table", { id: "scorecard" },
        h("caption", { class: "muted" }, "Latest score per source and dimension"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Source"), h("th", { scope: "col" }, "Score"),
          dimensions.map((d) => h("th", { scope: "col" }, d)))),
        h("tbody", {}, overview.sources.map((src) => h("tr", {},
          h("th", { scope: "row" }, src.source),
          h("td", {}, badge(src.status), " ", number(src.score)),
          dimensions.map((d) => {
            const cell = src.dimensions.find((x) => x.dimension === d);
            return h("td", {}, cell ? h("a", {
              class: `cell s-${cell.status}`, href: `#/quality/${encodeURIComponent(src.source)}/${encodeURIComponent(d)}`,
              "aria-label": `${src.source} ${d}: ${number(cell.score)} (${cell.status})`,
            }, number(cell.score)) : "—");
          })))))));
  }, ["data_quality"]);
}

async function qualityCheckPage(source, dimension) {
  await mount(`${source} · ${dimension}`, h("p", {}, h("a", { href: "#/quality" }, "← Scorecard")), async () => {
    const page = await api("/api/v1/quality-indicators", { query: { source, dimension, limit: 30 } });
    const [latest] = page.items;
    if (!latest) return h("p", { class: "muted" }, "No measurements.");
    return [
      h("section", { class: "card" },
        h("h2", {}, `Latest: ${number(latest.score)} `, badge(latest.status)),
        h("p", { class: "muted" }, `${latest.check_name ?? "pushed"} on ${latest.dataset}, ${when(latest.measured_at)}`),
        h("h2", {}, "Issues"),
        latest.issues.length ? h("ul", { id: "issues" }, latest.issues.map((i) => h("li", {},
          Object.entries(i).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`).join("; "))))
          : h("p", { class: "muted" }, "None")),
      h("section", { class: "card" }, h("h2", {}, "Recent history"),
        chart(page.items.map((i) => ({ at: i.measured_at, value: i.score })).reverse(), latest.warning_level, latest.critical_level),
        h("div", { class: "scroll" }, h("table", {}, h("tbody", {}, page.items.map((i) =>
          h("tr", {}, h("td", {}, when(i.measured_at)), h("td", {}, number(i.score)), h("td", {}, badge(i.status)))))))),
    ];
  }, ["data_quality"]);
}

// ------------------------------------------------------------------ Services
function chart(points, warning, critical) {
  const width = 300, height = 70, pad = 4;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", role: "img", "aria-label": `history of ${points.length} values` });
  if (points.length < 2) return svg;
  const values = points.map((p) => p.value).concat([warning, critical].filter((v) => v !== null && v !== undefined));
  const min = Math.min(...values), max = Math.max(...values);
  const span = max - min || 1;
  const y = (v) => height - pad - ((v - min) / span) * (height - 2 * pad);
  const x = (i) => pad + (i / (points.length - 1)) * (width - 2 * pad);
  svg.append(s("polyline", { class: "line", points: points.map((p, i) => `${x(i).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ") }));
  for (const [level, cls] of [[warning, "warn"], [critical, "crit"]]) {
    if (level !== null && level !== undefined) svg.append(s("line", { class: cls, x1: pad, x2: width - pad, y1: y(level), y2: y(level) }));
  }
  return svg;
}

async function servicesPage(parts) {
  const only = parts[1];
  await mount(only ? `Service ${only}` : "Services", only ? h("p", {}, h("a", { href: "#/services" }, "← All services")) : null, async () => {
    const [overview, thresholds] = await Promise.all([api("/api/v1/overview"), api("/api/v1/thresholds")]);
    const services = overview.services.filter((svc) => !only || svc.service === only);
    const cards = await Promise.all(services.map(async (svc) => {
      const metrics = Object.entries(svc.metrics);
      const histories = await Promise.all(metrics.map(([m]) =>
        api("/api/v1/health-metrics", { query: { service: svc.service, metric_type: m, limit: only ? 120 : 40 } })));
      return h("section", { class: "card", "aria-labelledby": `svc-${svc.service}` },
        h("h2", { id: `svc-${svc.service}` }, svc.service, " ", badge(svc.status)),
        metrics.map(([m, status], i) => {
          const rule = thresholds.items.find((t) => t.service === svc.service && t.metric_type === m);
          const items = histories[i].items;
          return h("div", { class: "metric" },
            h("h3", {}, m, " ", badge(status), " ",
              h("span", { class: "muted" }, items[0] ? `${number(items[0].value)} ${items[0].unit ?? ""}` : "")),
            chart(items.map((x) => ({ at: x.recorded_at, value: x.value })).reverse(), rule?.warning, rule?.critical),
            rule ? h("p", { class: "muted" }, `warning ${number(rule.warning)}, critical ${number(rule.critical)} (${rule.direction}, for ${rule.for}; ${rule.origin})`) : null,
            can("admin") ? thresholdForm(svc.service, m, rule) : null);
        }));
    }));
    return h("div", { class: "grid" }, cards);
  }, ["health_metrics"]);
}

function thresholdForm(service, metric, rule) {
  const warning = h("input", { name: "warning", type: "number", step: "any", value: rule?.warning ?? "", size: 6 });
  const critical = h("input", { name: "critical", type: "number", step: "any", value: rule?.critical ?? "", size: 6 });
  const direction = h("select", { name: "direction" }, ["above", "below"].map((d) => h("option", { value: d, selected: rule?.direction === d }, d)));
  const form = h("form", {
    class: "filters",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const body = {
        warning: warning.value === "" ? null : Number(warning.value),
        critical: critical.value === "" ? null : Number(critical.value),
        direction: direction.value, for: rule?.for ?? 1,
      };
      if (rule?.version) body.expect_version = rule.version;
      try {
        await api(`/api/v1/thresholds/${encodeURIComponent(service)}/${encodeURIComponent(metric)}`, { method: "PUT", body });
        toast(`Threshold of ${service}/${metric} saved`);
        await state.refresh?.run({ force: true });
      } catch (err) { toast(err.message); }
    },
  }, h("label", {}, "Warning", warning), h("label", {}, "Critical", critical), h("label", {}, "Direction", direction),
  h("button", { type: "submit", class: "secondary" }, "Save threshold"));
  return h("details", {}, h("summary", {}, "Edit threshold"), form);
}

// ------------------------------------------------------------------ Saved views
function saveViewForm(page, filters) {
  const name = h("input", { name: "view", id: "view-name", size: 12, pattern: "[A-Za-z0-9_.\\-][A-Za-z0-9 _.\\-]*", maxlength: 100 });
  const shared = h("input", { type: "checkbox", name: "shared" });
  const save = async () => {
    if (!name.value.trim()) { toast("Name the view"); name.focus(); return; }
    try {
      await api(`/api/v1/dashboards/${encodeURIComponent(name.value.trim())}`, {
        method: "PUT", body: { filters, layout: { page }, shared: shared.checked },
      });
      toast(`View “${name.value.trim()}” saved`);
    } catch (err) { toast(err.message); }
  };
  return h("fieldset", { class: "filters" }, h("legend", { class: "muted" }, "Save these filters as a view"),
    h("label", { for: "view-name" }, "View name", name),
    h("label", { class: "inline" }, shared, "shared"),
    h("button", { type: "button", class: "secondary", id: "save-view", onclick: save }, "Save view"));
}

async function viewsPage() {
  await mount("Saved views", null, async () => {
    const views = await api("/api/v1/dashboards");
    if (!views.items.length) return h("p", { class: "muted", id: "no-views" }, "No saved views yet: save one from the Incidents page.");
    return h("div", { class: "scroll" }, h("table", { id: "views" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Owner"), h("th", { scope: "col" }, "Shared"), h("th", { scope: "col" }, ""))),
      h("tbody", {}, views.items.map((v) => h("tr", {},
        h("td", {}, h("a", { href: `#/${v.layout.page === "incidents" || !v.layout.page ? "incidents" : v.layout.page}?${filtersToHash(v.filters)}` }, v.name)),
        h("td", {}, v.owner), h("td", {}, v.shared ? "yes" : "no"),
        h("td", {}, v.owner === state.session.name || can("admin") ? h("button", {
          type: "button", class: "secondary", "aria-label": `Delete view ${v.name}`,
          onclick: async () => {
            try {
              await api(`/api/v1/dashboards/${encodeURIComponent(v.name)}`, { method: "DELETE", query: { owner: v.owner } });
              await state.refresh?.run({ force: true });
            } catch (err) { toast(err.message); }
          },
        }, "Delete") : null))))));
  }, []);
}

// ------------------------------------------------------------------ Grafana
async function grafanaPage() {
  const links = state.session.grafana;
  const configured = links.some((l) => l.url);
  await mount("Grafana", configured ? null : h("p", { class: "muted" },
    "Set console.grafana_url in the configuration to link these dashboards."), async () =>
    h("ul", { id: "grafana" }, links.map((l) => h("li", {},
      l.url ? h("a", { href: l.url, rel: "noopener noreferrer", target: "_blank" }, l.title) : l.title,
      h("span", { class: "muted" }, ` (uid ${l.uid})`)))), []);
}

// ------------------------------------------------------------------ boot
async function boot() {
  $("#signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => { route().then(focusMain); });
  const auth = document.querySelector('meta[name="console-auth"]').content;
  if (auth === "signed-out") return renderSignIn();
  try {
    state.session = await api("/api/v1/session");
  } catch (err) {
    return renderSignIn(err.status === 401 ? "Your session has ended or is not valid. Sign in again." : err.message);
  }
  start();
}

boot();
