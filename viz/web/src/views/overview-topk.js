/* The overview's Top-K panels (highest CPU, highest memory). */

import { serverNow } from '../clock.js';
import { h } from '../dom.js';
import { fmt } from '../format.js';
import { FIELD_OF, dash, hostState, rows } from '../model.js';
import { STATE_LABEL, level } from '../widgets.js';

// Top-K membership comes from viz (re-read every few seconds); values from the live rows, so
// the panel agrees with the table between two reads.
export function renderTopk(list, el, key) {
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
