/* The page's frame: the header (brand, navigation, live pill, theme toggle, who is signed in),
 * the banner, and <main>, which the views fill; the document title. */

import { auth, signOut } from './api.js';
import { on } from './bus.js';
import { $, h, icon, logo } from './dom.js';
import { fmt } from './format.js';
import { renderStatus } from './status.js';
import { applyTheme, toggleTheme } from './theme.js';

/** The <main> element the views draw into (set by renderShell). */
export let main;
export function renderShell() {
  const app = $('#app');
  app.className = '';
  app.removeAttribute('aria-busy');
  main = h('main', { id: 'main', tabindex: '-1' });
  app.replaceChildren(
    h('a', { class: 'skip', href: '#main', onclick: (e) => { e.preventDefault(); main.focus(); } }, 'Skip to content'),
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/', 'aria-label': 'Ringwatch overview' }, logo(), h('span', {}, 'Ringwatch')),
      h('nav', { class: 'nav', 'aria-label': 'Main' },
        h('a', { href: '#/', 'data-testid': 'nav-overview', 'data-route': 'overview' }, 'Overview'),
        h('a', { href: '#/cluster', 'data-testid': 'nav-cluster', 'data-route': 'cluster' }, 'Cluster')),
      h('div', { class: 'spacer' }),
      h('span', { class: 'live-status', 'data-testid': 'live-status', role: 'status' }),
      h('button', { class: 'icon-btn', type: 'button', 'data-testid': 'theme-toggle', onclick: toggleTheme }),
      h('div', { class: 'user', 'data-testid': 'user-box' })),
    h('div', { id: 'banner', class: 'banner', 'data-testid': 'banner', hidden: true, role: 'status', 'aria-live': 'polite' }),
    main,
  );
  applyTheme();
  renderUser();
  renderStatus();
}

export function renderUser() {
  const box = $('[data-testid="user-box"]');
  if (!box) return;
  if (auth.required && auth.user) {
    const u = auth.user;
    const exp = u.expires_at ? 'Token expires ' + fmt.time(Date.parse(u.expires_at)) : 'Token does not expire';
    box.replaceChildren(
      h('span', { class: 'whoami', 'data-testid': 'whoami', title: exp },
        icon('user'), h('span', { class: 'subject' }, u.subject || '(no subject)'),
        h('span', { class: 'role role-' + u.role, 'data-testid': 'whoami-role' }, u.role)),
      h('button', { class: 'btn btn-ghost', type: 'button', 'data-testid': 'sign-out', onclick: signOut },
        icon('logout'), h('span', {}, 'Sign out')));
  } else if (auth.required === false) {
    box.replaceChildren(h('span', { class: 'whoami muted', 'data-testid': 'whoami', title: 'viz runs with --no-auth: no token needed' }, 'Auth off'));
  } else {
    box.replaceChildren();
  }
}
on('user', renderUser);

export function title(t) { document.title = t ? t + ' · Ringwatch' : 'Ringwatch'; }
