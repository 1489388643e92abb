'use strict';
// The official client across a server restart (test_reconnect.py restarts a
// `switchboard serve` process on the same port and data dir when told "ready").
//
// With a token, @onehop/client does not subscribe again after reconnecting: it relies on
// INIT listing the token's channels. Without a token it re-sends SUBSCRIBE for the
// channels it had. Both are checked, in one process, across the same restart.

const { cfg, hop: backend, record, watchClient, main } = require('./harness.cjs');
const { ChannelType } = require('@onehop/js');
const { hop, leap } = require('@onehop/client');

const RESTART_WAIT_MS = 30000;

async function restart() {
  const sdk = backend();
  const alice = await sdk.channels.tokens.create({ userId: 'alice' });
  await sdk.channels.create(ChannelType.PRIVATE, 'game', { state: { round: 1 } });
  await sdk.channels.create(ChannelType.PUBLIC, 'news', { state: { headline: 'before' } });
  await sdk.channels.create(ChannelType.UNPROTECTED, 'lobby', { state: { open: true } });
  await sdk.channels.subscribeToken('game', alice.id);

  // The token client: `game` granted by the backend, `news` subscribed from the client.
  const w = watchClient('token', leap.instance);
  hop.init({ projectId: cfg.projectId, token: alice.id }, { leapSocketUrl: cfg.wsUrl });
  w.attachLeap();
  await w.waitState('connected');
  await w.waitChannel('game', 'available');
  let m = w.log.mark();
  w.client.subscribeToChannel('news');
  await w.waitChannel('news', 'available', m);
  w.client.addMessageSubscription('game', 'AFTER', w.listener('game:AFTER'));

  // A tokenless client on the unprotected channel.
  const anon = watchClient('anon', new leap.Client());
  anon.client.connect({ projectId: cfg.projectId }, { socketUrl: cfg.wsUrl });
  anon.attachLeap();
  await anon.waitState('connected');
  let a = anon.log.mark();
  anon.client.subscribeToChannel('lobby');
  await anon.waitChannel('lobby', 'available', a);
  anon.client.addMessageSubscription('lobby', 'AFTER', anon.listener('lobby:AFTER'));

  m = w.log.mark();
  a = anon.log.mark();
  record('ready', { token: alice.id, map: w.map(), anon: anon.map() });

  // pytest restarts the server now. Both clients drop, retry, and come back.
  await w.waitState('errored', m, RESTART_WAIT_MS);
  const back = await w.waitState('connected', m, RESTART_WAIT_MS);
  const from = w.log.items.indexOf(back);
  const game = await w.waitChannel('game', 'available', from);
  const news = await w.waitChannel('news', 'available', from);
  const init = w.log.since(m).find((it) => it.kind === 'service' && it.eventType === 'INIT');
  record('token_reconnected', {
    states: w.states(m),
    closes: w.log.since(m).filter((it) => it.kind === 'close').map((it) => it.code),
    init: init && init.data,
    game,
    news,
    sent: w.sent(m),
    pending: w.client.getCurrentPendingSubscriptions(),
  });

  await anon.waitState('errored', a, RESTART_WAIT_MS);
  const anonBack = await anon.waitState('connected', a, RESTART_WAIT_MS);
  const lobby = await anon.waitChannel('lobby', 'available', anon.log.items.indexOf(anonBack));
  record('anon_reconnected', { lobby, sent: anon.sent(a) });

  // The restarted server delivers to both, without any action from the clients.
  m = w.log.mark();
  await sdk.channels.publishMessage('game', 'AFTER', { n: 1 });
  record('token_message_after', (await w.waitListener('game:AFTER', m)).data);
  m = w.log.mark();
  await sdk.channels.setState('news', { headline: 'after' });
  const update = await w.waitKind('state_update', (it) => it.channel === 'news', 'STATE_UPDATE news', m);
  record('token_state_after', update.state);
  a = anon.log.mark();
  await sdk.channels.publishMessage('lobby', 'AFTER', { n: 2 });
  record('anon_message_after', (await anon.waitListener('lobby:AFTER', a)).data);
  record('is_online_after', await sdk.channels.tokens.isOnline(alice.id));
}

main({ restart });
