'use strict';
// Shared plumbing for the compatibility drivers (CommonJS on purpose: the ESM builds of
// @onehop/leap-edge-js and @onehop/client do not load under Node's ESM loader).
//
// Protocol with pytest: every observation is one JSON line on stdout,
//   {"step": NAME, "value": V}            V is what the SDK returned or delivered
//   {"step": NAME, "undefined": true}     the SDK returned undefined
//   {"step": NAME, "error": {...}}        the SDK threw (HopAPIError details)
// and a failure of the driver itself is {"fatal": message} with exit code 1.
// pytest reads lines as they come, so it can act between them (e.g. restart the server).
// Every wait is for an event, bounded by SB_WAIT_MS; nothing sleeps for a condition.

const { Hop, HopAPIError } = require('@onehop/js');
const { LeapEdgeClient } = require('@onehop/leap-edge-js');

const cfg = {
  baseUrl: need('SB_BASE_URL'),
  wsUrl: need('SB_WS_URL'),
  projectId: need('SB_PROJECT_ID'),
  projectToken: need('SB_PROJECT_TOKEN'),
  waitMs: Number(process.env.SB_WAIT_MS || 5000),
};

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is required`);
  return value;
}

function hop(token = cfg.projectToken) {
  return new Hop(token, cfg.baseUrl);
}

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Record what an SDK call returned (or delivered). */
function record(step, value) {
  if (value === undefined) out({ step, undefined: true });
  else out({ step, value: plain(value) });
  return value;
}

/** JSON-safe copy: Maps and Sets become objects/arrays, functions are named. */
function plain(value) {
  return JSON.parse(
    JSON.stringify(value, (_k, v) => {
      if (v instanceof Map || (v && v[Symbol.toStringTag] === 'ObservableMap')) {
        return Object.fromEntries([...v.entries()]);
      }
      if (v instanceof Set) return [...v];
      if (typeof v === 'function') return `[function ${v.name || 'anonymous'}]`;
      return v;
    }),
  );
}

function describeError(err) {
  return {
    name: err && err.constructor ? err.constructor.name : typeof err,
    isHopAPIError: err instanceof HopAPIError,
    status: err && err.status,
    message: err && err.message,
    code: err && err.data && err.data.error ? err.data.error.code : undefined,
    data: err && err.data,
  };
}

/** Run an SDK call; record its result or the error it threw. Returns the result. */
async function attempt(step, fn) {
  try {
    return record(step, await fn());
  } catch (err) {
    out({ step, error: describeError(err) });
    return undefined;
  }
}

/** An append-only log of observations with event-driven waits. */
class Log {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = new Set();
  }

  push(item) {
    this.items.push(item);
    for (const waiter of [...this.waiters]) waiter.check();
  }

  mark() {
    return this.items.length;
  }

  since(mark) {
    return this.items.slice(mark);
  }

  /** The first item at index >= `from` that matches `pred`; waits for it up to SB_WAIT_MS. */
  waitFor(pred, what, from = 0, timeoutMs = cfg.waitMs) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check: () => {
          for (let i = from; i < this.items.length; i++) {
            if (pred(this.items[i])) {
              this.waiters.delete(waiter);
              clearTimeout(timer);
              resolve(this.items[i]);
              return true;
            }
          }
          return false;
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(
          new Error(
            `${this.name}: timed out after ${timeoutMs} ms waiting for ${what}; ` +
              `observed since mark ${from}: ${JSON.stringify(plain(this.items.slice(from)))}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(waiter);
      waiter.check();
    });
  }
}

/**
 * A LeapEdgeClient with everything it observes logged:
 *   {kind: 'state', state}                       connectionStateUpdate
 *   {kind: 'event', channelId, eventType, data}  serviceEvent
 *   {kind: 'raw', frame}                         every frame from the server, as sent
 *   {kind: 'close', code, reason}                the socket closing
 *   {kind: 'sent', frame}                        every frame the SDK sent
 */
async function edgeClient(name, auth, opts = {}) {
  const client = new LeapEdgeClient(auth, { socketUrl: cfg.wsUrl, ...opts });
  const log = new Log(name);
  client.on('connectionStateUpdate', (state) => log.push({ kind: 'state', state }));
  client.on('serviceEvent', (ev) => log.push({ kind: 'event', ...ev }));
  const encodeSend = client.encodeSend;
  client.encodeSend = (frame) => {
    log.push({ kind: 'sent', frame });
    encodeSend(frame);
  };
  // Count connect() calls so "did it reconnect?" is answered without waiting.
  const throttled = client.connect;
  let connectCalls = 0;
  client.connect = (...args) => {
    connectCalls += 1;
    return throttled(...args);
  };
  await client.connect();
  const socket = client.socket.instance;
  socket.addEventListener('message', (m) => log.push({ kind: 'raw', frame: JSON.parse(m.data.toString()) }));
  socket.addEventListener('close', (e) => log.push({ kind: 'close', code: e.code, reason: e.reason }));
  const edge = {
    client,
    log,
    get connectCalls() {
      return connectCalls;
    },
    waitEvent(eventType, channelId, from = 0) {
      return log.waitFor(
        (it) => it.kind === 'event' && it.eventType === eventType && (channelId === undefined || it.channelId === channelId),
        `${eventType}${channelId === undefined ? '' : ` on ${channelId}`}`,
        from,
      );
    },
    waitState(state, from = 0) {
      return log.waitFor((it) => it.kind === 'state' && it.state === state, `connection state ${state}`, from);
    },
    waitClose(from = 0) {
      return log.waitFor((it) => it.kind === 'close', 'the socket to close', from);
    },
    /** The raw frame that carried the dispatch `event` (matched by position). */
    rawFor(eventItem) {
      const i = log.items.indexOf(eventItem);
      for (let j = i + 1; j < log.items.length; j++) {
        const it = log.items[j];
        if (it.kind === 'raw' && it.frame.op === 0) return it.frame;
      }
      return null;
    },
    states() {
      return log.items.filter((it) => it.kind === 'state').map((it) => it.state);
    },
    subscribe(channel) {
      client.sendServicePayload({ c: channel, e: 'SUBSCRIBE', d: null });
    },
    /** Close for good: no reconnect, wait for the closing handshake. */
    async close() {
      const sock = client.socket && client.socket.instance;
      if (!sock) return;
      sock.removeEventListener('close', client._handleSocketClose);
      sock.removeEventListener('error', client._handleSocketError);
      if (client.heartbeat) clearInterval(client.heartbeat);
      const m = log.mark();
      sock.close(1000);
      await edge.waitClose(m);
      client.socket = null;
    },
  };
  return edge;
}

/**
 * Log everything an @onehop/client `Client` shows its user. Call it BEFORE `hop.init`
 * (on `leap.instance`) so the first connection states are seen too:
 *   {kind: 'state', state}                      CONNECTION_STATE_UPDATE
 *   {kind: 'message', event, data, channel}     MESSAGE (channel null for a direct message)
 *   {kind: 'state_update', channel, state}      STATE_UPDATE
 *   {kind: 'service', channelId, eventType, data}  SERVICE_EVENT (every dispatch, raw)
 *   {kind: 'map', payload, snapshot}            getChannelStateMap() changed
 *   {kind: 'listener', name, data}              a listener added with `listener(name)` fired
 * and, once `attachLeap()` ran (after init):
 *   {kind: 'sent', payload}                     every service payload the client sent
 *   {kind: 'close', code, reason}               every socket close
 */
function watchClient(name, client) {
  const log = new Log(name);
  client.on('CONNECTION_STATE_UPDATE', (state) => log.push({ kind: 'state', state }));
  client.on('MESSAGE', (m) => log.push({ kind: 'message', ...m }));
  client.on('STATE_UPDATE', (u) => log.push({ kind: 'state_update', ...u }));
  client.on('SERVICE_EVENT', (e) => log.push({ kind: 'service', ...e }));
  client.getChannelStateMap().addListener((map, payload) =>
    log.push({ kind: 'map', payload: plain(payload), snapshot: plain(map) }),
  );
  const watched = {
    client,
    log,
    connectCalls: 0,
    /** Hook into the Leap socket under the client (exists once init/connect ran). */
    attachLeap() {
      const leap = client.getLeap();
      const send = leap.sendServicePayload;
      leap.sendServicePayload = (payload) => {
        log.push({ kind: 'sent', payload: plain(payload) });
        return send(payload);
      };
      const connect = leap.connect;
      leap.connect = (...args) => {
        watched.connectCalls += 1;
        return connect(...args);
      };
      leap.on('connectionStateUpdate', (state) => {
        if (state === 'authenticating' && leap.socket) {
          leap.socket.instance.addEventListener('close', (e) => log.push({ kind: 'close', code: e.code, reason: e.reason }));
        }
      });
      return leap;
    },
    /** A listener function that logs its calls under `name`. */
    listener(listenerName) {
      return (data) => log.push({ kind: 'listener', name: listenerName, data });
    },
    waitState(state, from = 0, timeoutMs) {
      return log.waitFor((it) => it.kind === 'state' && it.state === state, `connection state ${state}`, from, timeoutMs);
    },
    /** Wait until getChannelStateMap() has `channel` with this `subscription`; returns the entry. */
    async waitChannel(channel, subscription, from = 0, timeoutMs) {
      const item = await log.waitFor(
        (it) => it.kind === 'map' && it.snapshot[channel] && it.snapshot[channel].subscription === subscription,
        `channel ${channel} to be ${subscription}`,
        from,
        timeoutMs,
      );
      return item.snapshot[channel];
    },
    waitListener(listenerName, from = 0, timeoutMs) {
      return log.waitFor((it) => it.kind === 'listener' && it.name === listenerName, `listener ${listenerName}`, from, timeoutMs);
    },
    waitKind(kind, pred, what, from = 0, timeoutMs) {
      return log.waitFor((it) => it.kind === kind && pred(it), what, from, timeoutMs);
    },
    map() {
      return plain(client.getChannelStateMap());
    },
    states(from = 0) {
      return log.since(from).filter((it) => it.kind === 'state').map((it) => it.state);
    },
    sent(from = 0) {
      return log.since(from).filter((it) => it.kind === 'sent').map((it) => it.payload);
    },
  };
  return watched;
}

/** Evaluate `read()` until `pred(value)` holds (server-side effects of a socket closing). */
async function until(what, read, pred, timeoutMs = cfg.waitMs) {
  const deadline = Date.now() + timeoutMs;
  let polls = 0;
  for (;;) {
    const value = await read();
    polls += 1;
    if (pred(value)) return { value, polls };
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Print the last line, then exit once everything written before it has been flushed. */
function finish(last, code) {
  process.stdout.write(JSON.stringify(last) + '\n', () => process.exit(code));
}

/** Run the scenario named on the command line from `scenarios`. */
function main(scenarios) {
  const name = process.argv[2];
  const scenario = scenarios[name];
  if (!scenario) {
    finish({ fatal: `unknown scenario ${name}; known: ${Object.keys(scenarios).join(', ')}` }, 2);
    return;
  }
  scenario().then(
    () => finish({ done: name }, 0),
    (err) => finish({ fatal: String(err && err.stack ? err.stack : err) }, 1),
  );
}

module.exports = {
  cfg,
  hop,
  out,
  record,
  plain,
  attempt,
  describeError,
  Log,
  edgeClient,
  watchClient,
  until,
  main,
  HopAPIError,
};
