// Channels: create one (type, optional ID, state), and the list with a live online_count.

import { api, seg } from "../api.js";
import { busy, field, h, jsonEditor, notify, poll, setText, timeEl } from "../ui.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 3000;
const ID_PATTERN = /^[A-Za-z0-9_.:@-]{1,128}$/;

export const TYPES = [
  ["private", "Private: only tokens you grant"],
  ["public", "Public: any token of the project"],
  ["unprotected", "Unprotected: anyone with the ID, no token needed"],
];

export function channelHref(id) {
  return `#/channels/${encodeURIComponent(id)}`;
}

/** The problem with a channel ID the user typed, or null if it is fine (SPEC §1). */
export function channelIdProblem(id) {
  if (id === "tokens") return "“tokens” is reserved.";
  if (!ID_PATTERN.test(id)) return "1 to 128 characters of A–Z a–z 0–9 _ . : @ -";
  return null;
}

export function renderChannels(main, { navigate }) {
  // Create.
  const type = h(
    "select",
    { id: "channel-type" },
    TYPES.map(([value, text]) => h("option", { value, text })),
  );
  const idInput = h("input", {
    id: "channel-id",
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    maxlength: 128,
    placeholder: "game, room:42 … (empty: generated)",
  });
  const stateEditor = jsonEditor({
    id: "channel-state",
    label: "Initial state (JSON object, optional)",
    optional: true,
    rows: 4,
    placeholder: '{"round": 1}',
  });
  const createButton = h("button", { type: "submit", class: "primary", text: "Create channel" });
  const createError = h("p", { class: "form-error", role: "alert" });
  const form = h(
    "form",
    { id: "channel-create", class: "card", "aria-labelledby": "channel-create-title", novalidate: true },
    h("h2", { id: "channel-create-title", text: "Create a channel" }),
    h(
      "div",
      { class: "row" },
      field("Type", type),
      field("Channel ID (optional)", idInput, "Letters, digits and _ . : @ -; empty for a generated ID."),
    ),
    stateEditor.element,
    createError,
    h("div", { class: "actions" }, createButton),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    createError.textContent = "";
    idInput.removeAttribute("aria-invalid");
    const id = idInput.value.trim();
    if (id) {
      const problem = channelIdProblem(id);
      if (problem) {
        createError.textContent = `Channel ID: ${problem}`;
        idInput.setAttribute("aria-invalid", "true");
        idInput.focus();
        return;
      }
    }
    const state = stateEditor.validate();
    if (!state.ok) return;
    const body = state.value === undefined ? `{"type":${JSON.stringify(type.value)}}` : `{"type":${JSON.stringify(type.value)},"state":${state.text}}`;
    busy(createButton, async () => {
      try {
        const { channel } = id ? await api("PUT", `/channels/${seg(id)}`, body) : await api("POST", "/channels", body);
        notify(`Channel ${channel.id} created.`);
        navigate(channelHref(channel.id));
      } catch (err) {
        if (err.status !== 401) createError.textContent = err.message;
      }
    });
  });

  // List.
  let page = 1;
  let total = 0;
  let channels = [];
  const onlineCounts = new Map();
  const search = h("input", { id: "channel-search", type: "search", placeholder: "Channel ID", autocomplete: "off" });
  const count = h("span", { class: "count" });
  const listError = h("p", { class: "form-error", role: "alert" });
  const tbody = h("tbody", { id: "channel-rows" });
  const empty = h("p", { class: "empty", hidden: true });
  const table = h(
    "table",
    { class: "list", id: "channel-table" },
    h("caption", { class: "visually-hidden", text: "Channels of this project" }),
    h("thead", {}, h("tr", {}, ["Channel", "Type", "Online", "Created"].map((t) => h("th", { scope: "col", text: t })))),
    tbody,
  );
  const prev = h("button", { type: "button", class: "small", text: "Previous page" });
  const next = h("button", { type: "button", class: "small", text: "Next page" });
  const pageLabel = h("span", { class: "muted", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Channel pages" }, prev, pageLabel, next);
  prev.addEventListener("click", () => {
    if (page > 1) {
      page -= 1;
      refresh().catch(() => {});
    }
  });
  next.addEventListener("click", () => {
    if (page * PAGE_SIZE < total) {
      page += 1;
      refresh().catch(() => {});
    }
  });
  search.addEventListener("input", render);

  main.append(
    h("h1", { text: "Channels" }),
    h("p", { class: "lede", text: "Named rooms with a JSON state. Open one to watch its state and messages live." }),
    form,
    h(
      "section",
      { class: "card", "aria-labelledby": "channel-list-title" },
      h("div", { class: "section-head" }, h("h2", { id: "channel-list-title" }, "All channels ", count), field("Search channels", search)),
      listError,
      h("div", { class: "table-wrap" }, table),
      empty,
      pager,
    ),
  );

  const rows = new Map();

  function render() {
    const q = search.value.trim().toLowerCase();
    const shown = channels.filter((c) => !q || c.id.toLowerCase().includes(q));
    const fresh = new Map();
    const list = shown.map((channel) => {
      let entry = rows.get(channel.id);
      if (!entry) {
        const online = h("span", { class: "num", text: "…" });
        entry = {
          online,
          row: h(
            "tr",
            { dataset: { channel: channel.id } },
            h("td", { "data-label": "Channel" }, h("a", { href: channelHref(channel.id) }, h("code", { text: channel.id }))),
            h("td", { "data-label": "Type" }, h("span", { class: `type type-${channel.type}`, text: channel.type })),
            h("td", { "data-label": "Online" }, online),
            h("td", { "data-label": "Created" }, timeEl(channel.created_at)),
          ),
        };
      }
      const n = onlineCounts.get(channel.id);
      setText(entry.online, n === undefined ? "…" : String(n));
      fresh.set(channel.id, entry);
      return entry.row;
    });
    rows.clear();
    for (const [k, v] of fresh) rows.set(k, v);
    // Replace only when the order or membership changed, so focus on a link stays.
    const same = list.length === tbody.children.length && list.every((row, i) => tbody.children[i] === row);
    if (!same) tbody.replaceChildren(...list);
    setText(count, `(${total})`);
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    setText(pageLabel, `Page ${page} of ${pages}`);
    pager.hidden = pages <= 1;
    prev.setAttribute("aria-disabled", String(page <= 1));
    next.setAttribute("aria-disabled", String(page >= pages));
    table.hidden = shown.length === 0;
    empty.hidden = shown.length > 0;
    setText(empty, total === 0 ? "No channels yet. Create one above." : "No channel on this page matches the search.");
  }

  async function refresh() {
    const data = await api("GET", `/channels?page=${page}&pageSize=${PAGE_SIZE}&orderBy=desc`);
    channels = data.channels;
    total = data.total_count;
    if (channels.length === 0 && page > 1) {
      page -= 1;
      return refresh();
    }
    listError.textContent = "";
    render();
    // online_count of the channels on this page.
    const counts = await Promise.all(
      channels.map((c) =>
        api("GET", `/channels/${seg(c.id)}/stats`).then(
          (d) => [c.id, d.stats.online_count],
          () => [c.id, undefined],
        ),
      ),
    );
    for (const [id, n] of counts) onlineCounts.set(id, n);
    render();
    return undefined;
  }

  const stop = poll(refresh, REFRESH_MS, (err) => {
    if (err.status !== 401) listError.textContent = `Could not refresh the list: ${err.message}`;
  });
  return { destroy: stop };
}
