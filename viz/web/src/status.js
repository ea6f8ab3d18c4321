/* The header's live pill and the delayed-data banner: whether the live feed is down, brokers do
 * not stream, or viz cannot be read, with a "Reconnect now" button. Redrawn on every change of
 * the feeds and once a second while anything is wrong. */

import { signedIn } from './api.js';
import { on } from './bus.js';
import { $, h, icon } from './dom.js';
import { fmt } from './format.js';
import { live, reconnectNow } from './live.js';
import { dash } from './model.js';

// The view shown (the router announces each one with 'route'); null before the first.
let shownView = null;

/** The header's live pill and the delayed-data banner. */
export function renderStatus() {
  const pill = $('[data-testid="live-status"]');
  const banner = $('#banner');
  if (!pill || !banner) return;
  const showData = signedIn() && shownView && shownView.name !== 'login';
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
on('route', (view) => { shownView = view; renderStatus(); });
