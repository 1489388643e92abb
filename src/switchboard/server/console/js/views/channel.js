// One channel: live state (STATE_UPDATE), set and patch it, publish a test message, a
// live log of its messages, and its subscribed tokens with grant and remove.

import { api, seg } from "../api.js";
import {
  busy,
  clock,
  confirmDialog,
  copyButton,
  field,
  h,
  jsonEditor,
  notify,
  onlineBadge,
  poll,
  pretty,
  setText,
  timeEl,
  updateOnline,
} from "../ui.js";

const LOG_LIMIT = 200;
const REFRESH_MS = 2000;

export function renderChannel(main, { live, navigate }, channelId) {
  const stops = [];
  let channel = null;
  let deleted = false;

  const heading = h("h1", {}, "Channel ", h("code", { text: channelId }));
  const typeEl = h("span", { class: "type", id: "channel-type-badge" });
  const created = h("span");
  const onlineCount = h("strong", { id: "channel-online", text: "…" });
  const liveWord = h("span", { id: "channel-live", class: "live-word", text: "connecting…" });
  const pageError = h("p", { class: "form-error", role: "alert" });

  const deleteButton = h("button", { type: "button", class: "danger small", text: "Delete channel…" });

  // State, as it is now.
  const stateView = h("pre", { id: "channel-state-view", class: "state", tabindex: "0", "aria-label": "Current state (JSON)" });
  const stateStamp = h("p", { class: "hint", id: "channel-state-updated", role: "status" });

  // Change the state.
  const editor = jsonEditor({ id: "channel-state-editor", label: "New state or keys to merge (JSON object)", rows: 6, value: {} });
  const patchButton = h("button", { type: "submit", value: "patch", class: "primary", text: "Patch (merge keys)" });
  const setButton = h("button", { type: "submit", value: "set", text: "Set (replace all)" });
  const loadButton = h("button", { type: "button", class: "link small", text: "Copy the current state into the editor" });
  const stateError = h("p", { class: "form-error", role: "alert", id: "channel-state-error" });
  const stateForm = h(
    "form",
    { id: "channel-state-form", class: "card", novalidate: true, "aria-labelledby": "state-edit-title" },
    h("h2", { id: "state-edit-title", text: "Change the state" }),
    editor.element,
    loadButton,
    stateError,
    h("div", { class: "actions" }, setButton, patchButton),
  );
  loadButton.addEventListener("click", () => {
    if (channel) editor.setValue(channel.state);
    editor.textarea.focus();
  });
  stateForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const mode = event.submitter && event.submitter.value === "set" ? "set" : "patch";
    const button = mode === "set" ? setButton : patchButton;
    stateError.textContent = "";
    const result = editor.validate();
    if (!result.ok) return; // refused inline: the editor says why
    busy(button, async () => {
      try {
        await api(mode === "set" ? "PUT" : "PATCH", `/channels/${seg(channelId)}/state`, result.text);
        notify(mode === "set" ? "State set." : "State patched.");
      } catch (err) {
        if (err.status !== 401) stateError.textContent = err.message;
      }
    });
  });

  // Publish.
  const eventInput = h("input", { id: "message-event", type: "text", value: "TEST", maxlength: 128, required: true, autocomplete: "off" });
  const dataEditor = jsonEditor({ id: "message-data", label: "Data (JSON)", mode: "any", rows: 3, value: { hello: "world" } });
  const publishButton = h("button", { type: "submit", class: "primary", text: "Publish" });
  const publishError = h("p", { class: "form-error", role: "alert" });
  const publishForm = h(
    "form",
    { id: "message-form", class: "card", novalidate: true, "aria-labelledby": "publish-title" },
    h("h2", { id: "publish-title", text: "Publish a test message" }),
    field("Event name", eventInput),
    dataEditor.element,
    publishError,
    h("div", { class: "actions" }, publishButton),
  );
  publishForm.addEventListener("submit", (event) => {
    event.preventDefault();
    publishError.textContent = "";
    const name = eventInput.value.trim();
    if (!name) {
      publishError.textContent = "Enter an event name.";
      eventInput.focus();
      return;
    }
    const data = dataEditor.validate();
    if (!data.ok) return;
    busy(publishButton, async () => {
      try {
        await api("POST", `/channels/${seg(channelId)}/messages`, `{"e":${JSON.stringify(name)},"d":${data.text}}`);
      } catch (err) {
        if (err.status !== 401) publishError.textContent = err.message;
      }
    });
  });

  // Live log.
  const log = h("ol", { id: "message-log", class: "log", role: "log", "aria-label": "Messages on this channel, newest first" });
  const logEmpty = h("p", { class: "empty", text: "No messages yet. They appear here as they are published." });
  const logCount = h("span", { class: "count" });
  let received = 0;
  const clearLog = h("button", {
    type: "button",
    class: "small",
    text: "Clear",
    onclick: () => {
      log.replaceChildren();
      received = 0;
      setText(logCount, "");
      logEmpty.hidden = false;
    },
  });

  function logEntry(kind, event, data) {
    received += 1;
    setText(logCount, `(${received})`);
    logEmpty.hidden = true;
    const item = h(
      "li",
      { class: `log-${kind}` },
      h("div", { class: "log-head" }, h("time", { text: clock() }), " ", h("strong", { class: "log-event", text: event })),
      data === undefined ? null : h("pre", { class: "log-data", text: pretty(data) }),
    );
    log.prepend(item);
    while (log.children.length > LOG_LIMIT) log.lastElementChild.remove();
  }

  // Subscribed tokens.
  const grantInput = h("input", { id: "grant-token", type: "text", list: "grant-token-options", autocomplete: "off", spellcheck: "false", placeholder: "leap_token_…" });
  const grantOptions = h("datalist", { id: "grant-token-options" });
  const grantButton = h("button", { type: "submit", class: "primary", text: "Grant" });
  const grantError = h("p", { class: "form-error", role: "alert" });
  const grantForm = h(
    "form",
    { id: "grant-form", class: "inline-form", novalidate: true, "aria-label": "Grant a token" },
    field("Token to grant", grantInput, "The token may then subscribe (private channels need this); its live connections get AVAILABLE at once."),
    h("div", { class: "actions" }, grantButton),
  );
  const subsBody = h("tbody", { id: "subscriber-rows" });
  const subsEmpty = h("p", { class: "empty", text: "No token is subscribed." });
  const subsTable = h(
    "table",
    { class: "list", id: "subscriber-table" },
    h("caption", { class: "visually-hidden", text: "Tokens subscribed to this channel" }),
    h("thead", {}, h("tr", {}, ["Token", "Online", "Actions"].map((t) => h("th", { scope: "col", text: t })))),
    subsBody,
  );
  const subRows = new Map();

  grantForm.addEventListener("submit", (event) => {
    event.preventDefault();
    grantError.textContent = "";
    const token = grantInput.value.trim();
    if (!token) {
      grantError.textContent = "Enter a token to grant.";
      grantInput.focus();
      return;
    }
    busy(grantButton, async () => {
      try {
        await api("PUT", `/channels/${seg(channelId)}/subscribers/${seg(token)}`);
        notify("Token granted.");
        grantInput.value = "";
        await refreshSubscribers();
      } catch (err) {
        if (err.status !== 401) grantError.textContent = err.message;
      }
    });
  });

  function renderSubscribers(tokens) {
    const seen = new Set();
    let previous = null;
    for (const token of tokens) {
      seen.add(token.id);
      let entry = subRows.get(token.id);
      if (!entry) {
        const badge = onlineBadge(token.is_online);
        const remove = h("button", {
          type: "button",
          class: "small danger",
          text: "Remove",
          "aria-label": `Remove token ${token.id} from the channel`,
        });
        remove.addEventListener("click", () => removeSubscriber(token.id, remove));
        entry = {
          badge,
          row: h(
            "tr",
            { dataset: { token: token.id } },
            h("td", { "data-label": "Token" }, h("code", { class: "token-id", text: token.id })),
            h("td", { "data-label": "Online" }, badge),
            h("td", { "data-label": "Actions", class: "row-actions" }, remove),
          ),
        };
        subRows.set(token.id, entry);
      }
      updateOnline(entry.badge, token.is_online);
      const want = previous ? previous.nextSibling : subsBody.firstChild;
      if (want !== entry.row) subsBody.insertBefore(entry.row, want);
      previous = entry.row;
    }
    for (const [id, entry] of subRows) {
      if (!seen.has(id)) {
        entry.row.remove();
        subRows.delete(id);
      }
    }
    subsTable.hidden = tokens.length === 0;
    subsEmpty.hidden = tokens.length > 0;
  }

  async function removeSubscriber(token, button) {
    const sure = await confirmDialog({
      title: "Remove this token from the channel?",
      message: h("span", {}, "Token ", h("code", { text: token }), " loses its subscription; its live connections get UNAVAILABLE."),
      confirmLabel: "Remove",
      danger: true,
    });
    if (!sure) return;
    await busy(button, async () => {
      try {
        await api("DELETE", `/channels/${seg(channelId)}/subscribers/${seg(token)}`);
        notify("Token removed from the channel.");
        await refreshSubscribers();
      } catch (err) {
        if (err.status !== 401) notify(`Could not remove the token: ${err.message}`, "error");
      }
    });
  }

  async function refreshSubscribers() {
    const { tokens } = await api("GET", `/channels/${seg(channelId)}/tokens`);
    renderSubscribers(tokens);
  }

  async function loadTokenOptions() {
    try {
      const { tokens } = await api("GET", "/channels/tokens");
      grantOptions.replaceChildren(...tokens.slice(0, 500).map((t) => h("option", { value: t.id })));
    } catch {
      // suggestions only
    }
  }

  deleteButton.addEventListener("click", async () => {
    const sure = await confirmDialog({
      title: "Delete this channel?",
      message: h("span", {}, "Channel ", h("code", { text: channelId }), " is deleted with its state and subscriptions; subscribers get UNAVAILABLE. This cannot be undone."),
      confirmLabel: "Delete channel",
      danger: true,
    });
    if (!sure) return;
    await busy(deleteButton, async () => {
      try {
        await api("DELETE", `/channels/${seg(channelId)}`);
        notify(`Channel ${channelId} deleted.`);
        navigate("#/channels");
      } catch (err) {
        if (err.status !== 401) notify(`Could not delete the channel: ${err.message}`, "error");
      }
    });
  });

  function showState(state, how) {
    if (channel) channel.state = state;
    setText(stateView, pretty(state));
    setText(stateStamp, `${how} at ${clock()}.`);
  }

  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/channels", text: "Channels" }), " / ", h("span", { "aria-current": "page", text: channelId })),
    h("div", { class: "page-head" }, heading, h("div", { class: "head-actions" }, copyButton(() => channelId, "channel ID", "Copy ID"), deleteButton)),
    h(
      "p",
      { class: "meta" },
      typeEl,
      " · created ",
      created,
      " · online now: ",
      onlineCount,
      " · live: ",
      liveWord,
    ),
    pageError,
    h(
      "div",
      { class: "grid" },
      h(
        "section",
        { class: "card", "aria-labelledby": "state-title" },
        h("h2", { id: "state-title", text: "State" }),
        stateView,
        stateStamp,
      ),
      stateForm,
      publishForm,
      h(
        "section",
        { class: "card", "aria-labelledby": "log-title" },
        h("div", { class: "section-head" }, h("h2", { id: "log-title" }, "Live messages ", logCount), clearLog),
        logEmpty,
        log,
      ),
      h(
        "section",
        { class: "card wide", "aria-labelledby": "subs-title" },
        h("h2", { id: "subs-title", text: "Subscribed tokens" }),
        grantForm,
        grantError,
        grantOptions,
        h("div", { class: "table-wrap" }, subsTable),
        subsEmpty,
      ),
    ),
  );

  function gone(message) {
    deleted = true;
    setText(liveWord, "off");
    pageError.textContent = message;
  }

  // The live view: the console's project-scope connection subscribes to this channel.
  stops.push(
    live.watch(channelId, (d) => {
      switch (d.e) {
        case "AVAILABLE":
          setText(liveWord, "watching");
          liveWord.dataset.state = "on";
          if (d.d && d.d.channel) showState(d.d.channel.state, "Loaded");
          break;
        case "STATE_UPDATE":
          showState(d.d.state, "Updated");
          break;
        case "MESSAGE":
          logEntry("message", d.d.e, d.d.d);
          break;
        case "UNAVAILABLE":
          liveWord.dataset.state = "off";
          if (d.d && d.d.graceful) gone("This channel was deleted.");
          else setText(liveWord, `unavailable (${(d.d && d.d.error_code) || "unknown"})`);
          break;
        case "ERROR":
          logEntry("error", `ERROR ${d.d && d.d.code}`, d.d && d.d.message);
          break;
        default:
          break;
      }
    }),
  );
  const onStatus = (event) => {
    if (event.detail !== "connected" && !deleted) {
      setText(liveWord, event.detail === "reconnecting" ? "reconnecting…" : "off");
      liveWord.dataset.state = "off";
    }
  };
  live.addEventListener("status", onStatus);
  stops.push(() => live.removeEventListener("status", onStatus));

  // The record itself (type, created) and the first state, over REST.
  api("GET", `/channels/${seg(channelId)}`)
    .then((data) => {
      channel = data.channel;
      setText(typeEl, channel.type);
      typeEl.className = `type type-${channel.type}`;
      created.replaceChildren(timeEl(channel.created_at));
      if (!stateView.textContent) showState(channel.state, "Loaded");
    })
    .catch((err) => {
      if (err.status === 404) gone(`There is no channel “${channelId}” in this project.`);
      else if (err.status !== 401) pageError.textContent = err.message;
    });

  loadTokenOptions();
  stops.push(
    poll(
      async () => {
        if (deleted) return;
        const [{ stats }] = await Promise.all([api("GET", `/channels/${seg(channelId)}/stats`), refreshSubscribers()]);
        setText(onlineCount, String(stats.online_count));
      },
      REFRESH_MS,
      (err) => {
        if (err.status === 404) gone(`There is no channel “${channelId}” in this project.`);
      },
    ),
  );

  return {
    destroy() {
      for (const stop of stops) stop();
    },
  };
}
