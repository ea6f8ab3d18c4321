/* Ringwatch dashboard: vanilla JS, hash routing, uPlot charts, live values over /ws.
 *
 * Routes: #/ overview, #/host/<id> host detail, #/cluster brokers, #/login token sign-in.
 * Data: /api/dashboard is re-read every few seconds (states, Top-K, summary, cluster); live
 * values arrive on the WebSocket and are merged in by timestamp (never shown twice). */
(() => {
  'use strict';

  // ------------------------------------------------------------------ helpers

  /** Element builder: h('div', {class: 'x', onclick: f, 'data-testid': 't'}, ...children). */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v == null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'text') el.textContent = v;
        else if (k === 'style') el.style.cssText = v;
        else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of kids.flat(4)) {
      if (c == null || c === false) continue;
      el.append(c.nodeType ? c : String(c));
    }
    return el;
  }

  const SVGNS = 'http://www.w3.org/2000/svg';
  const ICONS = {
    sun: ['M12 3v2', 'M12 19v2', 'M5.6 5.6 7 7', 'M17 17l1.4 1.4', 'M3 12h2', 'M19 12h2', 'M5.6 18.4 7 17', 'M17 7l1.4-1.4', 'M12 8a4 4 0 1 0 0 8a4 4 0 0 0 0-8z'],
    moon: ['M20 14.5A8 8 0 1 1 9.5 4a6.5 6.5 0 0 0 10.5 10.5z'],
    logout: ['M9 20H5a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1h4', 'M16 16l4-4-4-4', 'M20 12H9'],
    warn: ['M12 4 2.5 20h19z', 'M12 10v4', 'M12 17h.01'],
    back: ['M15 18l-6-6 6-6'],
    retry: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 5v6h-6'],
    user: ['M12 12a4 4 0 1 0 0-8a4 4 0 0 0 0 8z', 'M4 20a8 8 0 0 1 16 0'],
    server: ['M4 5h16v5H4z', 'M4 14h16v5H4z', 'M8 7.5h.01', 'M8 16.5h.01'],
    down: ['M12 5v14', 'M6 13l6 6 6-6'],
    up: ['M12 19V5', 'M6 11l6-6 6 6'],
  };
  function icon(name, cls) {
    const s = document.createElementNS(SVGNS, 'svg');
    s.setAttribute('viewBox', '0 0 24 24');
    s.setAttribute('aria-hidden', 'true');
    s.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
    for (const d of ICONS[name]) {
      const p = document.createElementNS(SVGNS, 'path');
      p.setAttribute('d', d);
      s.append(p);
    }
    return s;
  }
  function logo() {
    const s = document.createElementNS(SVGNS, 'svg');
    s.setAttribute('viewBox', '0 0 32 32');
    s.setAttribute('aria-hidden', 'true');
    s.setAttribute('class', 'logo');
    const c = document.createElementNS(SVGNS, 'circle');
    c.setAttribute('cx', '16'); c.setAttribute('cy', '16'); c.setAttribute('r', '12');
    c.setAttribute('class', 'logo-ring');
    const p = document.createElementNS(SVGNS, 'path');
    p.setAttribute('d', 'M7 17h5l2-5 4 9 2-4h5');
    p.setAttribute('class', 'logo-pulse');
    s.append(c, p);
    return s;
  }

  function setText(el, s) {
    if (el && el.textContent !== s) el.textContent = s;
  }
  function setAttr(el, k, v) {
    v = String(v);
    if (el && el.getAttribute(k) !== v) el.setAttribute(k, v);
  }

  const store = {
    get(k) { try { return window.localStorage.getItem(k); } catch { return null; } },
    set(k, v) {
      try {
        if (v == null) window.localStorage.removeItem(k);
        else window.localStorage.setItem(k, v);
      } catch { /* storage disabled: settings last for this page only */ }
    },
  };

  // A tiny event bus between the data layer and the views.
  const bus = new EventTarget();
  const emit = (name, detail) => bus.dispatchEvent(new CustomEvent(name, { detail }));
  function on(name, fn) {
    const f = (e) => fn(e.detail);
    bus.addEventListener(name, f);
    return () => bus.removeEventListener(name, f);
  }

  // Server clock: "5 s ago" is measured against viz's clock, not the browser's.
  let clockOffset = 0;
  const serverNow = () => Date.now() + clockOffset;

  // ------------------------------------------------------------------ formatting

  const fmt = {
    pct(v) {
      if (v == null || !Number.isFinite(v)) return '—';
      return (v >= 99.95 ? v.toFixed(0) : v.toFixed(1)) + '%';
    },
    num(v, d = 2) {
      if (v == null || !Number.isFinite(v)) return '—';
      return v.toFixed(d);
    },
    int(v) {
      if (v == null || !Number.isFinite(v)) return '—';
      return Math.round(v).toLocaleString('en-US');
    },
    bytes(v, suffix = '') {
      if (v == null || !Number.isFinite(v)) return '—';
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      let i = 0;
      let x = Math.abs(v);
      while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      const digits = i === 0 ? 0 : x >= 100 ? 0 : x >= 10 ? 1 : 2;
      return (v < 0 ? '-' : '') + x.toFixed(digits) + ' ' + units[i] + suffix;
    },
    rate(v) { return fmt.bytes(v, '/s'); },
    /** Compact axis label for a bytes/s value. */
    rateAxis(v) {
      if (v === 0) return '0';
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      let i = 0;
      let x = Math.abs(v);
      while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
      return String(Number(x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0))) + ' ' + units[i] + '/s';
    },
    ago(ms, now = serverNow()) {
      if (!ms) return 'never';
      const s = Math.max(0, (now - ms) / 1000);
      if (s < 60) return Math.floor(s) + ' s ago';
      if (s < 3600) return Math.floor(s / 60) + ' min ago';
      if (s < 86400) return Math.floor(s / 3600) + ' h ago';
      return Math.floor(s / 86400) + ' d ago';
    },
    duration(secs) {
      if (secs == null || !Number.isFinite(secs)) return '—';
      const s = Math.floor(secs);
      const d = Math.floor(s / 86400);
      const hh = Math.floor((s % 86400) / 3600);
      const mm = Math.floor((s % 3600) / 60);
      if (d > 0) return `${d} d ${hh} h`;
      if (hh > 0) return `${hh} h ${mm} min`;
      if (mm > 0) return `${mm} min`;
      return `${s} s`;
    },
    interval(ms) {
      if (!ms) return '—';
      return ms % 1000 === 0 ? ms / 1000 + ' s' : ms + ' ms';
    },
    time(ms) {
      if (!ms) return '—';
      return new Date(ms).toLocaleString();
    },
    clock(ms) {
      return new Date(ms).toLocaleTimeString();
    },
  };

  const STATE_LABEL = { live: 'Live', stale: 'Stale', gone: 'Gone' };
  const STATE_RANK = { live: 0, stale: 1, gone: 2 };

  function statePill(state, testid) {
    return h('span', { class: 'pill pill-' + state, 'data-testid': testid, 'data-state': state },
      h('i', { class: 'dot' }), STATE_LABEL[state] || state);
  }

  // ------------------------------------------------------------------ theme

  const THEME_KEY = 'ringwatch.theme';
  const darkQuery = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
  function theme() {
    const s = store.get(THEME_KEY);
    if (s === 'dark' || s === 'light') return s;
    return darkQuery && darkQuery.matches ? 'dark' : 'light';
  }
  // Theme colours, read once per theme: reading computed style after the table changed would
  // force the browser to recompute every row's style, once per sparkline.
  const cssVars = new Map();
  function applyTheme() {
    const t = theme();
    if (document.documentElement.dataset.theme !== t) {
      document.documentElement.dataset.theme = t;
      cssVars.clear();
      emit('theme', t);
    }
    const btn = $('[data-testid="theme-toggle"]');
    if (btn) {
      btn.replaceChildren(icon(t === 'dark' ? 'sun' : 'moon'));
      const label = t === 'dark' ? 'Switch to the light theme' : 'Switch to the dark theme';
      btn.setAttribute('aria-label', label);
      btn.title = label;
    }
  }
  function toggleTheme() {
    store.set(THEME_KEY, theme() === 'dark' ? 'light' : 'dark');
    applyTheme();
  }
  if (darkQuery) {
    const f = () => { if (!store.get(THEME_KEY)) applyTheme(); };
    if (darkQuery.addEventListener) darkQuery.addEventListener('change', f);
    else if (darkQuery.addListener) darkQuery.addListener(f);
  }
  function cssVar(name) {
    let v = cssVars.get(name);
    if (v === undefined) {
      v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
      cssVars.set(name, v);
    }
    return v;
  }

  function $(sel, root = document) { return root.querySelector(sel); }

  // ------------------------------------------------------------------ auth and API

  const TOKEN_KEY = 'ringwatch.token';
  const auth = {
    required: null, // null until /api/auth answered
    token: store.get(TOKEN_KEY),
    user: null, // {subject, role, expires_at}
    notice: '', // why the login page is shown (expired, refused, …)
    expiryTimer: null,
  };

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  /** GET a JSON API path with the token; 401 on the current token signs out. */
  async function api(path, opts = {}) {
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

  function setUser(user) {
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
    renderUser();
  }

  function signedOut(notice) {
    if (auth.required === false) return;
    auth.token = null;
    store.set(TOKEN_KEY, null);
    setUser(null);
    auth.notice = notice || '';
    stopData();
    const r = parseHash();
    if (r.path !== '/login') {
      const next = r.raw && r.raw !== '/' ? '?next=' + encodeURIComponent(r.raw) : '';
      location.hash = '#/login' + next;
    } else {
      route();
    }
  }

  function signOut() {
    auth.token = null;
    store.set(TOKEN_KEY, null);
    setUser(null);
    auth.notice = 'You signed out.';
    stopData();
    location.hash = '#/login';
  }

  const signedIn = () => auth.required === false || (auth.required === true && !!auth.user);

  // ------------------------------------------------------------------ dashboard model

  const SPARK_MAX = 120;
  const POLL_MS = 3000;
  const rows = new Map(); // host_id -> row as /api/dashboard/hosts, merged with live updates
  const dash = { data: null, error: null, okAt: 0, timer: null, running: false, inflight: null };

  const FIELD_OF = {
    'cpu.usage': 'cpu',
    'mem.used_percent': 'mem',
    'load.1': 'load1',
    'disk.used_percent': 'disk',
    'net.rx_bytes_per_sec': 'net_rx',
    'net.tx_bytes_per_sec': 'net_tx',
  };
  const OVERVIEW_METRICS = Object.keys(FIELD_OF);

  function mergeRows(list) {
    const seen = new Set();
    for (const r of list) {
      seen.add(r.host_id);
      const cur = rows.get(r.host_id);
      const next = Object.assign({}, r, {
        spark_ts: (r.spark_ts || []).slice(),
        spark_cpu: (r.spark_cpu || []).slice(),
      });
      if (cur && cur.last_seen_ms > r.last_seen_ms) {
        // The WebSocket is ahead of the snapshot: keep the newer live values.
        for (const f of Object.values(FIELD_OF)) next[f] = cur[f];
        next.last_seen_ms = cur.last_seen_ms;
      }
      if (cur) {
        const last = next.spark_ts.length ? next.spark_ts[next.spark_ts.length - 1] : 0;
        for (let i = 0; i < cur.spark_ts.length; i++) {
          if (cur.spark_ts[i] > last) {
            next.spark_ts.push(cur.spark_ts[i]);
            next.spark_cpu.push(cur.spark_cpu[i]);
          }
        }
        trimSpark(next);
      }
      rows.set(r.host_id, next);
    }
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
  }

  function trimSpark(r) {
    const extra = r.spark_ts.length - SPARK_MAX;
    if (extra > 0) {
      r.spark_ts.splice(0, extra);
      r.spark_cpu.splice(0, extra);
    }
  }

  /** A live update into the rows; false if it is not newer than what the row has. */
  function applyToRows(u) {
    let r = rows.get(u.host_id);
    if (!r) {
      r = {
        host_id: u.host_id, state: 'live', last_seen_ms: 0, labels: {}, agent_version: '',
        interval_ms: 0, spark_ts: [], spark_cpu: [],
      };
      rows.set(u.host_id, r);
    }
    if (u.timestamp_ms <= r.last_seen_ms) return false;
    r.last_seen_ms = u.timestamp_ms;
    for (const [name, f] of Object.entries(FIELD_OF)) {
      const m = u.metrics[name];
      r[f] = m ? m.value : null;
    }
    r.spark_ts.push(u.timestamp_ms);
    r.spark_cpu.push(r.cpu == null ? null : r.cpu);
    trimSpark(r);
    r.state = 'live';
    return true;
  }

  /** live / stale / gone from the age of the newest data, as viz computes it, with slack for
   * how we receive it (WebSocket: at once; polling: every few seconds). */
  function hostState(r, now = serverNow()) {
    if (!r.last_seen_ms) return 'gone';
    // The rule comes with the summary (viz's host_state); these are its values until then.
    const rule = (dash.data && dash.data.summary) || {};
    const interval = r.interval_ms || rule.default_interval_ms || 5000;
    const pushed = live.state === 'open' && (!dash.data || dash.data.summary.live_push);
    const slack = pushed ? 1000 : POLL_MS + 1000;
    const age = now - r.last_seen_ms;
    if (age <= (rule.stale_after_intervals || 3) * interval + slack) return 'live';
    if (age <= (rule.gone_after_ms || 600000)) return 'stale';
    return 'gone';
  }

  function summaryOf(now) {
    const s = { hosts: 0, live: 0, stale: 0, gone: 0, cpu: [], mem: [] };
    for (const r of rows.values()) {
      s.hosts++;
      const st = hostState(r, now);
      s[st]++;
      if (st === 'gone') continue;
      if (r.cpu != null) s.cpu.push(r.cpu);
      if (r.mem != null) s.mem.push(r.mem);
    }
    const avg = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : null);
    const max = (a) => (a.length ? a.reduce((x, y) => (y > x ? y : x), -Infinity) : null);
    return {
      hosts: s.hosts, live: s.live, stale: s.stale, gone: s.gone,
      cpu_avg: avg(s.cpu), cpu_max: max(s.cpu), mem_avg: avg(s.mem), mem_max: max(s.mem),
    };
  }

  async function pollOnce() {
    if (dash.inflight || !dash.running) return;
    const ctl = new AbortController();
    dash.inflight = ctl;
    const timeout = setTimeout(() => ctl.abort(), 10000);
    try {
      const d = await api('/api/dashboard', { signal: ctl.signal });
      if (!dash.running) return;
      if (d && d.summary && d.summary.generated_ms) clockOffset = d.summary.generated_ms - Date.now();
      dash.data = d;
      dash.error = null;
      dash.okAt = Date.now();
      mergeRows(d.hosts || []);
    } catch (e) {
      if (!dash.running) return;
      dash.error = e.name === 'AbortError' ? new HttpError(0, 'viz did not answer within 10 s') : e;
    } finally {
      clearTimeout(timeout);
      dash.inflight = null;
    }
    emit('dashboard');
  }

  function pollLoop() {
    clearTimeout(dash.timer);
    if (!dash.running) return;
    pollOnce().finally(() => {
      if (!dash.running) return;
      clearTimeout(dash.timer);
      dash.timer = setTimeout(pollLoop, document.hidden ? 15000 : POLL_MS);
    });
  }
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && dash.running) pollLoop();
  });

  // ------------------------------------------------------------------ live WebSocket

  const live = {
    ws: null,
    state: 'idle', // idle | connecting | open | closed
    running: false,
    attempt: 0,
    retryAt: 0,
    timer: null,
    everOpened: false,
    since: 0, // when the current state began
    sub: { hosts: [], metrics: OVERVIEW_METRICS },
    skipped: 0,
  };

  function wsUrl() {
    const u = new URL('/ws', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.hash = '';
    return u.toString();
  }

  // The token rides in the WebSocket subprotocol list, not the URL, so it stays out of
  // access logs: viz picks "ringwatch" and reads "ringwatch.bearer.<token>".
  function wsProtocols() {
    return auth.token && auth.required ? ['ringwatch', 'ringwatch.bearer.' + auth.token] : ['ringwatch'];
  }

  function setLiveState(s) {
    live.state = s;
    live.since = Date.now();
    emit('live-state', s);
  }

  function connect() {
    clearTimeout(live.timer);
    if (!live.running || live.ws) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl(), wsProtocols());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    live.ws = ws;
    let opened = false;
    setLiveState('connecting');
    ws.onopen = () => {
      opened = true;
      const again = live.everOpened;
      live.everOpened = true;
      live.attempt = 0;
      sendSubscribe();
      setLiveState('open');
      if (again) emit('live-reconnected');
    };
    ws.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      if (m.type === 'update') {
        applyToRows(m);
        emit('live-update', m);
      } else if (m.type === 'snapshot') {
        for (const u of m.hosts || []) applyToRows(u);
        emit('live-snapshot', m.hosts || []);
      } else if (m.type === 'downsampled') {
        live.skipped += m.skipped || 0;
        emit('live-downsampled', m.skipped || 0);
      } else if (m.type === 'error') {
        console.warn('ringwatch: the live feed refused a message:', m.error);
      }
    };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = () => {
      if (live.ws !== ws) return;
      live.ws = null;
      if (!live.running) return;
      setLiveState('closed');
      // Refused before opening, with auth on: the token may have expired.
      if (!opened && auth.required && auth.token) {
        api('/api/auth/whoami').catch(() => {});
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (!live.running) return;
    const base = Math.min(30000, 1000 * 2 ** live.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    live.attempt++;
    live.retryAt = Date.now() + delay;
    clearTimeout(live.timer);
    live.timer = setTimeout(connect, delay);
    emit('live-state', live.state);
  }

  function reconnectNow() {
    live.attempt = 0;
    if (live.ws) return;
    connect();
  }

  function sendSubscribe() {
    if (live.ws && live.ws.readyState === WebSocket.OPEN) {
      live.ws.send(JSON.stringify({ type: 'subscribe', hosts: live.sub.hosts, metrics: live.sub.metrics }));
    }
  }

  function subscribe(hosts, metrics) {
    const same = JSON.stringify(live.sub) === JSON.stringify({ hosts, metrics });
    live.sub = { hosts, metrics };
    if (!same) sendSubscribe();
  }

  function startData() {
    if (!dash.running) {
      dash.running = true;
      pollLoop();
    }
    if (!live.running) {
      live.running = true;
      live.attempt = 0;
      connect();
    }
    renderStatus();
  }

  function stopData() {
    dash.running = false;
    clearTimeout(dash.timer);
    if (dash.inflight) dash.inflight.abort();
    dash.data = null;
    dash.error = null;
    rows.clear();
    live.running = false;
    live.everOpened = false;
    clearTimeout(live.timer);
    if (live.ws) {
      const ws = live.ws;
      live.ws = null;
      ws.close();
    }
    setLiveState('idle');
  }

  // ------------------------------------------------------------------ shell

  let main;
  function renderShell() {
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

  function renderUser() {
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

  /** The header's live pill and the delayed-data banner. */
  function renderStatus() {
    const pill = $('[data-testid="live-status"]');
    const banner = $('#banner');
    if (!pill || !banner) return;
    const showData = signedIn() && currentView && currentView.name !== 'login';
    pill.hidden = !showData;
    const reasons = [];
    let action = null;
    if (showData) {
      const livePush = dash.data ? dash.data.summary.live_push : true;
      const connectingLong = live.state === 'connecting' && Date.now() - live.since > 3000;
      const wsDown = live.running && (live.state === 'closed' || connectingLong);
      let cls = 'ok';
      let text = 'Live';
      if (live.state === 'connecting' && !wsDown) { cls = 'wait'; text = 'Connecting'; }
      if (wsDown) {
        cls = 'bad';
        text = 'Reconnecting';
        const secs = Math.max(0, Math.ceil((live.retryAt - Date.now()) / 1000));
        const when = live.state === 'closed' ? 'reconnecting in ' + secs + ' s' : 'connecting';
        reasons.push({
          kind: 'ws',
          text: 'The live connection to viz is down (' + when + ', attempt ' + Math.max(1, live.attempt) + ').'
            + (dash.error ? '' : ' Values are refreshed every few seconds instead and may be delayed.'),
        });
        action = h('button', { class: 'btn btn-small', type: 'button', 'data-testid': 'reconnect', onclick: reconnectNow }, icon('retry'), 'Reconnect now');
      }
      if (dash.data && !livePush) {
        if (cls === 'ok') { cls = 'warn'; text = 'Delayed'; }
        reasons.push({
          kind: 'push',
          text: 'No broker streams live to viz right now; viz falls back to polling brokers every few seconds, so data may be delayed.',
        });
      }
      if (dash.error) {
        cls = 'bad';
        text = 'Offline';
        const since = dash.okAt ? ' Showing what arrived up to ' + fmt.clock(dash.okAt) + '.' : '';
        reasons.push({ kind: 'api', text: 'Cannot read the dashboard from viz: ' + dash.error.message + '.' + since });
      }
      pill.className = 'live-status status-' + cls;
      pill.dataset.state = live.state;
      pill.replaceChildren(h('i', { class: 'dot' }), text);
      pill.title = live.state === 'open' ? 'Live updates over WebSocket' : 'Live updates: ' + live.state;
    }
    if (!reasons.length) {
      banner.hidden = true;
      banner.removeAttribute('data-testid');
      banner.setAttribute('data-testid', 'banner');
      banner.replaceChildren();
      return;
    }
    banner.hidden = false;
    banner.setAttribute('data-testid', 'banner-delayed');
    banner.dataset.reasons = reasons.map((r) => r.kind).join(' ');
    banner.replaceChildren(
      icon('warn', 'banner-icon'),
      h('div', { class: 'banner-text' }, reasons.map((r) => h('p', { 'data-reason': r.kind }, r.text))),
      ...(action ? [action] : []),
    );
  }
  on('live-state', renderStatus);
  on('dashboard', renderStatus);
  setInterval(() => { if (live.state !== 'open' || dash.error) renderStatus(); }, 1000);

  // ------------------------------------------------------------------ router

  let currentView = null;

  function parseHash() {
    const raw = decodeURI(location.hash.replace(/^#/, '')) || '/';
    const [path, qs] = raw.split('?');
    return { raw, path: path || '/', params: new URLSearchParams(qs || '') };
  }

  function route() {
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
    }
    const view = { name: '', cleanup: [] };
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
    renderStatus();
    window.scrollTo(0, 0);
  }

  function title(t) { document.title = t ? t + ' · Ringwatch' : 'Ringwatch'; }

  // ------------------------------------------------------------------ login

  function loginView(view, r) {
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
        if (view !== currentView) return;
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

  // ------------------------------------------------------------------ overview

  const COLS = [
    { key: 'host_id', label: 'Host', text: true },
    { key: 'state', label: 'State', text: true },
    { key: 'cpu', label: 'CPU', num: true },
    { key: 'mem', label: 'Memory', num: true },
    { key: 'load1', label: 'Load 1m', num: true },
    { key: 'disk', label: 'Disk', num: true },
    { key: 'net_rx', label: 'Net rx', num: true },
    { key: 'net_tx', label: 'Net tx', num: true },
    { key: 'last_seen_ms', label: 'Last seen', num: true },
  ];
  const SORT_KEY = 'ringwatch.sort';

  function loadSort() {
    try {
      const s = JSON.parse(store.get(SORT_KEY) || 'null');
      if (s && COLS.some((c) => c.key === s.key) && (s.dir === 'asc' || s.dir === 'desc')) return s;
    } catch { /* default */ }
    return { key: 'host_id', dir: 'asc' };
  }

  function compareRows(key, dir, now) {
    const sign = dir === 'asc' ? 1 : -1;
    const val = (r) => (key === 'state' ? STATE_RANK[hostState(r, now)] : r[key]);
    return (a, b) => {
      const x = val(a);
      const y = val(b);
      const xn = x == null || x === '';
      const yn = y == null || y === '';
      if (xn || yn) {
        if (xn && yn) return a.host_id.localeCompare(b.host_id);
        return xn ? 1 : -1; // missing values last in both directions
      }
      let c;
      if (typeof x === 'string') c = x.localeCompare(y, undefined, { numeric: true });
      else c = x - y;
      return c !== 0 ? sign * c : a.host_id.localeCompare(b.host_id, undefined, { numeric: true });
    };
  }

  function level(v, warn = 75, bad = 90) {
    if (v == null) return '';
    return v >= bad ? 'bad' : v >= warn ? 'warn' : 'ok';
  }

  function meter(v) {
    const fill = h('i', {});
    const el = h('span', { class: 'meter', 'aria-hidden': 'true' }, fill);
    el.set = (x) => {
      const w = x == null ? 0 : Math.max(0, Math.min(100, x));
      const s = 'width:' + w.toFixed(1) + '%';
      if (fill.getAttribute('style') !== s) fill.setAttribute('style', s);
      const cls = 'meter ' + level(x);
      if (el.className !== cls) el.className = cls;
    };
    return el;
  }

  function labelChips(labels, max = 4) {
    const entries = Object.entries(labels || {});
    return entries.slice(0, max).map(([k, v]) => h('span', { class: 'chip', title: k + '=' + v }, k + '=' + v))
      .concat(entries.length > max ? [h('span', { class: 'chip muted' }, '+' + (entries.length - max))] : []);
  }

  function overviewView(view) {
    title('Overview');
    subscribe([], OVERVIEW_METRICS);
    let sort = loadSort();
    let filter = '';

    const card = (testid, label, ...body) => h('div', { class: 'card', 'data-testid': testid },
      h('div', { class: 'card-label' }, label), ...body);
    const c = {
      hosts: h('div', { class: 'card-value', 'data-testid': 'count-hosts' }, '—'),
      live: h('b', { 'data-testid': 'count-live' }, '0'),
      stale: h('b', { 'data-testid': 'count-stale' }, '0'),
      gone: h('b', { 'data-testid': 'count-gone' }, '0'),
      cpuAvg: h('div', { class: 'card-value' }, '—'),
      cpuMax: h('b', {}, '—'),
      cpuMeter: meter(null),
      memAvg: h('div', { class: 'card-value' }, '—'),
      memMax: h('b', {}, '—'),
      memMeter: meter(null),
      push: h('div', { class: 'card-value', 'data-testid': 'push-state' }, '—'),
      pushSub: h('div', { class: 'card-sub' }, ''),
      brokers: h('div', { class: 'card-value' }, '—'),
      brokersSub: h('div', { class: 'card-sub' }, ''),
    };
    const cards = h('div', { class: 'cards' },
      card('card-hosts', 'Hosts', c.hosts,
        h('div', { class: 'card-sub states' },
          h('span', { class: 'st st-live' }, h('i', { class: 'dot' }), c.live, ' live'),
          h('span', { class: 'st st-stale' }, h('i', { class: 'dot' }), c.stale, ' stale'),
          h('span', { class: 'st st-gone' }, h('i', { class: 'dot' }), c.gone, ' gone'))),
      card('card-cpu', 'CPU · average', c.cpuAvg, c.cpuMeter, h('div', { class: 'card-sub' }, 'max ', c.cpuMax)),
      card('card-mem', 'Memory · average', c.memAvg, c.memMeter, h('div', { class: 'card-sub' }, 'max ', c.memMax)),
      card('card-push', 'Live push', c.push, c.pushSub),
      card('card-brokers', 'Brokers', c.brokers, c.brokersSub));

    // Hosts table
    const ths = COLS.map((col) => {
      const btn = h('button', { type: 'button', class: 'sort', 'data-testid': 'sort-' + col.key },
        col.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }));
      btn.addEventListener('click', () => {
        if (sort.key === col.key) sort = { key: col.key, dir: sort.dir === 'asc' ? 'desc' : 'asc' };
        else sort = { key: col.key, dir: col.text ? 'asc' : 'desc' };
        store.set(SORT_KEY, JSON.stringify(sort));
        render(true);
      });
      return h('th', { scope: 'col', class: col.num ? 'num col-' + col.key : 'col-' + col.key, 'data-key': col.key }, btn);
    });
    const tbody = h('tbody', {});
    const empty = h('div', { class: 'empty', hidden: true, 'data-testid': 'hosts-empty' });
    const count = h('span', { class: 'muted count', 'data-testid': 'hosts-count' });
    const filterInput = h('input', {
      type: 'search', class: 'filter', placeholder: 'Filter hosts or labels', 'aria-label': 'Filter hosts',
      'data-testid': 'host-filter',
    });
    filterInput.addEventListener('input', () => { filter = filterInput.value.trim().toLowerCase(); render(true); });
    const table = h('table', { class: 'hosts', 'data-testid': 'hosts-table' },
      h('caption', { class: 'sr-only' }, 'Hosts; column headers sort the table'),
      h('thead', {}, h('tr', {}, ths)), tbody);
    // A page of rows at a time: a thousand live rows would keep the browser busy restyling
    // the table; sorting and filtering still see every host.
    const PAGE_ROWS = 100;
    let shownRows = PAGE_ROWS;
    const moreText = h('span', { class: 'muted' });
    const moreBtn = h('button', { type: 'button', class: 'btn-link', 'data-testid': 'show-more' }, 'Show more');
    const allBtn = h('button', { type: 'button', class: 'btn-link', 'data-testid': 'show-all' }, 'Show all');
    const more = h('div', { class: 'table-more', hidden: true, 'data-testid': 'table-more' }, moreText, moreBtn, allBtn);
    moreBtn.addEventListener('click', () => { shownRows += PAGE_ROWS; everything(); });
    allBtn.addEventListener('click', () => { shownRows = Infinity; everything(); });
    const hostsPanel = h('section', { class: 'panel hosts-panel' },
      h('div', { class: 'panel-head' }, h('h2', {}, 'Hosts'), count, h('div', { class: 'spacer' }), filterInput),
      h('div', { class: 'table-wrap' }, table), more, empty);

    const topCpu = h('ol', { class: 'topk' });
    const topMem = h('ol', { class: 'topk' });
    const side = h('div', { class: 'side' },
      h('section', { class: 'panel', 'data-testid': 'topk-cpu' },
        h('div', { class: 'panel-head' }, h('h2', {}, 'Top CPU'), h('span', { class: 'muted' }, 'latest value')), topCpu),
      h('section', { class: 'panel', 'data-testid': 'topk-mem' },
        h('div', { class: 'panel-head' }, h('h2', {}, 'Top memory'), h('span', { class: 'muted' }, 'latest value')), topMem));

    const updated = h('span', { class: 'muted', 'data-testid': 'updated' });
    main.append(h('section', { class: 'view', 'data-testid': 'view-overview' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), updated),
      cards,
      h('div', { class: 'overview-grid' }, hostsPanel, side)));

    const refs = new Map(); // host_id -> row refs (the rows on the page)
    let order = [];
    let fullOrder = []; // every host, sorted
    let known = new Set();

    function rowRefs(id) {
      const link = h('a', { href: '#/host/' + encodeURIComponent(id), class: 'host-link' }, id);
      const marker = h('span', { class: 'marker', hidden: true, 'data-testid': 'stale-marker-' + id }, icon('warn'));
      const chips = h('span', { class: 'chips' });
      const state = h('span', { class: 'pill', 'data-testid': 'state-' + id }, h('i', { class: 'dot' }), h('span', {}));
      const canvas = h('canvas', { width: 88, height: 24 });
      const spark = h('span', { class: 'spark', 'data-testid': 'spark-' + id, 'data-points': '0', 'data-last-ts': '0' }, canvas);
      const v = {};
      for (const k of ['cpu', 'mem', 'load1', 'disk', 'net_rx', 'net_tx', 'seen']) v[k] = h('span', { class: 'v' });
      const memMeter = meter(null);
      const diskMeter = meter(null);
      const tr = h('tr', { 'data-testid': 'host-row-' + id, 'data-host': id, class: 'host-row' },
        h('td', { class: 'col-host_id' }, h('div', { class: 'hostcell' }, marker, link, chips)),
        h('td', { class: 'col-state' }, state),
        h('td', { class: 'num col-cpu' }, h('div', { class: 'cpucell' }, spark, v.cpu)),
        h('td', { class: 'num col-mem' }, v.mem, memMeter),
        h('td', { class: 'num col-load1' }, v.load1),
        h('td', { class: 'num col-disk' }, v.disk, diskMeter),
        h('td', { class: 'num col-net_rx' }, v.net_rx),
        h('td', { class: 'num col-net_tx' }, v.net_tx),
        h('td', { class: 'num col-last_seen_ms' }, v.seen));
      tr.addEventListener('click', (e) => {
        if (e.target.closest('a')) return;
        const sel = window.getSelection();
        if (sel && String(sel).length) return;
        location.hash = '#/host/' + encodeURIComponent(id);
      });
      return { tr, link, marker, chips, state, canvas, spark, v, memMeter, diskMeter, sig: '', labelsSig: null };
    }

    function updateRow(ref, r, now, th) {
      const st = hostState(r, now);
      if (ref.tr.dataset.state !== st) {
        ref.tr.dataset.state = st;
        ref.tr.className = 'host-row state-' + st;
        ref.state.className = 'pill pill-' + st;
        ref.state.dataset.state = st;
        setText(ref.state.lastChild, STATE_LABEL[st]);
      }
      ref.marker.hidden = st === 'live';
      ref.marker.title = st === 'live' ? '' : (st === 'stale' ? 'Stale: no data for ' : 'Gone: no data for ') + fmt.ago(r.last_seen_ms, now).replace(' ago', '');
      const labelsSig = JSON.stringify(r.labels || {});
      if (labelsSig !== ref.labelsSig) {
        ref.labelsSig = labelsSig;
        ref.chips.replaceChildren(...labelChips(r.labels, 2));
      }
      setText(ref.v.cpu, fmt.pct(r.cpu));
      ref.v.cpu.className = 'v lvl-' + level(r.cpu);
      setText(ref.v.mem, fmt.pct(r.mem));
      ref.memMeter.set(r.mem);
      setText(ref.v.load1, fmt.num(r.load1));
      setText(ref.v.disk, fmt.pct(r.disk));
      ref.diskMeter.set(r.disk);
      setText(ref.v.net_rx, fmt.rate(r.net_rx));
      setText(ref.v.net_tx, fmt.rate(r.net_tx));
      setText(ref.v.seen, fmt.ago(r.last_seen_ms, now));
      ref.v.seen.title = fmt.time(r.last_seen_ms);
      const n = r.spark_ts.length;
      const lastTs = n ? r.spark_ts[n - 1] : 0;
      const sig = n + ':' + lastTs + ':' + th + ':' + st;
      if (sig !== ref.sig) {
        ref.sig = sig;
        drawSpark(ref.canvas, r.spark_ts, r.spark_cpu, st);
        setAttr(ref.spark, 'data-points', r.spark_cpu.filter((x) => x != null).length);
        setAttr(ref.spark, 'data-last-ts', lastTs);
        ref.spark.title = 'CPU over the last ' + n + ' samples';
      }
    }

    // Top-K membership comes from viz (re-read every few seconds); values from the live rows, so
    // the panel agrees with the table between two reads.
    function renderTopk(list, el, key) {
      const field = FIELD_OF[key];
      const entries = ((dash.data && dash.data.topk && dash.data.topk[key]) || []).map((e) => {
        const r = rows.get(e.host_id);
        return r && r.last_seen_ms > e.timestamp_ms && r[field] != null ? Object.assign({}, e, { value: r[field] }) : e;
      }).sort((a, b) => b.value - a.value || a.host_id.localeCompare(b.host_id));
      const now = serverNow();
      const stateOf = (id) => (rows.has(id) ? hostState(rows.get(id), now) : 'gone');
      const sig = JSON.stringify(entries.map((e) => [e.host_id, e.value, stateOf(e.host_id)]));
      if (el.dataset.sig === sig) return;
      el.dataset.sig = sig;
      if (!entries.length) {
        el.replaceChildren(h('li', { class: 'empty-li muted' }, 'No values yet'));
        return;
      }
      el.replaceChildren(...entries.map((e, i) => {
        const lvl = level(e.value);
        const st = stateOf(e.host_id);
        return h('li', { 'data-testid': list + '-' + e.host_id, class: 'st-' + st, title: st === 'live' ? null : STATE_LABEL[st] + ': value from ' + fmt.ago(e.timestamp_ms, now) },
          h('span', { class: 'rank' }, String(i + 1)),
          h('a', { href: '#/host/' + encodeURIComponent(e.host_id), class: 'topk-host' }, e.host_id),
          h('span', { class: 'topk-val lvl-' + lvl }, fmt.pct(e.value)),
          h('span', { class: 'bar ' + lvl, 'aria-hidden': 'true' },
            h('i', { style: 'width:' + Math.max(0, Math.min(100, e.value)).toFixed(1) + '%' })));
      }));
    }

    function renderCards(now) {
      const s = summaryOf(now);
      setText(c.hosts, String(s.hosts));
      setText(c.live, String(s.live));
      setText(c.stale, String(s.stale));
      setText(c.gone, String(s.gone));
      setText(c.cpuAvg, fmt.pct(s.cpu_avg));
      setText(c.cpuMax, fmt.pct(s.cpu_max));
      c.cpuMeter.set(s.cpu_avg);
      setText(c.memAvg, fmt.pct(s.mem_avg));
      setText(c.memMax, fmt.pct(s.mem_max));
      c.memMeter.set(s.mem_avg);
      const d = dash.data;
      if (d) {
        const on = d.summary.live_push;
        setText(c.push, on ? 'On' : 'Off');
        c.push.className = 'card-value ' + (on ? 'lvl-ok' : 'lvl-warn');
        setText(c.pushSub, on
          ? d.summary.sources.length + (d.summary.sources.length === 1 ? ' broker streams' : ' brokers stream') + ' to viz'
          : 'polling brokers instead');
        const cl = d.cluster || {};
        const total = (cl.brokers || []).length;
        setText(c.brokers, (cl.healthy_brokers ?? 0) + ' / ' + total);
        c.brokers.className = 'card-value ' + (cl.healthy_brokers === total && total ? '' : 'lvl-bad');
        setText(c.brokersSub, 'healthy');
      }
    }

    let scheduled = false;
    let lastOrderAt = 0;
    let lastRenderAt = 0;
    let lastFullAt = 0;
    // Rows whose data changed since the last render; the rest are refreshed once a second (for
    // "x s ago" and states), so a thousand hosts streaming cost only the rows that moved.
    let dirty = new Set();
    let allDirty = true;
    function render(force) {
      const now = serverNow();
      lastRenderAt = Date.now();
      const th = theme();
      renderCards(now);
      // Re-sort at most once a second on live updates, so rows do not jump under the pointer.
      const list = [...rows.values()].filter((r) => {
        if (!filter) return true;
        if (r.host_id.toLowerCase().includes(filter)) return true;
        return Object.entries(r.labels || {}).some(([k, v]) => (k + '=' + v).toLowerCase().includes(filter));
      });
      let all;
      if (force || Date.now() - lastOrderAt > 1000 || list.length !== fullOrder.length || list.some((r) => !known.has(r.host_id))) {
        list.sort(compareRows(sort.key, sort.dir, now));
        all = list.map((r) => r.host_id);
        known = new Set(all);
        lastOrderAt = Date.now();
      } else {
        const visible = new Set(list.map((r) => r.host_id));
        all = fullOrder.filter((id) => visible.has(id));
      }
      fullOrder = all;
      const ids = all.slice(0, shownRows);
      more.hidden = ids.length >= all.length;
      if (!more.hidden) setText(moreText, 'Showing ' + ids.length + ' of ' + all.length + ' hosts · ');
      const onPage = new Set(ids);
      for (const id of [...refs.keys()]) {
        if (!onPage.has(id)) {
          refs.get(id).tr.remove();
          refs.delete(id);
        }
      }
      if (ids.join('\n') !== order.join('\n')) {
        const frag = document.createDocumentFragment();
        for (const id of ids) {
          let ref = refs.get(id);
          if (!ref) { ref = rowRefs(id); refs.set(id, ref); }
          frag.append(ref.tr);
        }
        const shown = new Set(ids);
        for (const [id, ref] of refs) if (!shown.has(id)) ref.tr.remove();
        tbody.append(frag);
        order = ids;
      }
      const full = force || allDirty || Date.now() - lastFullAt >= 1000;
      if (full) lastFullAt = Date.now();
      for (const id of ids) {
        if (full || dirty.has(id)) updateRow(refs.get(id), rows.get(id), now, th);
      }
      dirty = new Set();
      allDirty = false;
      for (const t of ths) {
        const k = t.dataset.key;
        t.setAttribute('aria-sort', k === sort.key ? (sort.dir === 'asc' ? 'ascending' : 'descending') : 'none');
      }
      setText(count, filter ? all.length + ' of ' + rows.size : String(rows.size));
      if (!rows.size) {
        empty.hidden = false;
        empty.replaceChildren(dash.data || dash.error
          ? h('div', {}, h('p', {}, h('b', {}, 'No hosts have reported yet.')),
            h('p', { class: 'muted' }, 'Start an agent pointed at a broker, e.g. ', h('code', {}, 'ringwatch agent --broker http://broker:9093')))
          : h('p', { class: 'muted' }, 'Loading hosts…'));
      } else if (!all.length) {
        empty.hidden = false;
        empty.replaceChildren(h('p', { class: 'muted' }, 'No host matches “' + filter + '”.'));
      } else {
        empty.hidden = true;
      }
      renderTopk('topk-cpu', topCpu, 'cpu.usage');
      renderTopk('topk-mem', topMem, 'mem.used_percent');
      if (dash.data) {
        const how = live.state !== 'open' ? ' · live connection down'
          : dash.data.summary.live_push ? ' · live values streaming' : ' · brokers polled, values may lag';
        setText(updated, 'Snapshot ' + fmt.ago(dash.data.summary.generated_ms, now) + how);
      }
    }
    // At most four renders a second: a table read by people needs no more, and a busy fleet
    // would otherwise keep the browser's main thread from anything else.
    const MIN_RENDER_MS = 250;
    function schedule(now = false) {
      if (scheduled) return;
      scheduled = true;
      const wait = now ? 0 : Math.max(0, MIN_RENDER_MS - (Date.now() - lastRenderAt));
      const go = () => requestAnimationFrame(() => { scheduled = false; if (currentView === view) render(false); });
      if (wait) setTimeout(go, wait); else go();
    }
    // New data as a whole (a dashboard read, a snapshot, a state change) is drawn at the next
    // frame; a stream of single updates at most every MIN_RENDER_MS.
    const everything = () => { allDirty = true; schedule(true); };

    render(true);
    view.cleanup.push(
      on('dashboard', everything),
      on('live-update', (m) => { dirty.add(m.host_id); schedule(); }),
      on('live-snapshot', everything),
      on('live-state', everything),
      on('theme', () => { for (const ref of refs.values()) ref.sig = ''; everything(); }),
    );
    const tick = setInterval(schedule, 1000);
    view.cleanup.push(() => clearInterval(tick));
  }

  function drawSpark(canvas, ts, vals, state) {
    const dpr = window.devicePixelRatio || 1;
    const w = 88;
    const ht = 24;
    if (canvas.width !== Math.round(w * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(ht * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, ht);
    const n = ts.length;
    if (!n) return;
    let max = 10;
    for (const v of vals) if (v != null && v > max) max = v;
    max = Math.min(100, max * 1.1);
    const t0 = ts[0];
    const span = Math.max(ts[n - 1] - t0, 1);
    const x = (t) => (n === 1 ? w - 2 : 1 + ((t - t0) / span) * (w - 3));
    const y = (v) => ht - 1.5 - (Math.min(v, max) / max) * (ht - 4);
    const color = state === 'live' ? cssVar('--accent') : cssVar('--muted');
    // Break the line where a value is missing or the time between samples is long (an outage).
    const gap = n > 2 ? Math.max(3 * ((ts[n - 1] - t0) / (n - 1)), 1) : Infinity;
    const segments = [];
    let seg = [];
    for (let i = 0; i < n; i++) {
      if (vals[i] == null || (seg.length && ts[i] - ts[i - 1] > gap * 3)) {
        if (seg.length) segments.push(seg);
        seg = [];
      }
      if (vals[i] != null) seg.push([x(ts[i]), y(vals[i])]);
    }
    if (seg.length) segments.push(seg);
    const grad = ctx.createLinearGradient(0, 0, 0, ht);
    grad.addColorStop(0, withAlpha(color, 0.35));
    grad.addColorStop(1, withAlpha(color, 0.02));
    for (const s of segments) {
      if (s.length === 1) {
        ctx.fillStyle = color;
        ctx.beginPath();
        ctx.arc(s[0][0], s[0][1], 1.5, 0, Math.PI * 2);
        ctx.fill();
        continue;
      }
      ctx.beginPath();
      ctx.moveTo(s[0][0], ht);
      for (const [px, py] of s) ctx.lineTo(px, py);
      ctx.lineTo(s[s.length - 1][0], ht);
      ctx.closePath();
      ctx.fillStyle = grad;
      ctx.fill();
      ctx.beginPath();
      s.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.25;
      ctx.lineJoin = 'round';
      ctx.stroke();
    }
  }

  /** '#rrggbb' or 'rgb(…)' with an alpha. */
  function withAlpha(color, a) {
    const c = color.trim();
    let m = c.match(/^#([0-9a-f]{6})$/i);
    if (m) {
      const n = parseInt(m[1], 16);
      return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
    }
    m = c.match(/^rgba?\(([^)]+)\)$/);
    if (m) {
      const p = m[1].split(',').slice(0, 3).join(',');
      return `rgba(${p}, ${a})`;
    }
    return c;
  }

  // ------------------------------------------------------------------ host detail

  const RANGES = [
    { id: '15m', label: '15 min', ms: 15 * 60000, step: 0 },
    { id: '1h', label: '1 h', ms: 3600000, step: 0 },
    // A step of whole minutes is read from the brokers' stored 1-minute rollups.
    { id: '6h', label: '6 h', ms: 6 * 3600000, step: 60000 },
    { id: '24h', label: '24 h', ms: 24 * 3600000, step: 120000 },
    { id: '7d', label: '7 d', ms: 7 * 24 * 3600000, step: 600000 },
  ];
  const RANGE_KEY = 'ringwatch.range';

  function chartDefs(mounts) {
    const pctRange = (u, min, max) => [0, max == null ? 100 : Math.min(100, Math.max(10, Math.ceil((max * 1.15) / 5) * 5))];
    const pct = { fmt: fmt.pct, axis: (v) => v + '%', range: pctRange, unit: 'percent' };
    return [
      Object.assign({ id: 'cpu', title: 'CPU', fill: true, series: [{ name: 'cpu.usage', label: 'Usage' }] }, pct),
      Object.assign({
        id: 'mem', title: 'Memory', fill: true,
        series: [{ name: 'mem.used_percent', label: 'Memory used' }, { name: 'swap.used_percent', label: 'Swap used' }],
      }, pct),
      Object.assign({
        id: 'disk', title: 'Disk space',
        // Per mount only when there is more than one (else it is the same line twice).
        series: [{ name: 'disk.used_percent', label: 'All disks' }].concat(mounts.length < 2 ? [] :
          mounts.slice(0, 5).map((m) => ({ name: 'disk.' + m + '.used_percent', label: m === 'root' ? '/' : m }))),
      }, pct),
      {
        id: 'net', title: 'Network', fill: true, unit: 'bytes/s',
        series: [{ name: 'net.rx_bytes_per_sec', label: 'Received' }, { name: 'net.tx_bytes_per_sec', label: 'Sent' }],
        fmt: fmt.rate, axis: fmt.rateAxis, incrs: BYTE_INCRS,
        range: (u, min, max) => [0, Math.max(1024, (max || 0) * 1.15)],
      },
      {
        id: 'load', title: 'Load average',
        series: [{ name: 'load.1', label: '1 min' }, { name: 'load.5', label: '5 min' }, { name: 'load.15', label: '15 min' }],
        fmt: (v) => fmt.num(v), axis: (v) => v.toFixed(v < 10 ? 1 : 0),
        range: (u, min, max) => [0, Math.max(1, (max || 0) * 1.2)],
      },
    ];
  }

  /** One uPlot chart: its own aligned data, drawn into a panel. */
  class Chart {
    constructor(def, group) {
      this.def = def;
      this.group = group;
      this.xs = []; // seconds
      this.ys = def.series.map(() => []);
      this.counts = def.series.map(() => 0); // samples in the newest bucket (coarse ranges)
      this.points = 0;
      this.lastTs = 0;
      this.u = null;
      this.el = h('div', {
        class: 'chart', 'data-testid': 'chart-' + def.id, 'data-points': '0', 'data-last-ts': '0',
        role: 'img', 'aria-label': def.title + ' chart',
      });
      this.msg = h('div', { class: 'chart-msg' }, 'Loading…');
      this.legend = h('div', { class: 'legend' });
      this.panel = h('section', { class: 'panel chart-panel', 'data-testid': 'panel-' + def.id },
        h('div', { class: 'panel-head' }, h('h2', {}, def.title), this.legend),
        h('div', { class: 'chart-box' }, this.el, this.msg));
      this.legendItems = def.series.map((s, i) => {
        const val = h('b', {}, '—');
        const btn = h('button', { type: 'button', class: 'lg', 'aria-pressed': 'true', title: s.name },
          h('i', { class: 'sw sw-' + (i + 1) }), h('span', {}, s.label), val);
        btn.addEventListener('click', () => {
          if (!this.u) return;
          const show = !this.u.series[i + 1].show;
          this.u.setSeries(i + 1, { show });
          btn.setAttribute('aria-pressed', String(show));
        });
        return { btn, val };
      });
      this.legend.append(...this.legendItems.map((x) => x.btn));
      this.ro = new ResizeObserver(() => this.resize());
      this.ro.observe(this.el);
    }

    /** Replaces the data with a query's result. */
    load(xs, ys, counts) {
      this.xs = xs;
      this.ys = ys;
      this.counts = counts || this.def.series.map(() => 0);
      this.recount();
      this.redraw();
    }

    recount() {
      let n = 0;
      for (let i = 0; i < this.xs.length; i++) {
        if (this.ys.some((col) => col[i] != null)) n++;
      }
      this.points = n;
    }

    /** Appends a live update; false if the chart has nothing from it or already has it. */
    append(tsMs, metrics) {
      const vals = this.def.series.map((s) => (metrics[s.name] ? metrics[s.name].value : null));
      if (vals.every((v) => v == null)) return false;
      if (tsMs <= this.lastTs) return false;
      const g = this.group;
      const n = this.xs.length;
      if (g.step) {
        // Buckets start at multiples of the step, as the brokers' rollups do.
        const b = (Math.floor(tsMs / g.step) * g.step) / 1000;
        if (n && this.xs[n - 1] === b) {
          vals.forEach((v, i) => {
            if (v == null) return;
            const c = this.counts[i] || 0;
            const old = this.ys[i][n - 1];
            this.ys[i][n - 1] = old == null ? v : (old * c + v) / (c + 1);
            this.counts[i] = c + 1;
          });
        } else {
          this.pushPoint(b, vals, g.step / 1000);
          this.counts = vals.map((v) => (v == null ? 0 : 1));
        }
      } else {
        this.pushPoint(tsMs / 1000, vals, g.gapSecs);
      }
      this.lastTs = tsMs;
      return true;
    }

    pushPoint(x, vals, gapSecs) {
      const n = this.xs.length;
      if (n && x - this.xs[n - 1] > gapSecs * 3) {
        // An outage: break the line rather than drawing across it.
        this.xs.push(this.xs[n - 1] + gapSecs);
        this.ys.forEach((col) => col.push(null));
      }
      this.xs.push(x);
      vals.forEach((v, i) => this.ys[i].push(v));
      this.points++;
    }

    /** Drops what has slid out of the window. */
    trim(startSec) {
      let k = 0;
      while (k < this.xs.length && this.xs[k] < startSec) k++;
      if (!k) return;
      this.xs.splice(0, k);
      this.ys.forEach((col) => col.splice(0, k));
      this.recount();
    }

    opts(width) {
      const pal = palette();
      const def = this.def;
      const font = '11px ' + cssVar('--font');
      const axis = {
        stroke: pal.muted, font, labelFont: font,
        grid: { stroke: pal.grid, width: 1 },
        ticks: { stroke: pal.grid, width: 1, size: 4 },
      };
      return {
        width, height: 210,
        padding: [8, 12, 0, 4],
        legend: { show: false },
        cursor: {
          sync: { key: this.group.syncKey },
          drag: { x: true, y: false, setScale: false },
          points: { size: 7, width: 2 },
          bind: { dblclick: () => () => { this.group.resetZoom(); return null; } },
        },
        select: { show: true },
        scales: { x: { time: true }, y: { range: def.range } },
        series: [
          { value: (u, v) => (v == null ? '' : fmt.time(v * 1000)) },
          ...def.series.map((s, i) => ({
            label: s.label,
            stroke: pal.series[i % pal.series.length],
            width: 1.6,
            fill: def.fill ? withAlpha(pal.series[i % pal.series.length], i === 0 ? 0.14 : 0.06) : undefined,
            points: { show: false },
            spanGaps: false,
            value: (u, v) => def.fmt(v),
          })),
        ],
        axes: [
          Object.assign({}, axis, { space: 70, values: timeTicks }),
          Object.assign({}, axis, {
            size: 70, incrs: def.incrs,
            values: (u, vals) => vals.map((v) => (v == null ? '' : def.axis(v))),
          }),
        ],
        hooks: {
          setSelect: [(u) => {
            if (u.select.width > 3) {
              const min = u.posToVal(u.select.left, 'x');
              const max = u.posToVal(u.select.left + u.select.width, 'x');
              this.group.zoomTo(min, max);
            }
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          }],
          setCursor: [(u) => this.renderLegend(u.cursor.idx)],
          setSeries: [() => this.renderLegend(this.u ? this.u.cursor.idx : null)],
        },
      };
    }

    data() { return [this.xs, ...this.ys]; }

    build() {
      if (this.u) this.u.destroy();
      const width = Math.max(200, this.el.clientWidth || 400);
      this.el.replaceChildren();
      this.u = new uPlot(this.opts(width), this.data(), this.el);
      this.el.dataset.theme = theme();
      // Keep the series the user hid hidden across rebuilds.
      this.legendItems.forEach((it, i) => {
        if (it.btn.getAttribute('aria-pressed') === 'false') this.u.setSeries(i + 1, { show: false });
      });
      this.applyScale();
    }

    applyScale() {
      const g = this.group;
      const [min, max] = g.zoom || [g.start / 1000, g.end / 1000];
      this.u.setScale('x', { min, max });
    }

    redraw() {
      if (!this.u) this.build();
      else this.u.batch(() => { this.u.setData(this.data()); this.applyScale(); });
      setAttr(this.el, 'data-points', this.points);
      setAttr(this.el, 'data-last-ts', this.lastTs);
      setAttr(this.el, 'aria-busy', !!this.group.loading);
      if (this.group.loaded) setAttr(this.el, 'data-range', this.group.loaded);
      this.renderLegend(this.u.cursor.idx);
      const g = this.group;
      if (g.error) this.showMsg(g.error, true);
      else if (g.loading && !this.points) this.showMsg('Loading…');
      else if (!this.points) this.showMsg('No data in this range');
      else this.showMsg('');
    }

    showMsg(text, isError) {
      this.msg.hidden = !text;
      this.msg.className = 'chart-msg' + (isError ? ' error' : '');
      setText(this.msg, text || '');
    }

    renderLegend(idx) {
      this.def.series.forEach((s, i) => {
        const col = this.ys[i];
        let v = null;
        if (idx != null && idx >= 0) v = col[idx];
        else for (let k = col.length - 1; k >= 0; k--) if (col[k] != null) { v = col[k]; break; }
        setText(this.legendItems[i].val, v == null ? '—' : this.def.fmt(v));
      });
    }

    resize() {
      if (!this.u) return;
      const w = Math.max(200, this.el.clientWidth);
      if (Math.abs(w - this.u.width) > 1) this.u.setSize({ width: w, height: 210 });
    }

    destroy() {
      this.ro.disconnect();
      if (this.u) this.u.destroy();
      this.u = null;
    }
  }

  // Axis steps for bytes/s: 1, 2, 5 × powers of 1024, so ticks read "5 MiB/s", not "4.77 MiB/s".
  const BYTE_INCRS = [];
  for (let p = 0; p < 6; p++) for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) BYTE_INCRS.push(m * 1024 ** p);

  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const pad2 = (n) => String(n).padStart(2, '0');
  /** x-axis labels: 24-hour local time; the date under the first tick and at midnight. */
  function timeTicks(u, splits, axisIdx, space, incr) {
    return splits.map((s, i) => {
      if (s == null) return '';
      const d = new Date(s * 1000);
      const day = MONTHS[d.getMonth()] + ' ' + d.getDate();
      if (incr >= 86400) return day;
      let t = pad2(d.getHours()) + ':' + pad2(d.getMinutes());
      if (incr < 60) t += ':' + pad2(d.getSeconds());
      const prev = i > 0 && splits[i - 1] != null ? new Date(splits[i - 1] * 1000) : null;
      return !prev || prev.getDate() !== d.getDate() ? t + '\n' + day : t;
    });
  }

  function palette() {
    return {
      muted: cssVar('--muted'),
      grid: cssVar('--grid'),
      series: [1, 2, 3, 4, 5, 6].map((i) => cssVar('--c' + i)),
    };
  }

  function hostView(view, id, params) {
    title(id);
    subscribe([id], []);
    let rangeId = params.get('range') || store.get(RANGE_KEY) || '15m';
    if (!RANGES.some((r) => r.id === rangeId)) rangeId = '15m';

    const state = h('span', { class: 'pill', 'data-testid': 'host-state' });
    const chips = h('span', { class: 'chips' });
    const meta = h('dl', { class: 'meta', 'data-testid': 'host-meta' });
    const tiles = h('div', { class: 'tiles', 'data-testid': 'host-tiles' });
    const outage = h('div', { class: 'callout', 'data-testid': 'host-outage', hidden: true, role: 'status' });
    const chartsEl = h('div', { class: 'charts' });
    const rangeBtns = RANGES.map((r) => h('button', {
      type: 'button', class: 'seg-btn', 'data-testid': 'range-' + r.id, 'aria-pressed': String(r.id === rangeId),
      onclick: () => setRange(r.id),
    }, r.label));
    const resetZoom = h('button', { type: 'button', class: 'btn btn-small', hidden: true, 'data-testid': 'reset-zoom', onclick: () => group.resetZoom() }, 'Reset zoom');
    const status = h('span', { class: 'muted small', 'data-testid': 'range-status' });
    const section = h('section', { class: 'view', 'data-testid': 'view-host', 'data-host': id },
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
        h('a', { href: '#/' }, icon('back'), 'Overview'), h('span', { class: 'sep' }, '/'), h('span', {}, id)),
      h('div', { class: 'host-head' }, h('h1', {}, id), state, chips),
      meta,
      outage,
      tiles,
      h('div', { class: 'toolbar' },
        h('div', { class: 'seg', role: 'group', 'aria-label': 'Time range' }, rangeBtns),
        resetZoom,
        h('span', { class: 'spacer' }),
        status,
        h('span', { class: 'muted small hint' }, 'Drag on a chart to zoom · double-click to reset')),
      chartsEl);
    main.append(section);

    const latest = {}; // metric -> value
    let detail = null;
    let charts = [];
    const group = {
      syncKey: 'rw-host-' + Math.random().toString(36).slice(2),
      start: 0, end: 0, step: 0, gapSecs: 5, zoom: null, loading: true, loaded: '', error: '',
      zoomTo(min, max) {
        group.zoom = [min, max];
        resetZoom.hidden = false;
        for (const c of charts) c.applyScale();
      },
      resetZoom() {
        group.zoom = null;
        resetZoom.hidden = true;
        for (const c of charts) c.applyScale();
      },
    };

    function row() { return rows.get(id); }

    function renderHead() {
      const r = row();
      const now = serverNow();
      const st = r ? hostState(r, now) : (detail ? detail.state : 'gone');
      state.className = 'pill pill-' + st;
      state.dataset.state = st;
      state.replaceChildren(h('i', { class: 'dot' }), STATE_LABEL[st]);
      const labels = (r && r.labels) || (detail && detail.labels) || {};
      const sig = JSON.stringify(labels);
      if (chips.dataset.sig !== sig) {
        chips.dataset.sig = sig;
        chips.replaceChildren(...labelChips(labels, 12));
      }
      const lastSeen = Math.max((r && r.last_seen_ms) || 0, (detail && detail.last_seen_ms) || 0);
      const version = (r && r.agent_version) || (detail && detail.agent_version) || '';
      const interval = (r && r.interval_ms) || (detail && detail.interval_ms) || 0;
      const items = [
        ['Agent', version ? 'v' + version : '—'],
        ['Interval', fmt.interval(interval)],
        ['Last seen', fmt.ago(lastSeen, now)],
        ['Cores', latest['cpu.cores'] != null ? fmt.int(latest['cpu.cores']) : '—'],
        ['Uptime', fmt.duration(latest['system.uptime'])],
        ['Processes', fmt.int(latest['system.processes'])],
      ];
      const sigm = JSON.stringify(items);
      if (meta.dataset.sig !== sigm) {
        meta.dataset.sig = sigm;
        meta.replaceChildren(...items.map(([k, v]) => h('div', { class: 'meta-item', 'data-testid': 'meta-' + k.toLowerCase().replace(/\s+/g, '-') }, h('dt', {}, k), h('dd', {}, v))));
      }
      if (st !== 'live') {
        const gap = lastSeen ? fmt.ago(lastSeen, now).replace(' ago', '') : '';
        state.title = lastSeen ? 'No data for ' + gap : 'No data yet';
        outage.hidden = false;
        outage.dataset.state = st;
        const text = !lastSeen
          ? 'No data from ' + id + ' has arrived yet.'
          : 'No data from ' + id + ' for ' + gap + ' (expected every ' + fmt.interval(interval) + '). '
            + (st === 'gone' ? 'The host is gone: its agent stopped or was removed. ' : 'Its agent may be down or cut off from the brokers. ')
            + 'The values below are the last that arrived, at ' + fmt.time(lastSeen) + '.';
        if (outage.textContent !== text) outage.replaceChildren(icon('warn'), h('span', {}, text));
      } else {
        state.title = '';
        outage.hidden = true;
      }
      section.dataset.state = st;
    }

    function tile(testid, label, value, sub, lvl) {
      return h('div', { class: 'tile', 'data-testid': testid },
        h('div', { class: 'tile-label' }, label),
        h('div', { class: 'tile-value' + (lvl ? ' lvl-' + lvl : '') }, value),
        h('div', { class: 'tile-sub' }, sub || ' '));
    }

    function renderTiles() {
      const v = (n) => (latest[n] == null ? null : latest[n]);
      const cpu = v('cpu.usage');
      const mem = v('mem.used_percent');
      const disk = v('disk.used_percent');
      const list = [
        tile('tile-cpu', 'CPU', fmt.pct(cpu), v('cpu.cores') != null ? fmt.int(v('cpu.cores')) + ' cores' : '', level(cpu)),
        tile('tile-mem', 'Memory', fmt.pct(mem), v('mem.total') != null ? fmt.bytes(v('mem.used')) + ' of ' + fmt.bytes(v('mem.total')) : '', level(mem)),
        tile('tile-swap', 'Swap', fmt.pct(v('swap.used_percent')), v('swap.total') ? fmt.bytes(v('swap.used')) + ' of ' + fmt.bytes(v('swap.total')) : 'no swap'),
        tile('tile-disk', 'Disk', fmt.pct(disk), v('disk.total') != null ? fmt.bytes(v('disk.used')) + ' of ' + fmt.bytes(v('disk.total')) : '', level(disk, 80, 90)),
        tile('tile-net', 'Network', [
          h('span', { class: 'netv', title: 'received' }, icon('down'), fmt.rate(v('net.rx_bytes_per_sec'))),
          h('span', { class: 'netv', title: 'sent' }, icon('up'), fmt.rate(v('net.tx_bytes_per_sec')))]),
        tile('tile-load', 'Load', fmt.num(v('load.1')), '5 min ' + fmt.num(v('load.5')) + ' · 15 min ' + fmt.num(v('load.15'))),
      ];
      tiles.replaceChildren(...list);
    }

    function setLatest(metrics) {
      for (const [k, m] of Object.entries(metrics || {})) latest[k] = m.value;
    }

    // Live updates that arrive while a range query is in flight, applied after it.
    let pending = [];
    let loadSeq = 0;
    let abort = null;

    function windowNow() {
      const r = RANGES.find((x) => x.id === rangeId);
      group.end = serverNow() + 1000;
      group.start = group.end - r.ms;
    }

    async function loadRange() {
      const seq = ++loadSeq;
      if (abort) abort.abort();
      const ctl = new AbortController();
      abort = ctl;
      const r = RANGES.find((x) => x.id === rangeId);
      group.step = r.step;
      group.zoom = null;
      resetZoom.hidden = true;
      group.loading = true;
      group.error = '';
      windowNow();
      const interval = ((row() && row().interval_ms) || (detail && detail.interval_ms) || 5000);
      group.gapSecs = Math.max(interval / 1000, 1);
      pending = [];
      setText(status, 'Loading ' + r.label + '…');
      for (const c of charts) c.redraw();
      const start = new Date(group.start).toISOString();
      const end = new Date(group.end).toISOString();
      const names = charts.flatMap((c) => c.def.series.map((s) => s.name));
      const t0 = performance.now();
      try {
        let byName; // name -> {xs(ms), vs}
        if (!r.step) {
          const q = new URLSearchParams({ host_id: id, start_time: start, end_time: end, metrics: names.join(',') });
          const body = await api('/api/metrics?' + q, { signal: ctl.signal });
          byName = new Map();
          for (const s of body.series || []) byName.set(s.name, { ts: body.timestamps, vs: s.values });
        } else {
          // One request: the brokers' rollups, every series in buckets of the step.
          const q = new URLSearchParams({ host_id: id, start_time: start, end_time: end, metrics: names.join(','), step: r.step / 1000 + 's' });
          const body = await api('/api/metrics?' + q, { signal: ctl.signal });
          byName = new Map();
          const rows = body.rows || [];
          for (const s of body.series || []) {
            byName.set(s.name, { ts: body.timestamps, vs: s.values, counts: s.values.map((v, k) => (v == null ? 0 : rows[k] || 1)) });
          }
        }
        if (seq !== loadSeq || currentView !== view) return;
        for (const c of charts) fillChart(c, byName, r.step);
        group.loading = false;
        group.loaded = r.id;
        const ms = Math.round(performance.now() - t0);
        const pts = Math.max(0, ...charts.map((c) => c.points));
        setText(status, (r.step ? pts + ' points (' + r.step / 60000 + ' min averages)' : pts + ' points') + ' · ' + ms + ' ms');
        for (const u of pending) applyLive(u);
        pending = [];
        for (const c of charts) c.redraw();
      } catch (e) {
        if (e.name === 'AbortError' || seq !== loadSeq || currentView !== view) return;
        group.loading = false;
        group.error = e.status === 404 ? 'No data for this host in the brokers' : 'Could not load the range: ' + e.message;
        setText(status, '');
        for (const c of charts) c.redraw();
      } finally {
        if (abort === ctl) abort = null;
      }
    }

    /** A chart's aligned data from per-name series; timestamps where it has nothing are left out. */
    function fillChart(c, byName, step) {
      const cols = c.def.series.map((s) => byName.get(s.name));
      const tsSet = new Set();
      for (const col of cols) if (col) col.ts.forEach((t, i) => { if (col.vs[i] != null) tsSet.add(t); });
      const ts = [...tsSet].sort((a, b) => a - b);
      const index = cols.map((col) => {
        const m = new Map();
        if (col) col.ts.forEach((t, i) => m.set(t, i));
        return m;
      });
      const xs = [];
      const ys = c.def.series.map(() => []);
      const gap = (step ? step / 1000 : group.gapSecs) * 3;
      let prev = null;
      for (const t of ts) {
        const x = t / 1000;
        if (prev != null && x - prev > gap) {
          xs.push(prev + gap / 3);
          ys.forEach((y) => y.push(null));
        }
        xs.push(x);
        cols.forEach((col, i) => {
          const k = index[i].get(t);
          ys[i].push(col && k != null ? col.vs[k] : null);
        });
        prev = x;
      }
      let counts = null;
      if (step && ts.length) {
        const lastT = ts[ts.length - 1];
        counts = cols.map((col, i) => {
          const k = index[i].get(lastT);
          return col && col.counts && k != null ? col.counts[k] : 0;
        });
      }
      // The newest timestamp: for raw data the last sample; for averages, the newest bucket's end
      // is unknown, so its start.
      c.lastTs = ts.length ? ts[ts.length - 1] : 0;
      c.load(xs, ys, counts);
    }

    function applyLive(u) {
      let changed = false;
      for (const c of charts) if (c.append(u.timestamp_ms, u.metrics)) changed = true;
      return changed;
    }

    function buildCharts(mounts) {
      for (const c of charts) c.destroy();
      charts = chartDefs(mounts).map((d) => new Chart(d, group));
      chartsEl.replaceChildren(...charts.map((c) => c.panel));
      for (const c of charts) c.build();
    }

    function setRange(idr) {
      if (idr === rangeId && !group.error) return;
      rangeId = idr;
      store.set(RANGE_KEY, idr);
      for (const b of rangeBtns) b.setAttribute('aria-pressed', String(b.dataset.testid === 'range-' + idr));
      history.replaceState(null, '', '#/host/' + encodeURIComponent(id) + (idr !== '15m' ? '?range=' + idr : ''));
      loadRange();
    }

    let frame = false;
    function scheduleCharts() {
      if (frame) return;
      frame = true;
      requestAnimationFrame(() => {
        frame = false;
        if (currentView !== view) return;
        if (!group.zoom) windowNow();
        const startSec = (group.start - (RANGES.find((x) => x.id === rangeId).step || 0)) / 1000;
        for (const c of charts) { c.trim(startSec); c.redraw(); }
      });
    }

    async function init() {
      renderHead();
      renderTiles();
      buildCharts([]);
      try {
        detail = await api('/api/metrics/host/' + encodeURIComponent(id));
      } catch (e) {
        if (currentView !== view) return;
        if (e.status === 404) {
          section.replaceChildren(
            h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, icon('back'), 'Overview')),
            h('div', { class: 'empty big', 'data-testid': 'host-unknown' },
              h('h1', {}, 'Unknown host'),
              h('p', { class: 'muted' }, 'viz has never heard of “' + id + '”. It may have been removed, or its agent has not reported yet.')));
          for (const c of charts) c.destroy();
          charts = [];
          return;
        }
        // Go on with the range: the brokers may still answer.
      }
      if (currentView !== view) return;
      if (detail) {
        setLatest(detail.metrics);
        const mounts = Object.keys(detail.metrics || {})
          .map((n) => n.match(/^disk\.(.+)\.used_percent$/))
          .filter(Boolean).map((m) => m[1]).sort();
        if (mounts.length) buildCharts(mounts);
      }
      renderHead();
      renderTiles();
      await loadRange();
    }

    view.cleanup.push(
      on('live-update', (u) => {
        if (u.host_id !== id) return;
        setLatest(u.metrics);
        renderTiles();
        renderHead();
        if (group.loading) { pending.push(u); return; }
        if (applyLive(u)) scheduleCharts();
      }),
      on('live-snapshot', (hosts) => {
        const u = hosts.find((x) => x.host_id === id);
        if (!u) return;
        setLatest(u.metrics);
        renderTiles();
        renderHead();
        if (group.loading) { pending.push(u); return; }
        if (applyLive(u)) scheduleCharts();
      }),
      // After the live feed was down or skipped updates, read the range again: no gap is shown.
      on('live-reconnected', () => { if (!group.loading && charts.length) loadRange(); }),
      on('live-downsampled', () => { if (!group.loading) setTimeout(() => { if (currentView === view) loadRange(); }, 1000); }),
      on('dashboard', renderHead),
      on('theme', () => { for (const c of charts) c.build(); }),
      () => { if (abort) abort.abort(); for (const c of charts) c.destroy(); },
    );
    const tick = setInterval(() => { renderHead(); if (!group.loading) scheduleCharts(); }, 5000);
    const tickHead = setInterval(renderHead, 1000);
    view.cleanup.push(() => { clearInterval(tick); clearInterval(tickHead); });
    init();
  }

  // ------------------------------------------------------------------ cluster

  function clusterView(view) {
    title('Cluster');
    subscribe([], OVERVIEW_METRICS);
    const body = h('div', { class: 'view' });
    main.append(h('section', { class: 'view', 'data-testid': 'view-cluster' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Cluster'), h('span', { class: 'muted' }, 'Brokers as viz sees them')),
      body));
    let lastSig = '';
    function render() {
      const d = dash.data;
      if (!d) {
        if (dash.error) body.replaceChildren(h('div', { class: 'empty' }, h('p', {}, 'Cannot read the cluster: ' + dash.error.message)));
        else body.replaceChildren(h('div', { class: 'empty' }, h('p', { class: 'muted' }, 'Loading…')));
        return;
      }
      const cl = d.cluster || {};
      const sig = JSON.stringify(cl);
      if (sig === lastSig) return;
      lastSig = sig;
      const brokers = cl.brokers || [];
      const sources = new Set(cl.sources || []);
      const single = brokers.length <= 1;
      const raftNote = single ? 'single broker: Raft arrives later' : 'Raft control plane arrives later';
      const leader = cl.leader == null ? null
        : typeof cl.leader === 'object' ? (cl.leader.node_id || cl.leader.url || cl.leader.id || JSON.stringify(cl.leader)) : String(cl.leader);
      const card = (testid, label, value, sub, cls) => h('div', { class: 'card', 'data-testid': testid },
        h('div', { class: 'card-label' }, label), h('div', { class: 'card-value ' + (cls || '') }, value), h('div', { class: 'card-sub' }, sub));
      const healthy = cl.healthy_brokers ?? brokers.filter((b) => b.healthy).length;
      body.replaceChildren(
        h('div', { class: 'cards' },
          card('cluster-healthy', 'Healthy brokers', healthy + ' / ' + brokers.length,
            healthy === brokers.length ? 'all answer health checks' : (brokers.length - healthy) + ' not answering',
            healthy === brokers.length && brokers.length ? 'lvl-ok' : 'lvl-bad'),
          card('cluster-push', 'Live push', cl.live_push ? 'On' : 'Off',
            cl.live_push ? sources.size + ' streaming to viz' : 'viz polls brokers instead', cl.live_push ? 'lvl-ok' : 'lvl-warn'),
          card('cluster-leader', 'Raft leader', leader || '—', leader ? 'elected leader' : raftNote),
          card('cluster-epoch', 'Ring epoch', cl.ring_epoch == null ? '—' : String(cl.ring_epoch),
            cl.ring_epoch == null ? raftNote : 'consistent-hash ring version')),
        h('section', { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', {}, 'Brokers'), h('span', { class: 'muted' }, String(brokers.length))),
          h('div', { class: 'table-wrap' },
            h('table', { class: 'brokers', 'data-testid': 'brokers-table' },
              h('thead', {}, h('tr', {},
                h('th', { scope: 'col' }, 'Broker'), h('th', { scope: 'col' }, 'Health'),
                h('th', { scope: 'col' }, 'Streams live to viz'), h('th', { scope: 'col' }, 'Role'),
                h('th', { scope: 'col' }, 'Last error'))),
              h('tbody', {}, brokers.map((b, i) => {
                const isLeader = leader && (leader === b.url || leader === b.node_id);
                return h('tr', { 'data-testid': 'broker-row-' + i, 'data-url': b.url },
                  h('td', {}, h('span', { class: 'broker-name' }, icon('server'), h('code', {}, b.url))),
                  h('td', {}, h('span', { class: 'pill pill-' + (b.healthy ? 'live' : 'gone-bad') }, h('i', { class: 'dot' }), b.healthy ? 'Healthy' : 'Unhealthy')),
                  h('td', {}, sources.has(b.url)
                    ? h('span', { class: 'pill pill-live' }, h('i', { class: 'dot' }), 'Streaming')
                    : h('span', { class: 'pill pill-stale' }, h('i', { class: 'dot' }), b.healthy ? 'Polled' : 'No')),
                  h('td', {}, isLeader ? 'Leader' : h('span', { class: 'muted' }, leader ? 'Follower' : '—')),
                  h('td', { class: b.last_error ? 'err' : 'muted' }, b.last_error || '—'));
              }))))),
        h('p', { class: 'muted small note' },
          'viz health-checks every broker on a timer and fails over to the next one; a broker that streams live pushes each stored snapshot to viz at once, others are polled every few seconds.'));
    }
    render();
    view.cleanup.push(on('dashboard', render));
  }

  function notFoundView() {
    title('Not found');
    main.append(h('section', { class: 'view' },
      h('div', { class: 'empty big', 'data-testid': 'not-found' },
        h('h1', {}, 'Page not found'),
        h('p', {}, h('a', { href: '#/' }, 'Back to the overview')))));
  }

  // ------------------------------------------------------------------ boot

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

  applyTheme();
  boot();
})();
