/* What the host page charts: its time ranges, the charts and their series, and how one range
 * query's answer (raw samples, or the brokers' rollups in buckets of the range's step) is read
 * and laid out on each chart. */

import { api } from '../api.js';
import { BYTE_INCRS } from '../chart.js';
import { fmt } from '../format.js';

export const RANGES = [
  { id: '15m', label: '15 min', ms: 15 * 60000, step: 0 },
  { id: '1h', label: '1 h', ms: 3600000, step: 0 },
  // A step of whole minutes is read from the brokers' stored 1-minute rollups.
  { id: '6h', label: '6 h', ms: 6 * 3600000, step: 60000 },
  { id: '24h', label: '24 h', ms: 24 * 3600000, step: 120000 },
  { id: '7d', label: '7 d', ms: 7 * 24 * 3600000, step: 600000 },
];
export const RANGE_KEY = 'ringwatch.range';

export function chartDefs(mounts) {
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

/** One request for a host's series over [start, end] (ISO times): raw samples, or with the
 * range's step the brokers' rollups, every series in buckets of the step. name -> {ts (ms), vs,
 * counts (samples in each bucket; with a step only)}. */
export async function readRange(id, names, r, start, end, signal) {
  let byName;
  if (!r.step) {
    const q = new URLSearchParams({ host_id: id, start_time: start, end_time: end, metrics: names.join(',') });
    const body = await api('/api/metrics?' + q, { signal });
    byName = new Map();
    for (const s of body.series || []) byName.set(s.name, { ts: body.timestamps, vs: s.values });
  } else {
    // One request: the brokers' rollups, every series in buckets of the step.
    const q = new URLSearchParams({ host_id: id, start_time: start, end_time: end, metrics: names.join(','), step: r.step / 1000 + 's' });
    const body = await api('/api/metrics?' + q, { signal });
    byName = new Map();
    const rows = body.rows || [];
    for (const s of body.series || []) {
      byName.set(s.name, { ts: body.timestamps, vs: s.values, counts: s.values.map((v, k) => (v == null ? 0 : rows[k] || 1)) });
    }
  }
  return byName;
}

/** A chart's aligned data from per-name series; timestamps where it has nothing are left out. */
export function fillChart(c, byName, step, gapSecs) {
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
  const gap = (step ? step / 1000 : gapSecs) * 3;
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
