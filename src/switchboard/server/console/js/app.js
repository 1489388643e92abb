// The console's entry point: sign-in state, the live connection, and the hash router.
// Routes: #/overview, #/tokens, #/channels, #/channels/<channel id>, #/webhooks.

import { api, forgetProjectToken, onUnauthorized, projectToken, saveProjectToken } from "./api.js";
import { Live } from "./live.js";
import { h, notify, setText } from "./ui.js";
import { renderSignIn } from "./views/signin.js";
import { renderOverview } from "./views/overview.js";
import { renderTokens } from "./views/tokens.js";
import { renderChannels } from "./views/channels.js";
import { renderChannel } from "./views/channel.js";
import { renderWebhooks } from "./views/webhooks.js";

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
const liveStatus = document.getElementById("live-status");
const projectLabel = document.getElementById("project-label");

const LIVE_WORDS = {
  idle: "Live: off",
  connecting: "Live: connecting…",
  connected: "Live: connected",
  reconnecting: "Live: reconnecting…",
  stopped: "Live: off",
};

const session = {
  project: null, // {id, name, …} from /v1/stats
  live: null,
};

let current = null; // the view on screen: {destroy()}
let firstRender = true;

const ROUTES = [
  { pattern: /^#\/overview$/, nav: "overview", render: renderOverview },
  { pattern: /^#\/tokens$/, nav: "tokens", render: renderTokens },
  { pattern: /^#\/channels$/, nav: "channels", render: renderChannels },
  { pattern: /^#\/channels\/(.+)$/, nav: "channels", render: renderChannel },
  { pattern: /^#\/webhooks$/, nav: "webhooks", render: renderWebhooks },
];

function clearView() {
  if (current && current.destroy) current.destroy();
  current = null;
  main.replaceChildren();
}

function showSignIn(message) {
  clearView();
  topbar.hidden = true;
  document.title = "Sign in · Switchboard console";
  current = renderSignIn(main, { message, signIn });
}

async function signIn(token) {
  // Checked with the token given, before anything is stored.
  const stats = await api("GET", "/stats", undefined, { token });
  saveProjectToken(token);
  start(stats.project);
}

function start(project) {
  session.project = project;
  setText(projectLabel, `${project.name} · ${project.id}`);
  topbar.hidden = false;
  if (session.live) session.live.stop();
  const live = new Live({ projectId: project.id, token: projectToken(), onAuthFailed: signOut });
  live.addEventListener("status", (event) => {
    liveStatus.dataset.status = event.detail;
    setText(liveStatus, LIVE_WORDS[event.detail] || event.detail);
  });
  session.live = live;
  live.start();
  if (!/^#\/(overview|tokens|channels|webhooks)/.test(location.hash)) {
    history.replaceState(null, "", "#/overview");
  }
  route();
}

function signOut(message) {
  // Several calls in flight may all get 401: sign out once, keep the first message.
  const signedIn = session.project !== null || projectToken() !== null;
  if (!signedIn && current && current.isSignIn) return;
  forgetProjectToken();
  if (session.live) session.live.stop();
  session.live = null;
  session.project = null;
  showSignIn(message);
}

function route() {
  if (!session.project) return;
  const hash = location.hash || "#/overview";
  if (!hash.startsWith("#/")) return; // an in-page anchor, not a route
  const found = ROUTES.find((r) => r.pattern.test(hash));
  if (!found) {
    history.replaceState(null, "", "#/overview");
    route();
    return;
  }
  const match = hash.match(found.pattern);
  clearView();
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === found.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const context = {
    project: session.project,
    live: session.live,
    navigate: (to) => {
      location.hash = to;
    },
  };
  let param = null;
  if (match[1] !== undefined) {
    try {
      param = decodeURIComponent(match[1]);
    } catch {
      param = match[1];
    }
  }
  current = found.render(main, context, param);
  // Move focus to the new page's heading so keyboard and screen-reader users start there.
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    document.title = `${heading.textContent} · Switchboard console`;
    if (!firstRender) heading.focus({ preventScroll: false });
  }
  firstRender = false;
}

function boot() {
  onUnauthorized((message) => signOut(message));
  document.getElementById("sign-out").addEventListener("click", () => {
    signOut("Signed out. The project token was removed from this tab.");
  });
  document.querySelector(".skip").addEventListener("click", (event) => {
    event.preventDefault();
    const target = main.querySelector("h1") || main;
    target.setAttribute("tabindex", "-1");
    target.focus();
  });
  window.addEventListener("hashchange", route);

  const token = projectToken();
  if (!token) {
    showSignIn();
    return;
  }
  main.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  api("GET", "/stats")
    .then((stats) => start(stats.project))
    .catch((err) => {
      if (err.status !== 401) {
        showSignIn(`Could not reach the server: ${err.message}`);
        notify(err.message, "error");
      }
    });
}

boot();
