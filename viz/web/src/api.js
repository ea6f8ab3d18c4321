/* The HTTP API client and the token: who is signed in, sign-in state, sign-out. A signed-out
 * session is announced on the bus ('signed-out'); main.js stops the data and shows the login. */

import { emit } from './bus.js';
import { fmt } from './format.js';
import { store } from './storage.js';

export const TOKEN_KEY = 'ringwatch.token';
export const auth = {
  required: null, // null until /api/auth answered
  token: store.get(TOKEN_KEY),
  user: null, // {subject, role, expires_at}
  notice: '', // why the login page is shown (expired, refused, …)
  expiryTimer: null,
};

export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** GET a JSON API path with the token; 401 on the current token signs out. */
export async function api(path, opts = {}) {
  const token = 'token' in opts ? opts.token : auth.token;
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  let res;
  try {
    res = await fetch(path, { headers, signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new HttpError(0, 'viz is unreachable (' + (e.message || 'network error') + ')');
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!res.ok) {
    const reason = (body && body.error) || res.statusText || 'HTTP ' + res.status;
    if (res.status === 401 && token && token === auth.token && !opts.noSignOut) {
      signedOut('Your session ended: ' + reason + '. Paste a new token.');
    } else if (res.status === 401 && !token && auth.required !== false && !opts.noSignOut) {
      // Auth was switched on while we ran without a token.
      auth.required = true;
      signedOut('Sign in with a token: ' + reason + '.');
    }
    const msg = res.status === 403
      ? 'Your role (' + ((auth.user && auth.user.role) || 'unknown') + ') may not do this: ' + reason
      : reason;
    throw new HttpError(res.status, msg);
  }
  return body;
}

export function setUser(user) {
  auth.user = user;
  clearTimeout(auth.expiryTimer);
  if (user && user.expires_at) {
    const left = Date.parse(user.expires_at) - Date.now();
    if (Number.isFinite(left)) {
      auth.expiryTimer = setTimeout(
        () => signedOut('Your token expired at ' + fmt.time(Date.parse(user.expires_at)) + '. Paste a new token.'),
        Math.min(Math.max(left, 0), 2 ** 31 - 1),
      );
    }
  }
  emit('user', user);
}

export function signedOut(notice) {
  if (auth.required === false) return;
  auth.token = null;
  store.set(TOKEN_KEY, null);
  setUser(null);
  auth.notice = notice || '';
  emit('signed-out', false);
}

export function signOut() {
  auth.token = null;
  store.set(TOKEN_KEY, null);
  setUser(null);
  auth.notice = 'You signed out.';
  emit('signed-out', true);
}

export const signedIn = () => auth.required === false || (auth.required === true && !!auth.user);
