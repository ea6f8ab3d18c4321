/* Small pieces the views share: state labels, warning levels, meters and label chips. */

import { h } from './dom.js';

export const STATE_LABEL = { live: 'Live', stale: 'Stale', gone: 'Gone' };

export function level(v, warn = 75, bad = 90) {
  if (v == null) return '';
  return v >= bad ? 'bad' : v >= warn ? 'warn' : 'ok';
}

export function meter(v) {
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

export function labelChips(labels, max = 4) {
  const entries = Object.entries(labels || {});
  return entries.slice(0, max).map(([k, v]) => h('span', { class: 'chip', title: k + '=' + v }, k + '=' + v))
    .concat(entries.length > max ? [h('span', { class: 'chip muted' }, '+' + (entries.length - max))] : []);
}
