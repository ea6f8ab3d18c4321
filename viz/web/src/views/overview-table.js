/* The overview's hosts table: its columns and sort order, and one row per host, built once and
 * then updated in place. */

import { h, icon, setAttr, setText } from '../dom.js';
import { fmt } from '../format.js';
import { hostState } from '../model.js';
import { drawSpark } from '../spark.js';
import { store } from '../storage.js';
import { STATE_LABEL, labelChips, level, meter } from '../widgets.js';

const STATE_RANK = { live: 0, stale: 1, gone: 2 };

export const COLS = [
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
export const SORT_KEY = 'ringwatch.sort';

export function loadSort() {
  try {
    const s = JSON.parse(store.get(SORT_KEY) || 'null');
    if (s && COLS.some((c) => c.key === s.key) && (s.dir === 'asc' || s.dir === 'desc')) return s;
  } catch { /* default */ }
  return { key: 'host_id', dir: 'asc' };
}

export function compareRows(key, dir, now) {
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

/** A host's row: its elements, made once, and what was last drawn into them. */
export function rowRefs(id) {
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

/** Draws a host's values into its row (texts, and the sparkline, only where they changed). */
export function updateRow(ref, r, now, th) {
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
