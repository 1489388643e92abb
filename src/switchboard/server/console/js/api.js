// The REST API (SPEC §2) as the console uses it. The project token lives in this tab's
// sessionStorage only; it is sent only in the Authorization header (and, by live.js, in
// the gateway's IDENTIFY frame). It never goes into a URL, a log line or localStorage.

const KEY = "switchboard.console.project_token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};

/** Called with a message whenever the server answers 401: the console signs out. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export function projectToken() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function saveProjectToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function forgetProjectToken() {
  try {
    sessionStorage.removeItem(KEY);
  } catch {
    // storage disabled: nothing was kept
  }
}

/** A path segment: a channel ID or a token, percent-encoded. */
export const seg = (value) => encodeURIComponent(value);

/**
 * Call the API: api("GET", "/channels"). `body` is a value to encode as JSON, or a
 * string of JSON sent as it is (state typed in an editor keeps its exact text).
 * Resolves with the envelope's `data`; rejects with ApiError.
 */
export async function api(method, path, body, { token } = {}) {
  const secret = token ?? projectToken();
  if (!secret) {
    unauthorized("Sign in with a project token.");
    throw new ApiError(401, "invalid_auth", "not signed in");
  }
  const init = {
    method,
    headers: { Authorization: secret, Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`/v1${path}`, init);
  } catch (err) {
    throw new ApiError(0, "unreachable", `The server cannot be reached (${err.message}).`);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  const error = payload && payload.error ? payload.error : null;
  if (response.status === 401) {
    // A token given at sign-in is checked by the caller; a stored one was revoked.
    if (token === undefined) {
      unauthorized(`The server refused the project token: ${error ? error.message : "unauthorized"}. Sign in again.`);
    }
    throw new ApiError(401, "invalid_auth", error ? error.message : "unauthorized");
  }
  if (!response.ok || !payload || payload.success !== true) {
    throw new ApiError(
      response.status,
      error ? error.code : `http_${response.status}`,
      error ? error.message : `The server answered ${response.status} ${response.statusText}.`,
    );
  }
  return payload.data;
}
