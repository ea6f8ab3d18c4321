/* The in-memory model of the fleet: one row per host (newest values and a CPU sparkline) from
 * /api/dashboard, with live updates merged in by timestamp (never shown twice), the latest
 * dashboard read, and each host's live / stale / gone state. The feeds (poll.js, live.js) fill
 * it; the views read it. */

import { serverNow } from './clock.js';

const SPARK_MAX = 120;
export const POLL_MS = 3000;
export const rows = new Map(); // host_id -> row as /api/dashboard/hosts, merged with live updates
// The latest read of /api/dashboard (summary, Top-K, cluster), or why it failed, and when one last
// succeeded.
export const dash = { data: null, error: null, okAt: 0 };
// Whether the live WebSocket is open (live.js says so): pushed values arrive at once.
let liveOpen = false;

export const FIELD_OF = {
  'cpu.usage': 'cpu',
  'mem.used_percent': 'mem',
  'load.1': 'load1',
  'disk.used_percent': 'disk',
  'net.rx_bytes_per_sec': 'net_rx',
  'net.tx_bytes_per_sec': 'net_tx',
};
export const OVERVIEW_METRICS = Object.keys(FIELD_OF);

export function mergeRows(list) {
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
export function applyToRows(u) {
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
export function hostState(r, now = serverNow()) {
  if (!r.last_seen_ms) return 'gone';
  // The rule comes with the summary (viz's host_state); these are its values until then.
  const rule = (dash.data && dash.data.summary) || {};
  const interval = r.interval_ms || rule.default_interval_ms || 5000;
  const pushed = liveOpen && (!dash.data || dash.data.summary.live_push);
  const slack = pushed ? 1000 : POLL_MS + 1000;
  const age = now - r.last_seen_ms;
  if (age <= (rule.stale_after_intervals || 3) * interval + slack) return 'live';
  if (age <= (rule.gone_after_ms || 600000)) return 'stale';
  return 'gone';
}

export function summaryOf(now) {
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

export function setLiveOpen(open) {
  liveOpen = open;
}

/** Forgets everything read (on sign-out). */
export function clearModel() {
  dash.data = null;
  dash.error = null;
  rows.clear();
}
