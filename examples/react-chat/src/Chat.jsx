import { useCallback, useEffect, useState } from 'react';
import {
  ConnectionState,
  useChannelMessage,
  useConnectionState,
  useDirectMessage,
  useLeap,
  useReadChannelState,
} from '@onehop/react';
import { sendDirect, setTopic, stillSignedIn } from './api.js';

/** The chat room: Hop's hooks for the channel, its state, direct messages and the socket. */
export function Chat({ session }) {
  const { room, name, token } = session;
  const leap = useLeap();
  const connection = useConnectionState();
  // The room's state ({topic, members}) as the last INIT, AVAILABLE or STATE_UPDATE left it.
  const channel = useReadChannelState(room);
  const [messages, setMessages] = useState([]);
  const [direct, setDirect] = useState([]);
  const [revoked, setRevoked] = useState(false);
  const [problem, setProblem] = useState(null);

  // Other users' messages. A client's own MESSAGE is not sent back to it (as on Hop), so
  // send() below shows ours at once.
  const onChat = useCallback((data) => setMessages((all) => [...all, data]), []);
  useChannelMessage(room, 'CHAT', onChat);
  // useDirectMessage keeps the first listener it was given (its effect depends on the
  // event name only), so the listener must not close over state: use updater functions.
  useDirectMessage(
    'DM',
    useCallback((data) => setDirect((all) => [...all, data]), []),
  );

  // Hop's client does not say why a socket closed. On "errored", ask the backend whether
  // the token still exists: a deleted token means the session was revoked (the client
  // will not reconnect after close code 4001); anything else is a network problem that
  // the client recovers from by itself.
  useEffect(() => {
    if (connection !== ConnectionState.ERRORED) return undefined;
    let current = true;
    stillSignedIn(token).then((ok) => {
      if (current && !ok) setRevoked(true);
    });
    return () => {
      current = false;
    };
  }, [connection, token]);

  const connected = connection === ConnectionState.CONNECTED && !revoked;
  const state = channel.state || {};
  const members = Array.isArray(state.members) ? state.members : [];
  const others = members.filter((member) => member !== name);

  function send(event) {
    event.preventDefault();
    const input = event.currentTarget.elements.message;
    const text = input.value.trim();
    if (!text) return;
    // sendMessage throws unless the socket is connected; the button is disabled otherwise.
    leap.sendMessage(room, 'CHAT', { from: name, text });
    setMessages((all) => [...all, { from: name, text, mine: true }]);
    input.value = '';
  }

  async function backendCall(event, field, action) {
    event.preventDefault();
    const form = event.currentTarget;
    const value = form.elements[field].value.trim();
    if (!value) return;
    try {
      setProblem(null);
      await action(value, form);
      form.elements[field].value = '';
    } catch (failure) {
      setProblem(failure.message);
    }
  }

  return (
    <main className="chat">
      <header>
        <h1>
          #{room} <span className="topic" data-testid="topic">{state.topic || 'no topic'}</span>
        </h1>
        <p>
          Signed in as <strong data-testid="me">{name}</strong> ·{' '}
          <span className="connection" data-testid="connection" data-state={connection}>
            {connection}
          </span>{' '}
          · room <span data-testid="subscription">{channel.subscription}</span>
        </p>
        {revoked && (
          <p role="alert" data-testid="revoked">
            Your session was revoked. Sign in again to come back.
          </p>
        )}
        {problem && <p role="alert">{problem}</p>}
      </header>

      <section className="members">
        <h2>In the room</h2>
        <ul data-testid="members">
          {members.map((member) => (
            <li key={member}>{member}</li>
          ))}
        </ul>
      </section>

      <section className="messages">
        <h2>Messages</h2>
        <ul data-testid="messages">
          {messages.map((message, index) => (
            <li key={index} className={message.mine ? 'mine' : ''}>
              <b>{message.from}</b>: {message.text}
            </li>
          ))}
        </ul>
        <form onSubmit={send}>
          <input name="message" aria-label="Message" autoComplete="off" maxLength={500} />
          <button type="submit" disabled={!connected}>
            Send
          </button>
        </form>
      </section>

      <section className="direct">
        <h2>Direct messages</h2>
        <ul data-testid="direct">
          {direct.map((message, index) => (
            <li key={index}>
              <b>{message.from}</b> to you: {message.text}
            </li>
          ))}
        </ul>
        <form
          onSubmit={(event) =>
            backendCall(event, 'text', (text, form) => sendDirect(token, form.elements.to.value, text))
          }
        >
          <select name="to" aria-label="Recipient" disabled={others.length === 0}>
            {others.map((member) => (
              <option key={member}>{member}</option>
            ))}
          </select>
          <input name="text" aria-label="Direct message" autoComplete="off" maxLength={500} />
          <button type="submit" disabled={!connected || others.length === 0}>
            Send privately
          </button>
        </form>
      </section>

      <section className="settings">
        <form onSubmit={(event) => backendCall(event, 'topic', (topic) => setTopic(token, topic))}>
          <input name="topic" aria-label="Topic" autoComplete="off" maxLength={100} />
          <button type="submit" disabled={!connected}>
            Set topic
          </button>
        </form>
      </section>
    </main>
  );
}
