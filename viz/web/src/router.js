/* Hash routing: #/ overview, #/host/<id> host detail, #/cluster brokers, #/login token sign-in.
 * Each route gets a fresh view object ({name, cleanup, active}); leaving it runs its cleanup and
 * sets active to false, which tells the view's pending work that it is no longer shown. */

import { auth, signedIn } from './api.js';
import { emit } from './bus.js';
import { startData } from './feeds.js';
import { main } from './shell.js';
import { clusterView } from './views/cluster.js';
import { hostView } from './views/host.js';
import { loginView } from './views/login.js';
import { notFoundView } from './views/notfound.js';
import { overviewView } from './views/overview.js';

let currentView = null;

function parseHash() {
  const raw = decodeURI(location.hash.replace(/^#/, '')) || '/';
  const [path, qs] = raw.split('?');
  return { raw, path: path || '/', params: new URLSearchParams(qs || '') };
}

export function route() {
  if (auth.required === null) return; // still booting
  const r = parseHash();
  if (!signedIn() && r.path !== '/login') {
    const next = r.raw && r.raw !== '/' ? '?next=' + encodeURIComponent(r.raw) : '';
    location.replace('#/login' + next);
    return;
  }
  if (signedIn() && r.path === '/login') {
    location.replace('#' + (r.params.get('next') || '/'));
    return;
  }
  if (currentView) {
    for (const f of currentView.cleanup) {
      try { f(); } catch (e) { console.warn(e); }
    }
    currentView.active = false;
  }
  const view = { name: '', cleanup: [], active: true };
  currentView = view;
  let m;
  if (r.path === '/login') view.name = 'login';
  else if (r.path === '/' || r.path === '') view.name = 'overview';
  else if (r.path === '/cluster') view.name = 'cluster';
  else if ((m = r.path.match(/^\/host\/(.+)$/))) view.name = 'host';
  else view.name = 'notfound';

  document.body.classList.toggle('signed-out', view.name === 'login');
  for (const a of document.querySelectorAll('.nav a')) {
    if (a.dataset.route === view.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  main.replaceChildren();
  if (view.name !== 'login') startData();
  if (view.name === 'login') loginView(view, r);
  else if (view.name === 'overview') overviewView(view);
  else if (view.name === 'cluster') clusterView(view);
  else if (view.name === 'host') hostView(view, decodeURIComponent(m[1]), r.params);
  else notFoundView(view);
  emit('route', view);
  window.scrollTo(0, 0);
}

/** To the login page after a sign-out, with where we were as ?next= (already on it: drawn
 * again, with the reason). */
export function showLogin() {
  const r = parseHash();
  if (r.path !== '/login') {
    const next = r.raw && r.raw !== '/' ? '?next=' + encodeURIComponent(r.raw) : '';
    location.hash = '#/login' + next;
  } else {
    route();
  }
}
