// Webhooks: the project's configuration (events URL, which events, the authorize URL),
// its signing secret (shown once, when it is made or rotated; afterwards by its hint),
// and the delivery log, newest first, refreshed every 2 s (docs/webhooks.md).
// Every /v1/webhooks route needs a project token with every permission ("all").

import { api } from "../api.js";
import { busy, confirmDialog, copyButton, field, h, notify, poll, setText, timeEl, uid } from "../ui.js";

const REFRESH_MS = 2000;
const LIMITS = [20, 50, 100];

export const EVENTS = [
  ["token.online", "A token's first connection identified."],
  ["token.offline", "A token's last connection closed."],
  ["channel.occupied", "A channel got its first subscriber."],
  ["channel.vacated", "A channel's last subscriber left."],
  ["message.published", "Every message published to a channel: as frequent as your messages, so off unless asked."],
];
const DEFAULT_EVENTS = ["token.online", "token.offline", "channel.occupied", "channel.vacated"];

const STATUS_WORDS = {
  delivered: "delivered",
  retrying: "retrying",
  failed: "failed",
  granted: "granted",
  refused: "refused",
};

export function renderWebhooks(main) {
  let config = null; // the configuration as the server last showed it, or null
  let denied = false;
  let stopPoll = null;
  let logSeq = 0;

  const pageError = h("p", { class: "form-error", role: "alert", id: "webhooks-error" });
  const permission = h("div", { class: "banner", id: "webhooks-permission", role: "alert", hidden: true });

  // The configuration form.
  const urlInput = h("input", {
    id: "webhook-url",
    type: "url",
    inputmode: "url",
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    maxlength: 2048,
    placeholder: "https://example.com/switchboard/events",
  });
  const authorizeInput = h("input", {
    id: "webhook-authorize-url",
    type: "url",
    inputmode: "url",
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    maxlength: 2048,
    placeholder: "https://example.com/switchboard/authorize",
  });
  const boxes = new Map(); // event name -> checkbox
  const eventsHint = uid("hint");
  const events = h(
    "fieldset",
    { class: "checks", id: "webhook-events", "aria-describedby": eventsHint },
    h("legend", { text: "Events to send" }),
    h("p", { class: "hint", id: eventsHint, text: "Sent to the events URL. Without a choice the first four are sent." }),
    EVENTS.map(([name, about]) => {
      const box = h("input", { type: "checkbox", id: `webhook-event-${name.replace(".", "-")}`, value: name });
      const aboutId = `${box.id}-about`;
      box.setAttribute("aria-describedby", aboutId);
      boxes.set(name, box);
      return h(
        "div",
        { class: "check" },
        box,
        h("label", { for: box.id }, h("code", { text: name })),
        h("span", { class: "hint", id: aboutId, text: about }),
      );
    }),
  );

  const state = h("p", { class: "meta", id: "webhook-state", role: "status" });
  const hint = h("code", { id: "webhook-secret-hint" });
  const rotateButton = h("button", { type: "button", class: "small", text: "Rotate secret…" });
  const secretRow = h(
    "p",
    { class: "secret-row", id: "webhook-secret-row", hidden: true },
    "Signing secret: ",
    hint,
    " ",
    rotateButton,
  );
  const secretBox = h("div", {
    id: "webhook-secret",
    class: "new-token",
    role: "region",
    tabindex: "-1",
    "aria-labelledby": "webhook-secret-title",
    hidden: true,
  });

  const saveButton = h("button", { type: "submit", class: "primary", text: "Save" });
  const deleteButton = h("button", { type: "button", class: "danger", text: "Delete webhooks…", hidden: true });
  const formError = h("p", { class: "form-error", role: "alert", id: "webhook-form-error" });
  const form = h(
    "form",
    { id: "webhook-form", class: "card", "aria-labelledby": "webhook-form-title", novalidate: true },
    h("h2", { id: "webhook-form-title", text: "Configuration" }),
    state,
    secretRow,
    secretBox,
    field(
      "Events URL",
      urlInput,
      "Where the events below are POSTed, each signed with the project's secret. Empty: no events are sent.",
    ),
    events,
    field(
      "Authorize URL (optional)",
      authorizeInput,
      "Asked when a token subscribes to a private channel it was not granted: its answer grants or refuses.",
    ),
    formError,
    h("div", { class: "actions" }, deleteButton, saveButton),
  );

  // The delivery log.
  const limit = h(
    "select",
    { id: "delivery-limit" },
    LIMITS.map((n) => h("option", { value: String(n), text: `Last ${n}`, selected: n === 50 })),
  );
  const logCount = h("span", { class: "count" });
  const logSummary = h("p", { class: "hint", id: "delivery-summary", "aria-live": "polite" });
  const logError = h("p", { class: "form-error", role: "alert" });
  const tbody = h("tbody", { id: "delivery-rows" });
  const rows = new Map(); // a delivery's key -> its row
  const table = h(
    "table",
    { class: "list", id: "delivery-table", hidden: true },
    h("caption", { class: "visually-hidden", text: "Webhook deliveries, newest first" }),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Time", "Event", "Attempt", "Status", "Response", "Duration", "URL"].map((t) => h("th", { scope: "col", text: t })),
      ),
    ),
    tbody,
  );
  const empty = h("p", { class: "empty", text: "No deliveries yet. They appear here as events are sent." });
  const log = h(
    "section",
    { class: "card", id: "webhook-log", "aria-labelledby": "delivery-title" },
    h("div", { class: "section-head" }, h("h2", { id: "delivery-title" }, "Delivery log ", logCount), field("Show", limit)),
    logSummary,
    logError,
    h("div", { class: "table-wrap" }, table),
    empty,
  );

  main.append(
    h("h1", { text: "Webhooks" }),
    h(
      "p",
      { class: "lede", text: "Switchboard tells your server what happens — tokens going online and offline, channels occupied and vacated, messages — with signed HTTP POSTs, retried when they fail." },
    ),
    pageError,
    permission,
    form,
    log,
  );

  function showDenied(err) {
    if (denied) return;
    denied = true;
    if (stopPoll) stopPoll();
    form.hidden = true;
    log.hidden = true;
    permission.replaceChildren(
      h("p", { class: "banner-title", text: "This project token cannot manage webhooks." }),
      h("p", {}, "Webhooks need a project token with every permission (", h("code", { text: "all" }), "). Sign in with a full-access project token to see and change them."),
      h("p", { class: "hint" }, "The server said: ", err.message),
    );
    permission.hidden = false;
  }

  function showConfig(next) {
    config = next;
    const configured = config !== null;
    urlInput.value = configured && config.url ? config.url : "";
    authorizeInput.value = configured && config.authorize_url ? config.authorize_url : "";
    const chosen = configured && config.url ? config.events : DEFAULT_EVENTS;
    for (const [name, box] of boxes) box.checked = chosen.includes(name);
    deleteButton.hidden = !configured;
    secretRow.hidden = !configured;
    if (configured) {
      setText(hint, config.secret_hint);
      state.replaceChildren("Configured · created ", timeEl(config.created_at), " · updated ", timeEl(config.updated_at));
    } else {
      state.replaceChildren("Not configured: no webhooks are sent.");
    }
  }

  function showSecret(secret, how) {
    const done = h("button", { type: "button", class: "small", text: "I have copied it" });
    secretBox.replaceChildren(
      h("p", { class: "new-token-title", id: "webhook-secret-title", text: how }),
      h("div", { class: "copy-row" }, h("code", { id: "webhook-secret-value", class: "secret", text: secret }), copyButton(() => secret, "signing secret")),
      h(
        "p",
        { class: "hint", id: "webhook-secret-note" },
        h("strong", { text: "Copy it now: it is not shown again." }),
        " Your receiver checks each request's ",
        h("code", { text: "X-Switchboard-Signature" }),
        " header with it. Afterwards only its hint is shown; a lost secret can be rotated.",
      ),
      h("div", { class: "actions" }, done),
    );
    done.addEventListener("click", () => {
      secretBox.replaceChildren();
      secretBox.hidden = true;
      saveButton.focus();
    });
    secretBox.hidden = false;
    secretBox.focus();
  }

  function clearInvalid() {
    formError.textContent = "";
    for (const el of [urlInput, authorizeInput, events]) el.removeAttribute("aria-invalid");
  }

  /** The server's 400 message inline; the field it names is marked invalid. */
  function showFormError(err) {
    formError.textContent = err.message;
    if (err.status !== 400) return;
    const message = err.message.toLowerCase();
    let target = null;
    if (message.startsWith("give a url")) target = urlInput; // neither URL given
    else if (message.startsWith("authorize_url")) target = authorizeInput;
    else if (message.startsWith("url") || message.includes("$.url")) target = urlInput;
    else if (message.includes("event")) target = events;
    if (target) target.setAttribute("aria-invalid", "true");
    (target === events ? boxes.values().next().value : target || urlInput).focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearInvalid();
    const body = {
      url: urlInput.value.trim() || null,
      events: [...boxes].filter(([, box]) => box.checked).map(([name]) => name),
      authorize_url: authorizeInput.value.trim() || null,
    };
    busy(saveButton, async () => {
      try {
        const data = await api("PUT", "/webhooks", body);
        showConfig(data.webhooks);
        notify("Webhooks saved.");
        if (data.secret) showSecret(data.secret, "Signing secret");
        await refreshLog();
      } catch (err) {
        if (err.code === "missing_permission") showDenied(err);
        else if (err.status !== 401) showFormError(err);
      }
    });
  });

  deleteButton.addEventListener("click", async () => {
    const sure = await confirmDialog({
      title: "Delete the webhooks?",
      message: "No more events are sent and the authorize URL is no longer asked; the secret is forgotten. The delivery log stays.",
      confirmLabel: "Delete webhooks",
      danger: true,
    });
    if (!sure) return;
    await busy(deleteButton, async () => {
      try {
        await api("DELETE", "/webhooks");
        clearInvalid();
        secretBox.replaceChildren();
        secretBox.hidden = true;
        showConfig(null);
        notify("Webhooks deleted.");
        urlInput.focus();
      } catch (err) {
        if (err.code === "missing_permission") showDenied(err);
        else if (err.status !== 401) formError.textContent = `Could not delete the webhooks: ${err.message}`;
      }
    });
  });

  rotateButton.addEventListener("click", async () => {
    const sure = await confirmDialog({
      title: "Rotate the signing secret?",
      message: "A new secret is made and the old one stops signing at once: requests to your receiver fail its check until it has the new one.",
      confirmLabel: "Rotate secret",
      danger: true,
    });
    if (!sure) return;
    await busy(rotateButton, async () => {
      try {
        const { secret } = await api("POST", "/webhooks/secret");
        const { webhooks } = await api("GET", "/webhooks");
        showConfig(webhooks);
        notify("Signing secret rotated.");
        showSecret(secret, "New signing secret");
      } catch (err) {
        if (err.code === "missing_permission") showDenied(err);
        else if (err.status !== 401) formError.textContent = `Could not rotate the secret: ${err.message}`;
      }
    });
  });

  function rowKey(d) {
    return `${d.event_id}|${d.type}|${d.attempt}|${d.status}|${d.at}`;
  }

  function makeRow(d) {
    const response = [];
    if (d.response_status !== null && d.response_status !== undefined) response.push(h("span", { class: "num", text: String(d.response_status) }));
    if (d.error && d.error !== `HTTP ${d.response_status}`) {
      if (response.length) response.push(" ");
      response.push(h("span", { class: "delivery-error", text: d.error }));
    }
    if (!response.length) response.push(h("span", { class: "muted", text: "—" }));
    return h(
      "tr",
      { dataset: { status: d.status, event: d.event_id, type: d.type } },
      h("td", { "data-label": "Time" }, timeEl(d.at)),
      h("td", { "data-label": "Event" }, h("code", { text: d.type }), h("br"), h("code", { class: "token-id muted", title: "Event ID", text: d.event_id })),
      h("td", { "data-label": "Attempt", class: "num", text: String(d.attempt) }),
      h("td", { "data-label": "Status" }, h("span", { class: `status status-${d.status}`, text: STATUS_WORDS[d.status] || d.status })),
      h("td", { "data-label": "Response" }, response),
      h("td", { "data-label": "Duration", class: "num", text: `${d.duration_ms} ms` }),
      h("td", { "data-label": "URL" }, d.url ? h("code", { class: "delivery-url", text: d.url }) : h("span", { class: "muted", text: "—" })),
    );
  }

  function renderLog(deliveries) {
    const seen = new Set();
    let previous = null;
    for (const d of deliveries) {
      const key = rowKey(d);
      if (seen.has(key)) continue;
      seen.add(key);
      let row = rows.get(key);
      if (!row) {
        row = makeRow(d);
        rows.set(key, row);
      }
      // Keep order without moving rows already in place.
      const want = previous ? previous.nextSibling : tbody.firstChild;
      if (want !== row) tbody.insertBefore(row, want);
      previous = row;
    }
    for (const [key, row] of rows) {
      if (!seen.has(key)) {
        row.remove();
        rows.delete(key);
      }
    }
    table.hidden = deliveries.length === 0;
    empty.hidden = deliveries.length > 0;
    setText(logCount, `(${deliveries.length})`);
    const failed = deliveries.filter((d) => d.status === "failed").length;
    setText(
      logSummary,
      deliveries.length === 0
        ? "Newest first; refreshed every 2 seconds."
        : `${deliveries.length} ${deliveries.length === 1 ? "attempt" : "attempts"}, newest first${failed ? `; ${failed} failed` : ""}. Refreshed every 2 seconds.`,
    );
  }

  async function refreshLog() {
    if (denied) return;
    const seq = ++logSeq;
    const { deliveries } = await api("GET", `/webhooks/deliveries?limit=${encodeURIComponent(limit.value)}`);
    if (seq !== logSeq || denied) return; // a newer refresh is on its way
    logError.textContent = "";
    renderLog(deliveries);
  }

  function logFailed(err) {
    if (err.code === "missing_permission") showDenied(err);
    else if (err.status !== 401) logError.textContent = `Could not refresh the log: ${err.message}`;
  }

  limit.addEventListener("change", () => refreshLog().catch(logFailed));

  let destroyed = false;
  showConfig(null);
  setText(state, "Loading…");
  api("GET", "/webhooks")
    .then(({ webhooks }) => {
      if (destroyed) return;
      showConfig(webhooks);
      stopPoll = poll(refreshLog, REFRESH_MS, logFailed);
    })
    .catch((err) => {
      if (destroyed) return;
      if (err.code === "missing_permission") showDenied(err);
      else if (err.status !== 401) pageError.textContent = `Could not load the webhooks: ${err.message}`;
    });

  return {
    destroy() {
      destroyed = true;
      if (stopPoll) stopPoll();
      const dialog = document.querySelector("dialog.confirm");
      if (dialog) dialog.close();
    },
  };
}
