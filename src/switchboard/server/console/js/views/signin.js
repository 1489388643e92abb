// Sign-in: the project token, checked against the server before it is kept.

import { busy, field, h } from "../ui.js";

export function renderSignIn(main, { message, signIn }) {
  const input = h("input", {
    id: "signin-token",
    name: "project-token",
    type: "password",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    autocapitalize: "off",
    placeholder: "ptk_…",
  });
  const error = h("p", { id: "signin-error", class: "form-error", role: "alert" });
  const notice = message ? h("p", { id: "signin-message", class: "banner", role: "status", text: message }) : null;
  const submit = h("button", { type: "submit", class: "primary", text: "Sign in" });

  // method=post: even with scripts off the token could never land in a URL.
  const form = h(
    "form",
    { class: "card signin-form", method: "post", action: "/console", "aria-labelledby": "signin-title", novalidate: true },
    field("Project token", input, "Printed by “switchboard serve” on its first start, or made with “switchboard project-tokens create”."),
    error,
    h("div", { class: "actions" }, submit),
  );

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!token.startsWith("ptk_")) {
      error.textContent = "A project token starts with ptk_.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    busy(submit, async () => {
      try {
        await signIn(token);
      } catch (err) {
        // 403: a valid token without read_channels, which the console needs.
        error.textContent = err.status === 401 || err.status === 403 ? `Refused: ${err.message}.` : err.message;
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    });
  });

  main.append(
    h(
      "section",
      { class: "signin" },
      h("h1", { id: "signin-title", text: "Sign in to the Switchboard console" }),
      notice,
      form,
      h(
        "p",
        { class: "hint" },
        "The token stays in this browser tab (session storage) until you sign out or close the tab. " +
          "It is sent only in the Authorization header of API calls and in the realtime connection's IDENTIFY frame.",
      ),
    ),
  );
  input.focus();
  return { isSignIn: true, destroy() {} };
}
