// The page's calls to its own backend (backend.py). The project token never reaches the
// browser: the backend holds it and hands each user a Leap token instead.

async function call(method, path, { token, body } = {}) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || `${method} ${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

/** Sign in as `name`: {name, projectId, token, socketUrl, room}. */
export const login = (name) => call('POST', '/api/login', { body: { name } });

/** Is this session's token still valid? false only when the backend says it is gone (401). */
export async function stillSignedIn(token) {
  try {
    await call('GET', '/api/me', { token });
    return true;
  } catch (error) {
    return error.status !== 401;
  }
}

/** A direct message to another user, sent by the backend (Hop's publishDirectMessage). */
export const sendDirect = (token, to, text) => call('POST', '/api/dm', { token, body: { to, text } });

/** Change the room's topic: a state patch by the backend, seen by everyone as STATE_UPDATE. */
export const setTopic = (token, topic) => call('POST', '/api/topic', { token, body: { topic } });
