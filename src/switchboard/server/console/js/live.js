// The console's own connection to the gateway (SPEC §3), as the project itself:
// IDENTIFY with the project token gives scope "project", which may subscribe to every
// channel of the project and never counts as a token being online.
//
// Views call live.watch(channel, onDispatch) and get back an unwatch function. The
// connection reconnects with backoff and subscribes again to everything watched; a
// close with 4001 (the project token was revoked) signs the console out.

const OP_DISPATCH = 0;
const OP_HELLO = 1;
const OP_IDENTIFY = 2;
const OP_HEARTBEAT = 3;

export class Live extends EventTarget {
  constructor({ projectId, token, onAuthFailed }) {
    super();
    this.projectId = projectId;
    this.token = token;
    this.onAuthFailed = onAuthFailed;
    this.status = "idle";
    this.ws = null;
    this.ready = false;
    this.stopped = false;
    this.attempt = 0;
    this.heartbeat = null;
    this.retry = null;
    /** channel ID -> Set of listeners */
    this.watchers = new Map();
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    this.stopHeartbeat();
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000, "console signed out");
      this.ws = null;
    }
    this.setStatus("stopped");
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/ws?encoding=json&compression=none`);
    this.ws = ws;
    this.ready = false;
    this.setStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => this.closed(event);
  }

  send(frame) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    switch (frame.op) {
      case OP_HELLO: {
        const interval = (frame.d && frame.d.heartbeat_interval) || 30000;
        this.stopHeartbeat();
        this.heartbeat = setInterval(() => this.send({ op: OP_HEARTBEAT }), Math.max(1000, interval / 2));
        this.send({ op: OP_IDENTIFY, d: { project_id: this.projectId, token: this.token } });
        break;
      }
      case OP_HEARTBEAT:
        // The server's probe: echo its tag.
        this.send({ op: OP_HEARTBEAT, d: frame.d || null });
        break;
      case OP_DISPATCH:
        this.dispatch(frame.d);
        break;
      default:
        break;
    }
  }

  dispatch(d) {
    if (!d) return;
    if (d.e === "INIT") {
      this.ready = true;
      this.attempt = 0;
      this.setStatus("connected");
      for (const channel of this.watchers.keys()) this.subscribe(channel);
      return;
    }
    const listeners = d.c ? this.watchers.get(d.c) : null;
    if (listeners) for (const listener of [...listeners]) listener(d);
    this.dispatchEvent(new CustomEvent("dispatch", { detail: d }));
  }

  subscribe(channel) {
    this.send({ op: OP_DISPATCH, d: { c: channel, e: "SUBSCRIBE", d: null } });
  }

  /** Receive the dispatches of `channel` (AVAILABLE, STATE_UPDATE, MESSAGE, …). */
  watch(channel, listener) {
    let listeners = this.watchers.get(channel);
    if (!listeners) {
      listeners = new Set();
      this.watchers.set(channel, listeners);
      if (this.ready) this.subscribe(channel);
    }
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.watchers.get(channel) === listeners) {
        this.watchers.delete(channel);
        if (this.ready) this.send({ op: OP_DISPATCH, d: { c: channel, e: "UNSUBSCRIBE", d: null } });
      }
    };
  }

  stopHeartbeat() {
    clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  closed(event) {
    this.stopHeartbeat();
    this.ready = false;
    this.ws = null;
    if (this.stopped) return;
    if (event.code === 4001) {
      this.setStatus("stopped");
      this.stopped = true;
      this.onAuthFailed(`The gateway refused the project token (${event.reason || "4001"}). Sign in again.`);
      return;
    }
    this.attempt += 1;
    this.setStatus("reconnecting");
    const delay = Math.min(10000, 500 * 2 ** Math.min(this.attempt, 5)) * (0.75 + Math.random() / 2);
    this.retry = setTimeout(() => this.connect(), delay);
  }
}
