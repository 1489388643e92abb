// Overview: the project's counts and its message rate over the last five minutes,
// from GET /v1/stats every two seconds.

import { api } from "../api.js";
import { copyButton, h, poll, setText } from "../ui.js";

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function niceMax(value) {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (value <= step * magnitude) return step * magnitude;
  }
  return 10 * magnitude;
}

function formatRate(value) {
  if (value === 0) return "0";
  if (value < 10) return value.toFixed(1);
  return Math.round(value).toLocaleString();
}

/** A small line chart of messages per second; the numbers are also given as text. */
function rateChart() {
  const width = 600;
  const height = 160;
  const area = svg("path", { class: "chart-area" });
  const line = svg("polyline", { class: "chart-line", fill: "none", "vector-effect": "non-scaling-stroke" });
  const grid = svg("g", { class: "chart-grid" });
  for (const y of [0, 0.5, 1]) {
    grid.append(svg("line", { x1: 0, x2: width, y1: y * (height - 1) + 0.5, y2: y * (height - 1) + 0.5, "vector-effect": "non-scaling-stroke" }));
  }
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "chart", "aria-hidden": "true" });
  chart.append(grid, area, line);

  const top = h("span", { class: "axis-top" });
  const summary = h("p", { id: "rate-summary", class: "chart-summary" });
  const element = h(
    "figure",
    { class: "chart-figure", "aria-labelledby": "rate-title", "aria-describedby": "rate-summary" },
    h("div", { class: "chart-box" }, top, chart),
    h("div", { class: "axis-x", "aria-hidden": "true" }, h("span", { text: "5 min ago" }), h("span", { text: "now" })),
    summary,
  );

  function update(series, perSecond) {
    const max = niceMax(Math.max(0, ...series));
    const n = series.length;
    const points = series.map((v, i) => {
      const x = n > 1 ? (i / (n - 1)) * width : 0;
      const y = height - (v / max) * (height - 4) - 2;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    line.setAttribute("points", points.join(" "));
    area.setAttribute("d", `M0,${height} L${points.join(" L")} L${width},${height} Z`);
    setText(top, `${formatRate(max)}/s`);
    const peak = Math.max(0, ...series);
    setText(summary, `Now ${formatRate(perSecond)} messages per second (average of the last 10 s); peak ${formatRate(peak)} per second in the last 5 minutes.`);
  }

  return { element, update };
}

export function renderOverview(main, { project }) {
  const cards = {};
  function card(key, label, hint) {
    const value = h("dd", { class: "stat-value", id: `stat-${key}`, text: "…" });
    cards[key] = value;
    return h("div", { class: "stat" }, h("dt", { text: label }), value, hint ? h("dd", { class: "hint", text: hint }) : null);
  }

  const chart = rateChart();
  const scopeNote = h("p", { class: "hint", id: "stats-scope" });
  const error = h("p", { class: "form-error", role: "alert" });
  const base = location.origin;
  const wsUrl = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`;
  // The signed-in project token's permissions (docs/permissions.md), from /v1/stats.
  const permissions = h("dd", { id: "token-permissions", text: "…" });

  const details = h(
    "dl",
    { class: "details" },
    h("dt", { text: "Project ID" }),
    h("dd", {}, h("code", { id: "project-id", text: project.id }), " ", copyButton(() => project.id, "project ID")),
    h("dt", { text: "REST API" }),
    h("dd", {}, h("code", { text: `${base}/v1` }), " ", copyButton(() => `${base}/v1`, "REST API URL")),
    h("dt", { text: "WebSocket" }),
    h("dd", {}, h("code", { text: wsUrl }), " ", copyButton(() => wsUrl, "WebSocket URL")),
    h("dt", { text: "This token may" }),
    permissions,
  );

  main.append(
    h("h1", { text: "Overview" }),
    h("p", { class: "lede" }, `Project “${project.name}”.`),
    error,
    h(
      "section",
      { "aria-labelledby": "counts-title" },
      h("h2", { id: "counts-title", class: "visually-hidden", text: "Counts" }),
      h(
        "dl",
        { class: "stats" },
        card("connections", "Connections", "clients connected now"),
        card("tokens_online", "Tokens online"),
        card("tokens", "Tokens"),
        card("channels", "Channels"),
        card("rate", "Messages / s", "last 10 s"),
      ),
      scopeNote,
    ),
    h("section", { class: "card" }, h("h2", { id: "rate-title", text: "Messages per second, last 5 minutes" }), chart.element),
    h(
      "section",
      { class: "card" },
      h("h2", { text: "Connect your apps" }),
      h("p", { class: "hint", text: "Your backend uses the REST API with a project token; browsers and apps connect to the WebSocket with the project ID and a token made on the Tokens page." }),
      details,
    ),
  );

  const stop = poll(
    async () => {
      const stats = await api("GET", "/stats");
      error.textContent = "";
      setText(cards.connections, stats.connections.toLocaleString());
      setText(cards.tokens_online, stats.tokens_online.toLocaleString());
      setText(cards.tokens, stats.tokens.toLocaleString());
      setText(cards.channels, stats.channels.toLocaleString());
      setText(cards.rate, formatRate(stats.messages.per_second));
      setText(permissions, (stats.permissions || []).join(", ") || "nothing");
      chart.update(stats.messages.series, stats.messages.per_second);
      setText(
        scopeNote,
        stats.cluster
          ? "This server is one node of a cluster: connections and online tokens are this node's; channels, tokens and messages are the whole cluster's."
          : `Switchboard ${stats.version}. Connections exclude consoles (${stats.console_connections} open).`,
      );
    },
    2000,
    (err) => {
      if (err.status !== 401) error.textContent = `Could not refresh the numbers: ${err.message}`;
    },
  );

  return { destroy: stop };
}
