/* #/login: paste a token, checked with /api/auth/whoami before it is kept. */

import { TOKEN_KEY, api, auth, setUser } from '../api.js';
import { h, logo } from '../dom.js';
import { main, title } from '../shell.js';
import { store } from '../storage.js';

export function loginView(view, r) {
  title('Sign in');
  const input = h('textarea', {
    id: 'token', class: 'token-input', rows: 5, spellcheck: 'false', autocomplete: 'off',
    autocapitalize: 'off', 'data-testid': 'login-token', placeholder: 'eyJhbGciOiJIUzI1NiIs…',
    'aria-describedby': 'token-help',
  });
  const err = h('p', { class: 'form-error', 'data-testid': 'login-error', role: 'alert', hidden: !auth.notice });
  if (auth.notice) err.textContent = auth.notice;
  err.classList.toggle('notice', !!auth.notice);
  const submit = h('button', { class: 'btn btn-primary', type: 'submit', 'data-testid': 'login-submit' }, 'Sign in');
  const form = h('form', { class: 'login-form', novalidate: true },
    h('label', { for: 'token' }, 'Access token'),
    input,
    h('p', { id: 'token-help', class: 'help' },
      'Paste a Ringwatch token (a JWT). An operator mints one with ',
      h('code', {}, 'ringwatch token --role viewer --jwt-secret …'),
      '. It is kept in this browser until you sign out.'),
    err,
    submit);
  const showErr = (msg) => {
    err.hidden = false;
    err.classList.remove('notice');
    err.textContent = msg;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let token = input.value.trim().replace(/^bearer\s+/i, '');
    if (!token) return showErr('Paste a token first.');
    if (token.split('.').length !== 3 || /\s/.test(token)) {
      return showErr('That does not look like a token: a JWT has three parts separated by dots.');
    }
    submit.disabled = true;
    submit.textContent = 'Checking…';
    try {
      const who = await api('/api/auth/whoami', { token, noSignOut: true });
      auth.token = token;
      store.set(TOKEN_KEY, token);
      auth.notice = '';
      setUser(who);
      location.replace('#' + (r.params.get('next') || '/'));
    } catch (ex) {
      if (!view.active) return;
      submit.disabled = false;
      submit.textContent = 'Sign in';
      showErr(ex.status === 401 ? 'viz refused this token: ' + ex.message : 'Could not check the token: ' + ex.message);
    }
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  main.append(h('section', { class: 'login', 'data-testid': 'login-page' },
    h('div', { class: 'login-card' },
      h('div', { class: 'login-brand' }, logo(), h('span', {}, 'Ringwatch')),
      h('h1', {}, 'Sign in'),
      h('p', { class: 'muted' }, 'This dashboard needs an access token.'),
      form)));
  setTimeout(() => input.focus(), 0);
}
