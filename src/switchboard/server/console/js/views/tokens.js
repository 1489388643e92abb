// Tokens: generate (state + optional expiry), copy, list and search with a live online
// indicator, edit state and expiry, send a direct message, delete with a confirmation.

import { api, seg } from "../api.js";
import {
  busy,
  compact,
  confirmDialog,
  copyButton,
  field,
  fromLocalInput,
  h,
  jsonEditor,
  notify,
  onlineBadge,
  poll,
  setText,
  timeEl,
  toLocalInput,
  uid,
  updateOnline,
} from "../ui.js";

const REFRESH_MS = 2000;

export function renderTokens(main) {
  let tokens = []; // the last list from the server
  const rows = new Map(); // token id -> {row, badge, state, expires}
  let openDialog = null; // {token id, update(token)} while "Manage" is open

  // Generate.
  const stateEditor = jsonEditor({
    id: "token-state",
    label: "State (JSON object, optional)",
    optional: true,
    rows: 4,
    placeholder: '{"userId": "user_42"}',
    hint: "Metadata about the user, such as their ID; the token's connections get it in INIT.",
  });
  const expiry = h("input", { id: "token-expiry", type: "datetime-local" });
  const createButton = h("button", { type: "submit", class: "primary", text: "Generate token" });
  const createError = h("p", { class: "form-error", role: "alert" });
  const created = h("div", { id: "new-token", class: "new-token", hidden: true });

  const createForm = h(
    "form",
    { id: "token-create", class: "card", "aria-labelledby": "token-create-title", novalidate: true },
    h("h2", { id: "token-create-title", text: "Generate a token" }),
    stateEditor.element,
    field("Expires at (optional, your local time)", expiry, "Leave empty for a token that does not expire."),
    createError,
    h("div", { class: "actions" }, createButton),
    created,
  );

  createForm.addEventListener("submit", (event) => {
    event.preventDefault();
    createError.textContent = "";
    const state = stateEditor.validate();
    if (!state.ok) return;
    const body = {};
    if (state.value !== undefined) body.state = state.value;
    if (expiry.value) {
      const at = fromLocalInput(expiry.value);
      if (!at || new Date(at) <= new Date()) {
        createError.textContent = "The expiry must be a moment in the future.";
        expiry.setAttribute("aria-invalid", "true");
        expiry.focus();
        return;
      }
      body.expires_at = at;
    }
    expiry.removeAttribute("aria-invalid");
    busy(createButton, async () => {
      try {
        const { token } = await api("POST", "/channels/tokens", body);
        showCreated(token);
        notify("Token generated.");
        await refresh();
      } catch (err) {
        if (err.status !== 401) createError.textContent = err.message;
      }
    });
  });

  function showCreated(token) {
    const value = h("code", { id: "new-token-id", class: "secret", text: token.id });
    created.replaceChildren(
      h("p", { class: "new-token-title", text: "New token" }),
      h("div", { class: "copy-row" }, value, copyButton(() => token.id, "token")),
      h("p", { class: "hint", text: "Hand it to your user's app: hop.init({projectId, token}). It is also in the list below." }),
    );
    created.hidden = false;
  }

  // List.
  const search = h("input", { id: "token-search", type: "search", placeholder: "Token or state text", autocomplete: "off" });
  const count = h("span", { class: "count" });
  const listError = h("p", { class: "form-error", role: "alert" });
  const tbody = h("tbody", { id: "token-rows" });
  const empty = h("p", { class: "empty", hidden: true });
  const table = h(
    "table",
    { class: "list", id: "token-table" },
    h("caption", { class: "visually-hidden", text: "Tokens of this project" }),
    h(
      "thead",
      {},
      h("tr", {}, ["Token", "Online", "State", "Created", "Expires", "Actions"].map((t) => h("th", { scope: "col", text: t }))),
    ),
    tbody,
  );
  search.addEventListener("input", () => render());

  main.append(
    h("h1", { text: "Tokens" }),
    h("p", { class: "lede", text: "A token identifies one of your users to the realtime gateway. Generate one per user, with their metadata as its state." }),
    createForm,
    h(
      "section",
      { class: "card", "aria-labelledby": "token-list-title" },
      h("div", { class: "section-head" }, h("h2", { id: "token-list-title" }, "All tokens ", count), field("Search tokens", search)),
      listError,
      h("div", { class: "table-wrap" }, table),
      empty,
    ),
  );

  function matches(token, query) {
    if (!query) return true;
    const q = query.toLowerCase();
    return token.id.toLowerCase().includes(q) || JSON.stringify(token.state).toLowerCase().includes(q);
  }

  function makeRow(token) {
    const badge = onlineBadge(token.is_online);
    const state = h("code", { class: "state-cell" });
    const expires = h("span");
    const manage = h("button", {
      type: "button",
      class: "small",
      text: "Manage",
      "aria-label": `Manage token ${token.id}`,
      onclick: () => manageDialog(token.id),
    });
    const remove = h("button", {
      type: "button",
      class: "small danger",
      text: "Delete",
      "aria-label": `Delete token ${token.id}`,
      onclick: () => deleteToken(token.id, remove),
    });
    const row = h(
      "tr",
      { dataset: { token: token.id } },
      h("td", { "data-label": "Token" }, h("code", { class: "token-id", text: token.id })),
      h("td", { "data-label": "Online" }, badge),
      h("td", { "data-label": "State" }, state),
      h("td", { "data-label": "Created" }, timeEl(token.created_at)),
      h("td", { "data-label": "Expires" }, expires),
      h("td", { "data-label": "Actions", class: "row-actions" }, manage, remove),
    );
    return { row, badge, state, expires, expiresAt: undefined };
  }

  function render() {
    const query = search.value.trim();
    const shown = tokens.filter((t) => matches(t, query));
    const seen = new Set();
    let previous = null;
    for (const token of shown) {
      seen.add(token.id);
      let entry = rows.get(token.id);
      if (!entry) {
        entry = makeRow(token);
        rows.set(token.id, entry);
      }
      updateOnline(entry.badge, token.is_online);
      setText(entry.state, compact(token.state));
      if (entry.expiresAt !== token.expires_at) {
        entry.expiresAt = token.expires_at;
        entry.expires.replaceChildren(timeEl(token.expires_at, "never"));
      }
      // Keep order without moving rows that are already in place (focus stays put).
      const want = previous ? previous.nextSibling : tbody.firstChild;
      if (want !== entry.row) tbody.insertBefore(entry.row, want);
      previous = entry.row;
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.row.remove();
        if (!tokens.some((t) => t.id === id)) rows.delete(id);
      }
    }
    setText(count, `(${tokens.length})`);
    empty.hidden = shown.length > 0;
    table.hidden = shown.length === 0;
    setText(empty, tokens.length === 0 ? "No tokens yet. Generate one above." : "No token matches the search.");
    if (openDialog) {
      const token = tokens.find((t) => t.id === openDialog.id);
      if (token) openDialog.update(token);
    }
  }

  async function refresh() {
    const data = await api("GET", "/channels/tokens");
    tokens = data.tokens;
    listError.textContent = "";
    render();
  }

  async function deleteToken(id, button) {
    const sure = await confirmDialog({
      title: "Delete this token?",
      message: h("span", {}, "Token ", h("code", { text: id }), " is deleted: its live connections are closed and its subscriptions removed. This cannot be undone."),
      confirmLabel: "Delete token",
      danger: true,
    });
    if (!sure) return false;
    return busy(button, async () => {
      try {
        await api("DELETE", `/channels/tokens/${seg(id)}`);
        notify("Token deleted.");
        tokens = tokens.filter((t) => t.id !== id);
        render();
        return true;
      } catch (err) {
        if (err.status !== 401) notify(`Could not delete the token: ${err.message}`, "error");
        return false;
      }
    });
  }

  function manageDialog(id) {
    const token = tokens.find((t) => t.id === id);
    if (!token) return;
    const titleId = uid("manage-title");
    const badge = onlineBadge(token.is_online);

    // State and expiry.
    const editor = jsonEditor({ id: "manage-state", label: "State (JSON object)", value: token.state, rows: 6 });
    const expiryInput = h("input", { id: "manage-expiry", type: "datetime-local" });
    const initialExpiry = toLocalInput(token.expires_at);
    expiryInput.value = initialExpiry;
    const saveButton = h("button", { type: "submit", class: "primary", text: "Save state and expiry" });
    const saveError = h("p", { class: "form-error", role: "alert" });
    const editForm = h(
      "form",
      { class: "stack", novalidate: true, "aria-label": "Edit the token" },
      editor.element,
      field("Expires at (your local time)", expiryInput, "Empty: never expires. A past moment cuts the token's connections off at once."),
      saveError,
      h("div", { class: "actions" }, saveButton),
    );
    editForm.addEventListener("submit", (event) => {
      event.preventDefault();
      saveError.textContent = "";
      const state = editor.validate();
      if (!state.ok) return;
      const body = { state: state.value };
      if (expiryInput.value !== initialExpiry) body.expires_at = fromLocalInput(expiryInput.value);
      busy(saveButton, async () => {
        try {
          await api("PATCH", `/channels/tokens/${seg(id)}`, body);
          notify("Token saved.");
          await refresh();
        } catch (err) {
          if (err.status !== 401) saveError.textContent = err.message;
        }
      });
    });

    // Direct message.
    const eventInput = h("input", { id: "dm-event", type: "text", required: true, maxlength: 128, value: "NOTIFICATION", autocomplete: "off" });
    const dataEditor = jsonEditor({ id: "dm-data", label: "Data (JSON)", mode: "any", value: { text: "Hello" }, rows: 3 });
    const sendButton = h("button", { type: "submit", text: "Send direct message" });
    const sendError = h("p", { class: "form-error", role: "alert" });
    const dmForm = h(
      "form",
      { class: "stack", novalidate: true, "aria-labelledby": `${titleId}-dm` },
      h("h3", { id: `${titleId}-dm`, text: "Send a direct message" }),
      field("Event name", eventInput),
      dataEditor.element,
      sendError,
      h("div", { class: "actions" }, sendButton),
    );
    dmForm.addEventListener("submit", (event) => {
      event.preventDefault();
      sendError.textContent = "";
      const name = eventInput.value.trim();
      if (!name) {
        sendError.textContent = "Enter an event name.";
        eventInput.focus();
        return;
      }
      const data = dataEditor.validate();
      if (!data.ok) return;
      busy(sendButton, async () => {
        try {
          await api("POST", `/channels/tokens/${seg(id)}/messages`, `{"e":${JSON.stringify(name)},"d":${data.text}}`);
          notify(`Direct message ${name} sent.`);
        } catch (err) {
          if (err.status !== 401) sendError.textContent = err.message;
        }
      });
    });

    const deleteButton = h("button", { type: "button", class: "danger", text: "Delete token…" });
    const closeButton = h("button", { type: "button", text: "Close" });
    const dialog = h(
      "dialog",
      { class: "manage", "aria-labelledby": titleId, id: "token-dialog" },
      h(
        "div",
        { class: "dialog-head" },
        h("h2", { id: titleId, text: "Manage token" }),
        closeButton,
      ),
      h("div", { class: "copy-row" }, h("code", { class: "secret", text: id }), copyButton(() => id, "token")),
      h("p", {}, badge, " · created ", timeEl(token.created_at)),
      editForm,
      dmForm,
      h("div", { class: "actions split" }, deleteButton),
    );
    closeButton.addEventListener("click", () => dialog.close());
    deleteButton.addEventListener("click", async () => {
      if (await deleteToken(id, deleteButton)) dialog.close();
    });
    dialog.addEventListener("close", () => {
      openDialog = null;
      dialog.remove();
      const entry = rows.get(id);
      if (entry && entry.row.isConnected) entry.row.querySelector("button").focus();
    });
    openDialog = { id, update: (t) => updateOnline(badge, t.is_online) };
    document.body.append(dialog);
    dialog.showModal();
    editor.textarea.focus();
  }

  const stop = poll(refresh, REFRESH_MS, (err) => {
    if (err.status !== 401) listError.textContent = `Could not refresh the list: ${err.message}`;
  });

  return {
    destroy() {
      stop();
      const dialog = document.getElementById("token-dialog");
      if (dialog) dialog.close();
    },
  };
}
