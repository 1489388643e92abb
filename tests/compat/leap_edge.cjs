'use strict';
// Realtime scenarios with @onehop/leap-edge-js (the socket layer under @onehop/client),
// the backend side done with @onehop/js. Each scenario records what the client saw;
// test_leap_edge.py asserts it.

const { cfg, hop, record, attempt, edgeClient, until, main } = require('./harness.cjs');
const { ChannelType } = require('@onehop/js');

/** What a serviceEvent carried, with the raw frame it came in. */
function seen(edge, item) {
  return { channelId: item.channelId, eventType: item.eventType, data: item.data, raw: edge.rawFor(item) };
}

async function tokenInit() {
  const sdk = hop();
  const alice = await sdk.channels.tokens.create({ userId: 'alice', name: 'Alice' });
  await sdk.channels.create(ChannelType.PRIVATE, 'game', { state: { round: 1 } });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: { headline: 'hello' } });
  await sdk.channels.create(ChannelType.UNPROTECTED, 'lobby', { state: {} });
  await sdk.channels.subscribeToken('game', alice.id);
  await sdk.channels.subscribeToken('news', alice.id);
  record('token', alice.id);

  const first = await edgeClient('first', { projectId: cfg.projectId, token: alice.id });
  const init = await first.waitEvent('INIT');
  record('hello', first.log.items.find((it) => it.kind === 'raw' && it.frame.op === 1).frame);
  record('init', seen(first, init));
  record('states', first.states());
  record('connection_state', first.client.connectionState);
  await attempt('is_online', () => sdk.channels.tokens.isOnline(alice.id));
  await attempt('token_is_online_field', async () => (await sdk.channels.tokens.get(alice.id)).is_online);

  const second = await edgeClient('second', { projectId: cfg.projectId, token: alice.id });
  record('second_init', seen(second, await second.waitEvent('INIT')));

  // Both connections of the token get its direct messages and its channels' messages.
  let a = first.log.mark();
  let b = second.log.mark();
  await sdk.channels.tokens.publishDirectMessage(alice.id, 'NOTIFY', { n: 1 });
  await sdk.channels.publishMessage('game', 'MOVE', { n: 2 });
  record('both_got', {
    first: [(await first.waitEvent('DIRECT_MESSAGE', null, a)).data, (await first.waitEvent('MESSAGE', 'game', a)).data],
    second: [(await second.waitEvent('DIRECT_MESSAGE', null, b)).data, (await second.waitEvent('MESSAGE', 'game', b)).data],
  });
  await attempt('stats_two_connections', () => sdk.channels.getStats('game'));

  // Heartbeat: the server acks a client beat (the client checks an ack within 5 s).
  const m = first.log.mark();
  first.client._sendHeartbeat();
  record('heartbeat_ack', (await first.log.waitFor((it) => it.kind === 'raw' && it.frame.op === 4, 'op 4', m)).frame.op);
  await first.close();
  await second.close();
}

async function subscribe() {
  const sdk = hop();
  const bob = await sdk.channels.tokens.create({ userId: 'bob' });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: { headline: 'hello' } });
  await sdk.channels.create(ChannelType.UNPROTECTED, 'lobby', { state: { open: true } });
  await sdk.channels.create(ChannelType.PRIVATE, 'vault', { state: { gold: 1 } });
  record('token', bob.id);

  const edge = await edgeClient('bob', { projectId: cfg.projectId, token: bob.id });
  record('init', seen(edge, await edge.waitEvent('INIT')));
  for (const channel of ['news', 'lobby', 'vault', 'ghost']) {
    const m = edge.log.mark();
    edge.subscribe(channel);
    const reply = await edge.log.waitFor(
      (it) => it.kind === 'event' && (it.eventType === 'AVAILABLE' || it.eventType === 'UNAVAILABLE') && it.channelId === channel,
      `AVAILABLE or UNAVAILABLE on ${channel}`,
      m,
    );
    record(`subscribe_${channel}`, seen(edge, reply));
  }
  await attempt('stats_news', () => sdk.channels.getStats('news'));
  await attempt('stats_vault', () => sdk.channels.getStats('vault'));
  await attempt('tokens_news', async () => (await sdk.channels.getAllTokens('news')).map((t) => t.id));
  await attempt('tokens_vault', async () => (await sdk.channels.getAllTokens('vault')).map((t) => t.id));
  await edge.close();
}

async function delivery() {
  const sdk = hop();
  const alice = await sdk.channels.tokens.create({ userId: 'alice' });
  await sdk.channels.create(ChannelType.PRIVATE, 'game', { state: { round: 1, board: [0, 0] } });
  await sdk.channels.subscribeToken('game', alice.id);
  record('token', alice.id);

  const edge = await edgeClient('alice', { projectId: cfg.projectId, token: alice.id });
  await edge.waitEvent('INIT');

  const step = async (name, eventType, channelId, action) => {
    const m = edge.log.mark();
    await action();
    record(name, seen(edge, await edge.waitEvent(eventType, channelId, m)));
  };
  await step('message', 'MESSAGE', 'game', () => sdk.channels.publishMessage('game', 'MOVE', { x: 1, y: [2, 3] }));
  await step('message_string', 'MESSAGE', 'game', () => sdk.channels.publishMessage('game', 'TEXT', 'hello'));
  await step('message_null', 'MESSAGE', 'game', () => sdk.channels.publishMessage('game', 'EMPTY', null));
  await step('message_no_data', 'MESSAGE', 'game', () => sdk.channels.publishMessage('game', 'NODATA'));
  await step('direct_message', 'DIRECT_MESSAGE', null, () =>
    sdk.channels.tokens.publishDirectMessage(alice.id, 'NOTIFY', { text: 'hi' }),
  );
  await step('state_set', 'STATE_UPDATE', 'game', () => sdk.channels.setState('game', { round: 2, board: [1, 0] }));
  await step('state_patch', 'STATE_UPDATE', 'game', () => sdk.channels.patchState('game', { turn: 'b' }));
  await step('state_set_fn', 'STATE_UPDATE', 'game', () =>
    sdk.channels.setState('game', (old) => ({ round: old.round + 1 })),
  );
  await step('state_patch_fn', 'STATE_UPDATE', 'game', () =>
    sdk.channels.patchState('game', (old) => ({ round: old.round * 10, done: true })),
  );
  await step('token_state_update', 'TOKEN_STATE_UPDATE', null, () =>
    sdk.channels.tokens.setState(alice.id, { userId: 'alice', level: 2 }),
  );
  // A new connection of the token gets the new state as metadata, and the channel's state.
  const later = await edgeClient('later', { projectId: cfg.projectId, token: alice.id });
  record('init_after_updates', seen(later, await later.waitEvent('INIT')));
  await later.close();
  await edge.close();
}

async function lifecycle() {
  const sdk = hop();
  const alice = await sdk.channels.tokens.create({ userId: 'alice' });
  await sdk.channels.create(ChannelType.PRIVATE, 'game', { state: { round: 7 } });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: { n: 1 } });
  record('token', alice.id);

  const edge = await edgeClient('alice', { projectId: cfg.projectId, token: alice.id });
  record('init', seen(edge, await edge.waitEvent('INIT')));

  // The backend grants a private channel to a token that is online: AVAILABLE is pushed.
  let m = edge.log.mark();
  await sdk.channels.subscribeToken('game', alice.id);
  record('pushed_available', seen(edge, await edge.waitEvent('AVAILABLE', 'game', m)));
  m = edge.log.mark();
  await sdk.channels.publishMessage('game', 'AFTER_GRANT', 1);
  record('message_after_grant', seen(edge, await edge.waitEvent('MESSAGE', 'game', m)));

  // removeToken: UNAVAILABLE {graceful: true}; then the channel's messages stop. A direct
  // message sent after the channel message is the barrier that proves nothing came.
  m = edge.log.mark();
  await sdk.channels.removeToken('game', alice.id);
  record('removed', seen(edge, await edge.waitEvent('UNAVAILABLE', 'game', m)));
  m = edge.log.mark();
  await sdk.channels.publishMessage('game', 'AFTER_REMOVE', 1);
  await sdk.channels.tokens.publishDirectMessage(alice.id, 'BARRIER', 1);
  await edge.waitEvent('DIRECT_MESSAGE', null, m);
  record('events_after_remove', edge.log.since(m).filter((it) => it.kind === 'event').map((it) => it.eventType));
  await attempt('tokens_after_remove', async () => (await sdk.channels.getAllTokens('game')).map((t) => t.id));

  // Channel deleted while subscribed (granted by the backend, and subscribed by the client).
  await sdk.channels.subscribeToken('game', alice.id);
  m = edge.log.mark();
  edge.subscribe('news');
  await edge.waitEvent('AVAILABLE', 'news', m);
  m = edge.log.mark();
  await sdk.channels.delete('game');
  record('deleted_game', seen(edge, await edge.waitEvent('UNAVAILABLE', 'game', m)));
  m = edge.log.mark();
  await sdk.channels.delete('news');
  record('deleted_news', seen(edge, await edge.waitEvent('UNAVAILABLE', 'news', m)));

  // A channel created again under the same ID does not bring back the old subscription.
  await sdk.channels.create(ChannelType.PRIVATE, 'game', { state: {} });
  await attempt('tokens_recreated', async () => (await sdk.channels.getAllTokens('game')).map((t) => t.id));
  m = edge.log.mark();
  edge.subscribe('game');
  record('resubscribe_recreated', seen(edge, await edge.waitEvent('UNAVAILABLE', 'game', m)));

  // Deleting the token closes its sockets with 4001, and the SDK does not reconnect.
  m = edge.log.mark();
  await sdk.channels.tokens.delete(alice.id);
  record('token_deleted_close', await edge.waitClose(m));
  await edge.waitState('errored', m);
  await new Promise((r) => setImmediate(r));
  record('token_deleted_connect_calls', edge.connectCalls);
  record('token_deleted_state', edge.client.connectionState);
}

async function badAuth() {
  const sdk = hop();
  const alice = await sdk.channels.tokens.create({});
  const cases = {
    unknown_token: { projectId: cfg.projectId, token: 'leap_token_doesnotexist' },
    not_a_token: { projectId: cfg.projectId, token: 'garbage' },
    wrong_project: { projectId: 'project_doesnotexist', token: alice.id },
  };
  if (process.env.SB_FOREIGN_TOKEN) cases.foreign_token = { projectId: cfg.projectId, token: process.env.SB_FOREIGN_TOKEN };
  for (const [name, auth] of Object.entries(cases)) {
    const edge = await edgeClient(name, auth);
    const close = await edge.waitClose();
    await edge.waitState('errored');
    // The SDK decides to reconnect (or not) synchronously in its close handler.
    await new Promise((r) => setImmediate(r));
    record(name, {
      close,
      states: edge.states(),
      events: edge.log.items.filter((it) => it.kind === 'event').map((it) => it.eventType),
      connectCalls: edge.connectCalls,
      socket: edge.client.socket,
    });
  }
  await attempt('is_online_after', () => sdk.channels.tokens.isOnline(alice.id));
}

async function tokenless() {
  const sdk = hop();
  await sdk.channels.create(ChannelType.UNPROTECTED, 'lobby', { state: { open: true } });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: {} });
  await sdk.channels.create(ChannelType.PRIVATE, 'vault', { state: {} });

  const edge = await edgeClient('anon', { projectId: cfg.projectId });
  const init = await edge.waitEvent('INIT');
  record('identify', edge.log.items.find((it) => it.kind === 'sent' && it.frame.op === 2).frame);
  record('init', seen(edge, init));
  for (const channel of ['lobby', 'news', 'vault', 'ghost']) {
    const m = edge.log.mark();
    edge.subscribe(channel);
    const reply = await edge.log.waitFor(
      (it) => it.kind === 'event' && (it.eventType === 'AVAILABLE' || it.eventType === 'UNAVAILABLE') && it.channelId === channel,
      `AVAILABLE or UNAVAILABLE on ${channel}`,
      m,
    );
    record(`subscribe_${channel}`, seen(edge, reply));
  }
  await attempt('stats_lobby', () => sdk.channels.getStats('lobby'));
  await attempt('tokens_lobby', () => sdk.channels.getAllTokens('lobby'));
  let m = edge.log.mark();
  await sdk.channels.publishMessage('lobby', 'HELLO', { who: 'server' });
  record('message', seen(edge, await edge.waitEvent('MESSAGE', 'lobby', m)));
  m = edge.log.mark();
  await sdk.channels.patchState('lobby', { visitors: 1 });
  record('state_patch', seen(edge, await edge.waitEvent('STATE_UPDATE', 'lobby', m)));
  m = edge.log.mark();
  await sdk.channels.delete('lobby');
  record('deleted', seen(edge, await edge.waitEvent('UNAVAILABLE', 'lobby', m)));
  await edge.close();
}

async function socketUrls() {
  // The docs' URL form (/1.0/ws?encoding=json) works the same as /ws.
  const sdk = hop();
  const alice = await sdk.channels.tokens.create({ userId: 'alice' });
  const url = cfg.wsUrl.replace(/\/ws$/, '/1.0/ws?encoding=json');
  const edge = await edgeClient('docs-url', { projectId: cfg.projectId, token: alice.id }, { socketUrl: url });
  record('url', url);
  record('init', seen(edge, await edge.waitEvent('INIT')));
  await edge.close();
  const offline = await until('the token to go offline', () => sdk.channels.tokens.isOnline(alice.id), (v) => v === false);
  record('offline_after_close', offline.value);
}

async function oddIds() {
  // IDs with every character SPEC allows besides letters and digits. @onehop/js puts them
  // into the URL path as they are (it does not percent-encode).
  const sdk = hop();
  const id = 'chat:room@1.x-y_Z';
  const alice = await sdk.channels.tokens.create({ userId: 'alice' });
  await attempt('create', () => sdk.channels.create(ChannelType.PRIVATE, id, { state: { n: 1 } }));
  await attempt('get', async () => (await sdk.channels.get(id)).id);
  await attempt('patch_state', () => sdk.channels.patchState(id, { m: 2 }));
  await attempt('subscribe_token', () => sdk.channels.subscribeToken(id, alice.id));
  await attempt('tokens', async () => (await sdk.channels.getAllTokens(id)).map((t) => t.id));
  const edge = await edgeClient('alice', { projectId: cfg.projectId, token: alice.id });
  record('init_channels', (await edge.waitEvent('INIT')).data.channels.map((c) => [c.id, c.state]));
  const m = edge.log.mark();
  await sdk.channels.publishMessage(id, 'PING', 1);
  record('message', seen(edge, await edge.waitEvent('MESSAGE', id, m)));
  await attempt('stats', () => sdk.channels.getStats(id));
  await attempt('delete', () => sdk.channels.delete(id));
  await edge.close();
}

async function heartbeats() {
  // Run against a server with a short heartbeat interval.
  const sdk = hop();
  const alice = await sdk.channels.tokens.create({});
  const edge = await edgeClient('alice', { projectId: cfg.projectId, token: alice.id });
  await edge.waitEvent('INIT');
  record('hello', edge.log.items.find((it) => it.kind === 'raw' && it.frame.op === 1).frame);
  // The SDK beats every interval on its own; the server acks each one.
  const acks = [];
  for (let i = 0; i < 2; i++) {
    const beat = await edge.log.waitFor((it) => it.kind === 'sent' && it.frame.op === 3, `beat ${i + 1}`, edge.log.mark());
    const ack = await edge.log.waitFor((it) => it.kind === 'raw' && it.frame.op === 4, `ack ${i + 1}`, edge.log.items.indexOf(beat));
    acks.push({ beat: beat.frame, ack: ack.frame });
  }
  record('beats', acks);
  // Silence the SDK's own beats: the server probes with a tag, the SDK echoes it, the server
  // acks with the tag and the latency; the connection stays up.
  clearInterval(edge.client.heartbeat);
  const m = edge.log.mark();
  const probe = await edge.log.waitFor((it) => it.kind === 'raw' && it.frame.op === 3, 'a server probe', m);
  const echo = await edge.log.waitFor((it) => it.kind === 'sent' && it.frame.op === 3, 'the echo', m);
  const ack = await edge.log.waitFor((it) => it.kind === 'raw' && it.frame.op === 4, 'the probe ack', m);
  record('probe', { probe: probe.frame, echo: echo.frame, ack: ack.frame });
  record('state', edge.client.connectionState);
  record('closes', edge.log.items.filter((it) => it.kind === 'close'));
  await attempt('is_online', () => sdk.channels.tokens.isOnline(alice.id));
  await edge.close();
}

main({
  odd_ids: oddIds,
  heartbeats,
  token_init: tokenInit,
  subscribe,
  delivery,
  lifecycle,
  bad_auth: badAuth,
  tokenless,
  socket_urls: socketUrls,
});
