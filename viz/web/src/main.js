/* Ringwatch dashboard: vanilla JS in native ES modules (no build step), hash routing, uPlot charts
 * (a global from its own <script> tag), live values over /ws.
 *
 * Routes: #/ overview, #/host/<id> host detail, #/cluster brokers, #/login token sign-in.
 * Data: /api/dashboard is re-read every few seconds (states, Top-K, summary, cluster); live
 * values arrive on the WebSocket and are merged in by timestamp (never shown twice).
 *
 * This entry boots the page (is auth on? is the saved token still good?), then hands over to the
 * router; it also ties sign-out to the data feeds and follows other tabs' theme and sign-out. */

import { TOKEN_KEY, api, auth, setUser, signedOut } from './api.js';
import { on } from './bus.js';
import { h } from './dom.js';
import { stopData } from './feeds.js';
import { route, showLogin } from './router.js';
import { main, renderShell, renderUser } from './shell.js';
import { store } from './storage.js';
import { THEME_KEY, applyTheme } from './theme.js';

async function boot() {
  renderShell();
  let delay = 1000;
  for (;;) {
    try {
      const a = await api('/api/auth', { token: null, noSignOut: true });
      auth.required = !!(a && a.required);
      break;
    } catch (e) {
      if (e.status === 404) { auth.required = false; break; } // a viz without auth endpoints
      main.replaceChildren(h('div', { class: 'empty big', 'data-testid': 'boot-error' },
        h('h1', {}, 'Cannot reach viz'),
        h('p', { class: 'muted' }, e.message + ' — retrying in ' + Math.round(delay / 1000) + ' s.')));
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  }
  if (auth.required && auth.token) {
    for (;;) {
      try {
        setUser(await api('/api/auth/whoami', { noSignOut: true }));
        break;
      } catch (e) {
        if (e.status === 401) {
          auth.token = null;
          store.set(TOKEN_KEY, null);
          auth.notice = 'Your saved token was refused (' + e.message + '). Paste a new one.';
          break;
        }
        if (e.status && e.status !== 503) break;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }
  renderUser();
  window.addEventListener('hashchange', route);
  route();
}

window.addEventListener('storage', (e) => {
  if (e.key === THEME_KEY) applyTheme();
  if (e.key === TOKEN_KEY && auth.required && e.newValue !== auth.token) {
    if (!e.newValue) signedOut('You signed out in another tab.');
    else location.reload();
  }
});

// The token was dropped (expired, refused, signed out here or in another tab): stop reading,
// forget what was read, and show the login page.
on('signed-out', (byUser) => {
  stopData();
  if (byUser) location.hash = '#/login';
  else showLogin();
});

applyTheme();
boot();
