import { useState } from 'react';
import { hop } from '@onehop/client';
import { Chat } from './Chat.jsx';
import { login } from './api.js';

/**
 * The socket URL the backend handed out, made absolute: it may be relative to the page
 * ("/ws" when a reverse proxy serves the app and Switchboard on one origin).
 */
function absoluteSocketUrl(url) {
  const resolved = new URL(url, window.location.href);
  if (resolved.protocol === 'http:') resolved.protocol = 'ws:';
  if (resolved.protocol === 'https:') resolved.protocol = 'wss:';
  return resolved.toString();
}

export function App() {
  const [session, setSession] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function signIn(event) {
    event.preventDefault();
    const name = new FormData(event.currentTarget).get('name').trim();
    if (!name) return;
    setBusy(true);
    setError(null);
    try {
      const answer = await login(name);
      // The one line a Hop app changes: where the socket is. `useInit` from @onehop/react
      // cannot take this option, so the app calls hop.init itself; every hook then uses
      // the same client (leap.instance).
      hop.init(
        { projectId: answer.projectId, token: answer.token },
        { leapSocketUrl: absoluteSocketUrl(answer.socketUrl) },
      );
      setSession(answer);
    } catch (failure) {
      setError(failure.message);
    } finally {
      setBusy(false);
    }
  }

  if (session) return <Chat session={session} />;
  return (
    <main className="login">
      <h1>React chat</h1>
      <p>A private room on Switchboard, through Hop&apos;s own React SDK.</p>
      <form onSubmit={signIn}>
        <label>
          Your name <input name="name" autoComplete="off" required maxLength={40} />
        </label>
        <button type="submit" disabled={busy}>
          Join
        </button>
      </form>
      {error && <p role="alert">{error}</p>}
    </main>
  );
}
