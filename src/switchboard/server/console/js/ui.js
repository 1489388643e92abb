// Small DOM helpers shared by every view. Text always goes in as text (never innerHTML),
// so nothing a user stored in a state or an event name can become markup.

let nextId = 0;

/** A unique element ID with a readable prefix. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * h("button", {type: "button", class: "primary", onclick: fn}, "Save")
 * Props: class, text, dataset {}, on* (listeners), booleans (set when true), other attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.append(child);
    else el.append(document.createTextNode(String(child)));
  }
}

/** Set text only when it changed (keeps the DOM, and focus, still while polling). */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** A labelled form field: <div class="field"><label for>…</label>control hint</div>. */
export function field(labelText, control, hint) {
  if (!control.id) control.id = uid("field");
  const children = [h("label", { for: control.id, text: labelText }), control];
  if (hint) {
    const hintId = uid("hint");
    const described = control.getAttribute("aria-describedby");
    control.setAttribute("aria-describedby", described ? `${described} ${hintId}` : hintId);
    children.push(h("p", { class: "hint", id: hintId, text: hint }));
  }
  return h("div", { class: "field" }, children);
}

/** Pretty JSON for display; undefined shows as nothing. */
export function pretty(value) {
  return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** One-line JSON, shortened for a table cell. */
export function compact(value, max = 80) {
  const text = JSON.stringify(value);
  if (text === undefined) return "";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * A JSON editor: a textarea that checks its text on every keystroke and says inline
 * what is wrong. mode "object" wants a JSON object; "any" takes any JSON value.
 * optional: empty text is fine and reads as undefined.
 * validate() -> {ok, value, text, error}; a form calls it before sending and refuses
 * to send (focusing the editor) when it is not ok.
 */
export function jsonEditor({ id, label, value, mode = "object", optional = false, rows = 6, placeholder, hint }) {
  const textarea = h("textarea", {
    id: id || uid("json"),
    class: "json",
    rows,
    spellcheck: "false",
    autocomplete: "off",
    autocapitalize: "off",
    placeholder,
  });
  const msgId = `${textarea.id}-msg`;
  const message = h("p", { id: msgId, class: "json-msg", "aria-live": "polite" });
  textarea.setAttribute("aria-describedby", msgId);
  if (value !== undefined) textarea.value = pretty(value);

  const what = mode === "object" ? "JSON object" : "JSON";

  function check() {
    const text = textarea.value.trim();
    if (text === "") {
      if (optional) return { ok: true, value: undefined, text: "" };
      return { ok: false, error: mode === "object" ? "Enter a JSON object, like {}." : "Enter a JSON value." };
    }
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      return { ok: false, error: `Invalid JSON: ${err.message}` };
    }
    if (mode === "object" && (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))) {
      return { ok: false, error: "Invalid: this must be a JSON object, like {\"key\": \"value\"}." };
    }
    return { ok: true, value: parsed, text };
  }

  function show(result) {
    if (result.ok) {
      textarea.removeAttribute("aria-invalid");
      message.className = "json-msg ok";
      setText(message, result.text === "" ? "Empty: nothing is sent." : `Valid ${what}.`);
    } else {
      textarea.setAttribute("aria-invalid", "true");
      message.className = "json-msg error";
      setText(message, result.error);
    }
    return result;
  }

  textarea.addEventListener("input", () => show(check()));
  show(check());

  const format = h("button", {
    type: "button",
    class: "link small",
    text: "Format",
    title: "Pretty-print the JSON",
    "aria-describedby": `${textarea.id}-label`,
    onclick: () => {
      const result = check();
      if (result.ok && result.value !== undefined) textarea.value = pretty(result.value);
      show(check());
    },
  });

  const element = h(
    "div",
    { class: "field json-field" },
    h("div", { class: "label-row" }, h("label", { for: textarea.id, id: `${textarea.id}-label`, text: label }), format),
    textarea,
    message,
    hint ? h("p", { class: "hint", text: hint }) : null,
  );

  return {
    element,
    textarea,
    validate() {
      const result = show(check());
      if (!result.ok) textarea.focus();
      return result;
    },
    setValue(v) {
      textarea.value = v === undefined ? "" : pretty(v);
      show(check());
    },
  };
}

/** A short message in the notices area: role=status for news, role=alert for errors. */
export function notify(message, kind = "ok") {
  const area = document.getElementById("notices");
  if (!area) return;
  const note = h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  const close = h("button", {
    type: "button",
    class: "link small",
    "aria-label": "Dismiss",
    text: "×",
    onclick: () => note.remove(),
  });
  note.append(close);
  area.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 10000 : 4000);
}

/** A modal confirmation (native <dialog>: focus stays inside, Escape cancels). */
export function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const titleId = uid("confirm-title");
    const ok = h("button", { type: "submit", value: "ok", class: danger ? "danger" : "primary", text: confirmLabel });
    const cancel = h("button", { type: "submit", value: "cancel", text: "Cancel" });
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": titleId },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: titleId, text: title }),
        h("p", {}, message),
        h("div", { class: "actions" }, cancel, ok),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** Copy text to the clipboard; falls back to a selection copy where the API is missing. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through to the old way
  }
  const area = h("textarea", { class: "offscreen", readonly: true, "aria-hidden": "true" });
  area.value = text;
  document.body.append(area);
  area.select();
  let done = false;
  try {
    done = document.execCommand("copy");
  } catch {
    done = false;
  }
  area.remove();
  return done;
}

/** A "Copy" button for a value. */
export function copyButton(getText, what = "value", text = "Copy") {
  return h("button", {
    type: "button",
    class: "small",
    text,
    "aria-label": text === "Copy" ? `Copy ${what}` : undefined,
    onclick: async () => {
      const copied = await copyText(getText());
      notify(copied ? `Copied the ${what}.` : `Could not copy; select the ${what} and copy it by hand.`, copied ? "ok" : "error");
    },
  });
}

/** The online indicator: a dot and a word (never colour alone). */
export function onlineBadge(isOnline) {
  const badge = h("span", { class: "online" }, h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "word" }));
  updateOnline(badge, isOnline);
  return badge;
}

export function updateOnline(badge, isOnline) {
  badge.dataset.online = isOnline ? "true" : "false";
  setText(badge.querySelector(".word"), isOnline ? "Online" : "Offline");
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** An ISO timestamp as the reader's local time, in a <time> element. */
export function timeEl(iso, empty = "—") {
  if (!iso) return h("span", { class: "muted", text: empty });
  const date = new Date(iso);
  return h("time", { datetime: iso, title: iso, text: Number.isNaN(date.getTime()) ? iso : dateFormat.format(date) });
}

export function clock(date = new Date()) {
  return date.toLocaleTimeString(undefined, { hour12: false });
}

/** The value for <input type=datetime-local> of an ISO timestamp (local time), or "". */
export function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** An ISO timestamp (UTC) from a datetime-local value, or null when empty. */
export function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/**
 * Run fn now and then every `ms` while the page is visible; no two runs overlap.
 * Returns stop(). Errors go to onError (default: ignored, the next run tries again).
 */
export function poll(fn, ms, onError = () => {}) {
  let stopped = false;
  let timer = null;
  let running = false;
  async function run() {
    if (stopped || running) return;
    if (document.visibilityState === "hidden") {
      schedule();
      return;
    }
    running = true;
    try {
      await fn();
    } catch (err) {
      if (!stopped) onError(err);
    } finally {
      running = false;
      schedule();
    }
  }
  function schedule() {
    if (!stopped) timer = setTimeout(run, ms);
  }
  const onVisible = () => {
    if (document.visibilityState === "visible" && !running) {
      clearTimeout(timer);
      run();
    }
  };
  document.addEventListener("visibilitychange", onVisible);
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}

/** A button that shows it is busy while an async action runs, and cannot be pressed twice. */
export async function busy(button, action) {
  if (button.getAttribute("aria-busy") === "true") return undefined;
  // aria-disabled, not disabled: a disabled button would drop the keyboard focus.
  button.setAttribute("aria-busy", "true");
  button.setAttribute("aria-disabled", "true");
  try {
    return await action();
  } finally {
    button.removeAttribute("aria-busy");
    button.removeAttribute("aria-disabled");
  }
}
