'use strict';
// Hop's Tokens walkthrough (docs: other-products/channels/tokens.mdx), unchanged except for
// the URLs: a backend process with @onehop/js and a browser process with @onehop/client.
// test_walkthrough.py runs the pieces in order and ends the browser as a closed tab would.
//
//   backend_setup   a token per user with state {userId}; private channel `game`; subscribe the tokens
//   browser         hop.init({projectId, token}) (SB_TOKEN), listen, report what arrives
//   backend_act     isOnline, publishDirectMessage, publishMessage, setState (SB_TOKEN, SB_OTHER_TOKEN)
//   backend_offline isOnline once the browser is gone

const { cfg, hop: backend, record, attempt, watchClient, until, main } = require('./harness.cjs');
const { ChannelType } = require('@onehop/js');

const USERS = ['user_1', 'user_2'];
const BROWSER_WAIT_MS = 15000; // the browser waits for the backend process pytest starts (pytest itself gives up at 20 s)

async function backendSetup() {
  const hop = backend();
  const tokens = {};
  for (const userId of USERS) {
    // "Generate a token for each user and store it in your database"
    const token = await hop.channels.tokens.create({ userId });
    tokens[userId] = token.id;
    record(`token_${userId}`, token);
  }
  const channel = await hop.channels.create(ChannelType.PRIVATE, 'game', { state: { status: 'waiting' } });
  record('channel', channel);
  for (const userId of USERS) await hop.channels.subscribeToken('game', tokens[userId]);
  record('tokens', tokens);
  await attempt('subscribed', async () => (await hop.channels.getAllTokens('game')).map((t) => t.state.userId).sort());
  await attempt('online_before', () => hop.channels.tokens.isOnline(tokens.user_1));
}

async function browser() {
  const { hop, leap } = require('@onehop/client');
  const token = process.env.SB_TOKEN;
  const w = watchClient('browser', leap.instance);
  const client = hop.init({ projectId: cfg.projectId, token }, { leapSocketUrl: cfg.wsUrl });
  client.getDirectMessageListeners().set('NOTIFICATION', new Set([w.listener('NOTIFICATION')]));
  client.addMessageSubscription('game', 'MOVE', w.listener('game:MOVE'));
  await w.waitState('connected');
  const game = await w.waitChannel('game', 'available');
  record('ready', { connection: client.getConnectionState(), game });
  record('direct_message', (await w.waitListener('NOTIFICATION', 0, BROWSER_WAIT_MS)).data);
  record('message', (await w.waitListener('game:MOVE', 0, BROWSER_WAIT_MS)).data);
  const update = await w.waitKind('state_update', () => true, 'STATE_UPDATE', 0, BROWSER_WAIT_MS);
  record('state_update', { channel: update.channel, state: update.state, map: w.map().game });
  // Stay connected until pytest closes the "tab".
  await new Promise(() => {});
}

async function backendAct() {
  const hop = backend();
  const token = process.env.SB_TOKEN;
  await attempt('online_while_connected', () => hop.channels.tokens.isOnline(token));
  await attempt('other_user_online', () => hop.channels.tokens.isOnline(process.env.SB_OTHER_TOKEN));
  await attempt('online_by_object', async () => hop.channels.tokens.isOnline(await hop.channels.tokens.get(token)));
  await attempt('stats', () => hop.channels.getStats('game'));
  await attempt('direct_message', () =>
    hop.channels.tokens.publishDirectMessage(token, 'NOTIFICATION', { title: 'Your turn', body: 'Make a move' }),
  );
  await attempt('message', () => hop.channels.publishMessage('game', 'MOVE', { from: 'user_2', square: 'e4' }));
  await attempt('state', () => hop.channels.setState('game', { status: 'playing', turn: 'user_1' }));
}

async function backendOffline() {
  const hop = backend();
  const token = process.env.SB_TOKEN;
  // The server learns of the closed socket asynchronously: ask until it says offline.
  const offline = await until('the token to go offline', () => hop.channels.tokens.isOnline(token), (v) => v === false);
  record('online_after_close', offline.value);
  await attempt('stats_after_close', () => hop.channels.getStats('game'));
  await attempt('token_after_close', () => hop.channels.tokens.get(token));
}

main({
  backend_setup: backendSetup,
  browser,
  backend_act: backendAct,
  backend_offline: backendOffline,
});
