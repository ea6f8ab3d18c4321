/* #/host/<id>: a host's state, facts and newest values, and its charts over a chosen range (read
 * from the brokers, then grown by live updates; zoom by dragging). */

import { api } from '../api.js';
import { on } from '../bus.js';
import { Chart } from '../chart.js';
import { serverNow } from '../clock.js';
import { h, icon, setText } from '../dom.js';
import { fmt } from '../format.js';
import { subscribe } from '../live.js';
import { hostState, rows } from '../model.js';
import { main, title } from '../shell.js';
import { store } from '../storage.js';
import { STATE_LABEL, labelChips, level } from '../widgets.js';
import { RANGES, RANGE_KEY, chartDefs, fillChart, readRange } from './host-charts.js';

export function hostView(view, id, params) {
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
      const byName = await readRange(id, names, r, start, end, ctl.signal);
      if (seq !== loadSeq || !view.active) return;
      for (const c of charts) fillChart(c, byName, r.step, group.gapSecs);
      group.loading = false;
      group.loaded = r.id;
      const ms = Math.round(performance.now() - t0);
      const pts = Math.max(0, ...charts.map((c) => c.points));
      setText(status, (r.step ? pts + ' points (' + r.step / 60000 + ' min averages)' : pts + ' points') + ' · ' + ms + ' ms');
      for (const u of pending) applyLive(u);
      pending = [];
      for (const c of charts) c.redraw();
    } catch (e) {
      if (e.name === 'AbortError' || seq !== loadSeq || !view.active) return;
      group.loading = false;
      group.error = e.status === 404 ? 'No data for this host in the brokers' : 'Could not load the range: ' + e.message;
      setText(status, '');
      for (const c of charts) c.redraw();
    } finally {
      if (abort === ctl) abort = null;
    }
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
      if (!view.active) return;
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
      if (!view.active) return;
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
    if (!view.active) return;
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
    on('live-downsampled', () => { if (!group.loading) setTimeout(() => { if (view.active) loadRange(); }, 1000); }),
    on('dashboard', renderHead),
    on('theme', () => { for (const c of charts) c.build(); }),
    () => { if (abort) abort.abort(); for (const c of charts) c.destroy(); },
  );
  const tick = setInterval(() => { renderHead(); if (!group.loading) scheduleCharts(); }, 5000);
  const tickHead = setInterval(renderHead, 1000);
  view.cleanup.push(() => { clearInterval(tick); clearInterval(tickHead); });
  init();
}
