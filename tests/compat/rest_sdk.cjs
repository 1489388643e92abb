'use strict';
// Every method of `hop.channels` and `hop.channels.tokens` in @onehop/js, against a real
// server. Records what each call returned (or threw); test_rest_sdk.py asserts it.

const { cfg, hop, record, attempt, main, out } = require('./harness.cjs');
const { Hop, ChannelType } = require('@onehop/js');

async function channels() {
  const sdk = hop();
  const ch = sdk.channels;

  // create: with an id (PUT), with an id and state, without an id (POST), with state only.
  const lobby = await attempt('create_with_id', () => ch.create(ChannelType.UNPROTECTED, 'lobby'));
  record('create_with_id_methods', {
    setState: typeof lobby.setState,
    patchState: typeof lobby.patchState,
    subscribeToken: typeof lobby.subscribeToken,
    subscribeTokens: typeof lobby.subscribeTokens,
    removeToken: typeof lobby.removeToken,
    publishMessage: typeof lobby.publishMessage,
  });
  await attempt('create_with_id_and_state', () =>
    ch.create(ChannelType.PRIVATE, 'game', { state: { round: 1, players: ['a'] } }),
  );
  await attempt('create_generated', () => ch.create(ChannelType.PUBLIC));
  await attempt('create_generated_with_state', () => ch.create(ChannelType.PUBLIC, null, { state: { topic: 'news' } }));
  await attempt('create_duplicate', () => ch.create(ChannelType.PUBLIC, 'lobby'));
  await attempt('create_bad_type', () => ch.create('secret', 'bad-type'));
  await attempt('create_reserved_id', () => ch.create(ChannelType.PUBLIC, 'tokens'));

  // get / getAll
  await attempt('get', () => ch.get('game'));
  const all = await attempt('get_all', () => ch.getAll());
  record('get_all_has_methods', all.map((c) => typeof c.setState === 'function'));
  await attempt('get_missing', () => ch.get('nope'));

  // setState / patchState, object and function forms, via the SDK and the bound methods.
  await attempt('set_state', () => ch.setState('game', { round: 2, score: { a: 1 } }));
  await attempt('set_state_read', async () => (await ch.get('game')).state);
  await attempt('patch_state', () => ch.patchState('game', { score: { b: 2 }, winner: null }));
  await attempt('patch_state_read', async () => (await ch.get('game')).state);
  let seenBySet;
  await attempt('set_state_fn', () =>
    ch.setState('game', (old) => {
      seenBySet = old;
      return { round: old.round + 1 };
    }),
  );
  record('set_state_fn_old', seenBySet);
  await attempt('set_state_fn_read', async () => (await ch.get('game')).state);
  let seenByPatch;
  await attempt('patch_state_fn', () =>
    ch.patchState('game', async (old) => {
      seenByPatch = old;
      return { round: old.round * 10, extra: true };
    }),
  );
  record('patch_state_fn_old', seenByPatch);
  await attempt('patch_state_fn_read', async () => (await ch.get('game')).state);
  await attempt('set_state_by_object', () => ch.setState(lobby, { open: true }));
  await attempt('bound_set_state', () => lobby.setState({ open: false, n: 1 }));
  await attempt('bound_patch_state', () => lobby.patchState((old) => ({ n: old.n + 1 })));
  await attempt('bound_state_read', async () => (await ch.get('lobby')).state);
  await attempt('set_state_missing', () => ch.setState('nope', { a: 1 }));
  await attempt('patch_state_missing', () => ch.patchState('nope', { a: 1 }));
  await attempt('set_state_not_object', () => ch.setState('game', [1, 2, 3]));

  // publishMessage (nobody listening here; delivery is tested with the realtime SDKs)
  await attempt('publish_message', () => ch.publishMessage('game', 'MOVE', { x: 1 }));
  await attempt('publish_message_by_object', () => ch.publishMessage(lobby, 'PING', 'text'));
  await attempt('bound_publish_message', () => lobby.publishMessage('PING', [1, 2]));
  await attempt('publish_message_missing', () => ch.publishMessage('nope', 'MOVE', {}));

  // tokens
  const tk = ch.tokens;
  const alice = await attempt('tokens_create', () => tk.create({ userId: 'alice' }));
  const bob = await attempt('tokens_create_default', () => tk.create());
  const carol = await attempt('tokens_create_carol', () => tk.create({ userId: 'carol' }));
  await attempt('tokens_get', () => tk.get(alice.id));
  await attempt('tokens_set_state', () => tk.setState(bob.id, { userId: 'bob', tier: 'gold' }));
  await attempt('tokens_set_state_replaces', () => tk.setState(bob.id, { userId: 'bob' }));
  await attempt('tokens_get_after_set_state', () => tk.get(bob.id));
  await attempt('tokens_is_online_by_id', () => tk.isOnline(alice.id));
  await attempt('tokens_is_online_by_object', () => tk.isOnline(alice));
  await attempt('tokens_get_missing', () => tk.get('leap_token_doesnotexist'));
  await attempt('tokens_is_online_missing', () => tk.isOnline('leap_token_doesnotexist'));
  await attempt('tokens_publish_direct_message', () => tk.publishDirectMessage(alice.id, 'NOTIFY', { hi: 1 }));
  await attempt('tokens_publish_direct_message_missing', () =>
    tk.publishDirectMessage('leap_token_doesnotexist', 'NOTIFY', {}),
  );

  // subscriptions
  await attempt('subscribe_token', () => ch.subscribeToken('game', alice.id));
  await attempt('subscribe_token_again', () => ch.subscribeToken('game', alice.id));
  await attempt('subscribe_tokens', () => ch.subscribeTokens('game', [bob.id, carol.id, 'leap_token_doesnotexist']));
  await attempt('get_all_tokens', () => ch.getAllTokens('game'));
  await attempt('get_all_tokens_by_object', async () => ch.getAllTokens(await ch.get('game')));
  await attempt('remove_token', () => ch.removeToken('game', bob.id));
  await attempt('get_all_tokens_after_remove', () => ch.getAllTokens('game'));
  await attempt('remove_tokens', () => ch.removeTokens('game', [alice.id, carol.id]));
  await attempt('get_all_tokens_after_remove_tokens', () => ch.getAllTokens('game'));
  await attempt('bound_subscribe_token', () => lobby.subscribeToken(alice.id));
  await attempt('bound_subscribe_tokens', () => lobby.subscribeTokens(new Set([bob.id])));
  await attempt('bound_remove_token', () => lobby.removeToken(bob.id));
  await attempt('lobby_tokens', () => ch.getAllTokens(lobby));
  await attempt('subscribe_token_missing_channel', () => ch.subscribeToken('nope', alice.id));
  await attempt('subscribe_token_missing_token', () => ch.subscribeToken('game', 'leap_token_doesnotexist'));
  await attempt('get_all_tokens_missing', () => ch.getAllTokens('nope'));

  // stats
  await attempt('get_stats', () => ch.getStats('game'));
  await attempt('get_stats_missing', () => ch.getStats('nope'));

  // delete
  await attempt('tokens_delete', () => tk.delete(carol.id));
  await attempt('tokens_get_deleted', () => tk.get(carol.id));
  await attempt('tokens_delete_missing', () => tk.delete(carol.id));
  await attempt('delete', () => ch.delete('lobby'));
  await attempt('get_deleted', () => ch.get('lobby'));
  await attempt('delete_missing', () => ch.delete('lobby'));
  await attempt('get_all_after_delete', async () => (await ch.getAll()).map((c) => c.id).sort());

  // auth: a project token the server does not know, and the `Bearer` scheme is not sent by the SDK.
  const stranger = new Hop('ptk_doesnotexist', cfg.baseUrl);
  await attempt('unknown_project_token', () => stranger.channels.get('game'));
  await attempt('unknown_project_token_tokens', () => stranger.channels.tokens.create({}));
  // The ?project= query the SDK adds when asked: the right project works, another is refused.
  await attempt('create_with_project', () => ch.create(ChannelType.PUBLIC, 'with-project', null, cfg.projectId));
  await attempt('create_with_foreign_project', () =>
    ch.create(ChannelType.PUBLIC, 'foreign', null, 'project_someoneelse'),
  );
  await attempt('get_all_with_project', async () => (await ch.getAll(cfg.projectId)).map((c) => c.id).sort());
  await attempt('tokens_create_with_project', () => tk.create({ p: 1 }, cfg.projectId));
  out({ step: 'project_id', value: cfg.projectId });
}

async function foreign() {
  // Run with another project's token; SB_OTHER_PROJECT is the project that owns `mine`.
  const ch = hop().channels;
  await attempt('get_foreign_channel', () => ch.get('mine'));
  await attempt('publish_foreign_channel', () => ch.publishMessage('mine', 'X', 1));
  await attempt('get_all_with_foreign_project', () => ch.getAll(process.env.SB_OTHER_PROJECT));
  await attempt('get_all_own', () => ch.getAll());
}

async function restricted() {
  // Run with a project token that has only read_channels: reads work, the rest is a 403.
  const ch = hop().channels;
  await attempt('restricted_get_all', async () => (await ch.getAll()).map((c) => c.id));
  await attempt('restricted_delete', () => ch.delete('mine'));
  await attempt('restricted_tokens_create', () => ch.tokens.create({}));
  await attempt('restricted_get_after', async () => (await ch.get('mine')).id);
}

async function history() {
  // A channel with history (made over REST beforehand) carries a `history` key Hop's
  // channels lack: the SDK returns it along, and its methods work on such a channel.
  const ch = hop().channels;
  await attempt('history_get', () => ch.get('kept'));
  await attempt('history_get_all', () => ch.getAll());
  const kept = await ch.get('kept');
  await attempt('history_bound_publish', () => kept.publishMessage('MOVE', { x: 1 }));
  await attempt('history_bound_set_state', () => kept.setState({ round: 2 }));
  await attempt('history_state_read', async () => (await ch.get('kept')).state);
}

main({ channels, foreign, restricted, history });
