/* Reads /api/dashboard every few seconds (every 15 s while the page is hidden) into the model:
 * host states, Top-K, summary, cluster; sets the server clock. Emits 'dashboard' after each. */

import { HttpError, api } from './api.js';
import { emit } from './bus.js';
import { setServerTime } from './clock.js';
import { POLL_MS, dash, mergeRows } from './model.js';

const poller = { timer: null, running: false, inflight: null };

async function pollOnce() {
  if (poller.inflight || !poller.running) return;
  const ctl = new AbortController();
  poller.inflight = ctl;
  const timeout = setTimeout(() => ctl.abort(), 10000);
  try {
    const d = await api('/api/dashboard', { signal: ctl.signal });
    if (!poller.running) return;
    if (d && d.summary && d.summary.generated_ms) setServerTime(d.summary.generated_ms);
    dash.data = d;
    dash.error = null;
    dash.okAt = Date.now();
    mergeRows(d.hosts || []);
  } catch (e) {
    if (!poller.running) return;
    dash.error = e.name === 'AbortError' ? new HttpError(0, 'viz did not answer within 10 s') : e;
  } finally {
    clearTimeout(timeout);
    poller.inflight = null;
  }
  emit('dashboard');
}

function pollLoop() {
  clearTimeout(poller.timer);
  if (!poller.running) return;
  pollOnce().finally(() => {
    if (!poller.running) return;
    clearTimeout(poller.timer);
    poller.timer = setTimeout(pollLoop, document.hidden ? 15000 : POLL_MS);
  });
}
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && poller.running) pollLoop();
});

export function startPolling() {
  if (!poller.running) {
    poller.running = true;
    pollLoop();
  }
}

export function stopPolling() {
  poller.running = false;
  clearTimeout(poller.timer);
  if (poller.inflight) poller.inflight.abort();
}
