'use strict';
// Scenarios with the official browser SDK @onehop/client (`hop.init`, the Client's events,
// channel state map and listeners), the backend side done with @onehop/js.
// test_client_sdk.py asserts what is recorded here.

const { cfg, hop: backend, record, attempt, edgeClient, watchClient, until, main } = require('./harness.cjs');
const { ChannelType } = require('@onehop/js');
const { hop, leap } = require('@onehop/client');

function init(auth) {
  const watched = watchClient('client', leap.instance);
  const client = hop.init(auth, { leapSocketUrl: cfg.wsUrl });
  record('init_returns_instance', client === leap.instance);
  watched.attachLeap();
  return watched;
}

async function tokenClient() {
  const sdk = backend();
  const alice = await sdk.channels.tokens.create({ userId: 'alice' });
  const bob = await sdk.channels.tokens.create({ userId: 'bob' });
  await sdk.channels.create(ChannelType.PRIVATE, 'game', { state: { round: 1 } });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: { headline: 'hello' } });
  await sdk.channels.create(ChannelType.PRIVATE, 'vault', { state: { gold: 3 } });
  await sdk.channels.subscribeTokens('game', [alice.id, bob.id]);
  record('token', alice.id);
  record('bob', bob.id);

  const w = init({ projectId: cfg.projectId, token: alice.id });
  const { client } = w;
  await w.waitState('connected');
  record('connection_state', client.getConnectionState());
  record('game_after_init', await w.waitChannel('game', 'available'));
  record('states', w.states());
  record('map_after_init', w.map());

  // Channel message listener and the MESSAGE event.
  const unsubscribeMove = client.addMessageSubscription('game', 'MOVE', w.listener('game:MOVE'));
  let m = w.log.mark();
  await sdk.channels.publishMessage('game', 'MOVE', { x: 1 });
  record('listener_move', (await w.waitListener('game:MOVE', m)).data);
  record('event_move', await w.waitKind('message', (it) => it.event === 'MOVE', 'MESSAGE MOVE', m));

  // Direct message listener (the map useDirectMessage writes to) and the MESSAGE event.
  client.getDirectMessageListeners().set('NOTIFY', new Set([w.listener('dm:NOTIFY')]));
  m = w.log.mark();
  await sdk.channels.tokens.publishDirectMessage(alice.id, 'NOTIFY', { text: 'hi' });
  record('listener_dm', (await w.waitListener('dm:NOTIFY', m)).data);
  record('event_dm', await w.waitKind('message', (it) => it.event === 'NOTIFY', 'MESSAGE NOTIFY', m));

  // STATE_UPDATE after set and after patch; the channel map follows.
  m = w.log.mark();
  await sdk.channels.setState('game', { round: 2, board: [1] });
  record('state_update_set', await w.waitKind('state_update', () => true, 'STATE_UPDATE', m));
  record('map_game_after_set', w.map().game);
  m = w.log.mark();
  await sdk.channels.patchState('game', { turn: 'bob' });
  record('state_update_patch', await w.waitKind('state_update', () => true, 'STATE_UPDATE', m));
  record('map_game_after_patch', w.map().game);

  // A removed listener no longer fires (a direct message after it is the barrier).
  unsubscribeMove();
  m = w.log.mark();
  await sdk.channels.publishMessage('game', 'MOVE', { x: 2 });
  await sdk.channels.tokens.publishDirectMessage(alice.id, 'NOTIFY', 'barrier');
  await w.waitListener('dm:NOTIFY', m);
  record('after_unsubscribe_listener', w.log.since(m).filter((it) => it.kind === 'listener').map((it) => it.name));

  // subscribeToChannel: pending, then available / unavailable.
  m = w.log.mark();
  client.subscribeToChannel('news');
  record('news_pending', client.getChannelStateMap().get('news'));
  record('news_available', await w.waitChannel('news', 'available', m));
  record('news_sent', w.sent(m));
  m = w.log.mark();
  client.subscribeToChannel('vault');
  record('vault_not_granted', await w.waitChannel('vault', 'unavailable', m));
  m = w.log.mark();
  client.subscribeToChannel('ghost');
  record('ghost_unknown', await w.waitChannel('ghost', 'unavailable', m));

  // The backend grants the private channel while the client is online, then takes it back.
  m = w.log.mark();
  await sdk.channels.subscribeToken('vault', alice.id);
  record('vault_granted', await w.waitChannel('vault', 'available', m));
  m = w.log.mark();
  await sdk.channels.removeToken('vault', alice.id);
  record('vault_removed', await w.waitChannel('vault', 'unavailable', m));

  // Online status and stats while connected.
  await attempt('is_online', () => sdk.channels.tokens.isOnline(alice.id));
  await attempt('bob_is_online', () => sdk.channels.tokens.isOnline(bob.id));
  await attempt('stats_game', () => sdk.channels.getStats('game'));

  // sendMessage from the client reaches another subscriber (bob), not the sender.
  const bobEdge = await edgeClient('bob', { projectId: cfg.projectId, token: bob.id });
  await bobEdge.waitEvent('INIT');
  await attempt('stats_game_two', () => sdk.channels.getStats('game'));
  let e = bobEdge.log.mark();
  m = w.log.mark();
  client.sendMessage('game', 'CHAT', { text: 'hello bob' });
  record('chat_at_bob', (await bobEdge.waitEvent('MESSAGE', 'game', e)).data);
  await sdk.channels.tokens.publishDirectMessage(alice.id, 'NOTIFY', 'barrier');
  await w.waitListener('dm:NOTIFY', m);
  record('chat_at_sender', w.log.since(m).filter((it) => it.kind === 'message').map((it) => it.event));

  // setChannelState from a client is refused with an ERROR dispatch; the state is unchanged
  // and the connection stays up.
  m = w.log.mark();
  client.setChannelState('game', { hacked: true });
  const refused = await w.waitKind('service', (it) => it.eventType === 'ERROR', 'ERROR', m);
  record('set_channel_state_refused', { channelId: refused.channelId, data: refused.data });
  await attempt('state_after_refused', async () => (await sdk.channels.get('game')).state);
  record('connection_after_refused', client.getConnectionState());

  // The channel is deleted: unavailable, graceful.
  m = w.log.mark();
  await sdk.channels.delete('news');
  record('news_deleted', await w.waitChannel('news', 'unavailable', m));

  // TOKEN_STATE_UPDATE reaches the client (its handler logs a warning about the null
  // channel: a quirk of @onehop/client, not checked here).
  m = w.log.mark();
  await sdk.channels.tokens.setState(alice.id, { userId: 'alice', level: 2 });
  const tsu = await w.waitKind('service', (it) => it.eventType === 'TOKEN_STATE_UPDATE', 'TOKEN_STATE_UPDATE', m);
  record('token_state_update', { channelId: tsu.channelId, data: tsu.data });

  // unsubscribeFromChannel drops the token's subscription for good.
  m = w.log.mark();
  e = bobEdge.log.mark();
  client.unsubscribeFromChannel('game');
  record('unsubscribe_sent', w.sent(m));
  record('map_after_unsubscribe', Object.keys(w.map()).sort());
  const left = await until(
    'alice to leave game',
    async () => (await sdk.channels.getAllTokens('game')).map((t) => t.id),
    (ids) => !ids.includes(alice.id),
  );
  record('game_tokens_after_unsubscribe', left.value);
  await bobEdge.close();
}

async function tokenlessClient() {
  const sdk = backend();
  await sdk.channels.create(ChannelType.UNPROTECTED, 'lobby', { state: { open: true } });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: {} });

  const w = init({ projectId: cfg.projectId });
  const { client } = w;
  await w.waitState('connected');
  record('states', w.states());
  record('map_after_init', w.map());

  let m = w.log.mark();
  client.subscribeToChannel('lobby');
  record('lobby', await w.waitChannel('lobby', 'available', m));
  client.addMessageSubscription('lobby', 'HELLO', w.listener('lobby:HELLO'));
  m = w.log.mark();
  await sdk.channels.publishMessage('lobby', 'HELLO', { who: 'server' });
  record('listener_hello', (await w.waitListener('lobby:HELLO', m)).data);
  record('event_hello', await w.waitKind('message', (it) => it.event === 'HELLO', 'MESSAGE HELLO', m));
  m = w.log.mark();
  await sdk.channels.setState('lobby', { open: false });
  record('state_update', await w.waitKind('state_update', () => true, 'STATE_UPDATE', m));
  record('map_lobby', w.map().lobby);
  m = w.log.mark();
  client.subscribeToChannel('news');
  record('news', await w.waitChannel('news', 'unavailable', m));
  await attempt('stats_lobby', () => sdk.channels.getStats('lobby'));
  // Publishing needs a token: a tokenless sendMessage is refused with an ERROR dispatch.
  m = w.log.mark();
  client.sendMessage('lobby', 'CHAT', { text: 'hi' });
  const refused = await w.waitKind('service', (it) => it.eventType === 'ERROR', 'ERROR', m);
  record('send_message_refused', { channelId: refused.channelId, data: refused.data });
  record('connection_after_refused', client.getConnectionState());
}

async function badToken() {
  const w = init({ projectId: cfg.projectId, token: 'leap_token_doesnotexist' });
  await w.waitState('errored');
  const close = await w.waitKind('close', () => true, 'the socket to close');
  // The SDK decides to reconnect (or not) synchronously in its close handler.
  await new Promise((r) => setImmediate(r));
  record('close', { code: close.code, reason: close.reason });
  record('states', w.states());
  record('connection_state', w.client.getConnectionState());
  record('reconnects', w.connectCalls);
  record('services', w.log.items.filter((it) => it.kind === 'service').map((it) => it.eventType));
}

main({
  token_client: tokenClient,
  tokenless_client: tokenlessClient,
  bad_token: badToken,
});
