/* How values read: percentages, bytes, rates, ages and times. */

import { serverNow } from './clock.js';

export const fmt = {
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
