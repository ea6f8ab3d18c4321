/* The live feed: a WebSocket to viz's /ws, subscribed by host and metric prefix; its updates go
 * into the model and out on the bus. Reconnects with backoff; its state is on the bus too. */

import { api, auth } from './api.js';
import { emit } from './bus.js';
import { OVERVIEW_METRICS, applyToRows, setLiveOpen } from './model.js';

export const live = {
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
  setLiveOpen(s === 'open');
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

export function reconnectNow() {
  live.attempt = 0;
  if (live.ws) return;
  connect();
}

function sendSubscribe() {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) {
    live.ws.send(JSON.stringify({ type: 'subscribe', hosts: live.sub.hosts, metrics: live.sub.metrics }));
  }
}

export function subscribe(hosts, metrics) {
  const same = JSON.stringify(live.sub) === JSON.stringify({ hosts, metrics });
  live.sub = { hosts, metrics };
  if (!same) sendSubscribe();
}

export function startLive() {
  if (!live.running) {
    live.running = true;
    live.attempt = 0;
    connect();
  }
}

export function stopLive() {
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
