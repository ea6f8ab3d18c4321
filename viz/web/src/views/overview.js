/* #/ the overview: summary cards, the hosts table (sortable, filterable, a page of rows at a
 * time) and the Top-K panels, redrawn as dashboard reads and live updates come in. */

import { on } from '../bus.js';
import { serverNow } from '../clock.js';
import { h, setText } from '../dom.js';
import { fmt } from '../format.js';
import { live, subscribe } from '../live.js';
import { OVERVIEW_METRICS, dash, rows, summaryOf } from '../model.js';
import { main, title } from '../shell.js';
import { store } from '../storage.js';
import { theme } from '../theme.js';
import { meter } from '../widgets.js';
import { COLS, SORT_KEY, compareRows, loadSort, rowRefs, updateRow } from './overview-table.js';
import { renderTopk } from './overview-topk.js';

export function overviewView(view) {
  title('Overview');
  subscribe([], OVERVIEW_METRICS);
  let sort = loadSort();
  let filter = '';

  const card = (testid, label, ...body) => h('div', { class: 'card', 'data-testid': testid },
    h('div', { class: 'card-label' }, label), ...body);
  const c = {
    hosts: h('div', { class: 'card-value', 'data-testid': 'count-hosts' }, '—'),
    live: h('b', { 'data-testid': 'count-live' }, '0'),
    stale: h('b', { 'data-testid': 'count-stale' }, '0'),
    gone: h('b', { 'data-testid': 'count-gone' }, '0'),
    cpuAvg: h('div', { class: 'card-value' }, '—'),
    cpuMax: h('b', {}, '—'),
    cpuMeter: meter(null),
    memAvg: h('div', { class: 'card-value' }, '—'),
    memMax: h('b', {}, '—'),
    memMeter: meter(null),
    push: h('div', { class: 'card-value', 'data-testid': 'push-state' }, '—'),
    pushSub: h('div', { class: 'card-sub' }, ''),
    brokers: h('div', { class: 'card-value' }, '—'),
    brokersSub: h('div', { class: 'card-sub' }, ''),
  };
  const cards = h('div', { class: 'cards' },
    card('card-hosts', 'Hosts', c.hosts,
      h('div', { class: 'card-sub states' },
        h('span', { class: 'st st-live' }, h('i', { class: 'dot' }), c.live, ' live'),
        h('span', { class: 'st st-stale' }, h('i', { class: 'dot' }), c.stale, ' stale'),
        h('span', { class: 'st st-gone' }, h('i', { class: 'dot' }), c.gone, ' gone'))),
    card('card-cpu', 'CPU · average', c.cpuAvg, c.cpuMeter, h('div', { class: 'card-sub' }, 'max ', c.cpuMax)),
    card('card-mem', 'Memory · average', c.memAvg, c.memMeter, h('div', { class: 'card-sub' }, 'max ', c.memMax)),
    card('card-push', 'Live push', c.push, c.pushSub),
    card('card-brokers', 'Brokers', c.brokers, c.brokersSub));

  // Hosts table
  const ths = COLS.map((col) => {
    const btn = h('button', { type: 'button', class: 'sort', 'data-testid': 'sort-' + col.key },
      col.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }));
    btn.addEventListener('click', () => {
      if (sort.key === col.key) sort = { key: col.key, dir: sort.dir === 'asc' ? 'desc' : 'asc' };
      else sort = { key: col.key, dir: col.text ? 'asc' : 'desc' };
      store.set(SORT_KEY, JSON.stringify(sort));
      render(true);
    });
    return h('th', { scope: 'col', class: col.num ? 'num col-' + col.key : 'col-' + col.key, 'data-key': col.key }, btn);
  });
  const tbody = h('tbody', {});
  const empty = h('div', { class: 'empty', hidden: true, 'data-testid': 'hosts-empty' });
  const count = h('span', { class: 'muted count', 'data-testid': 'hosts-count' });
  const filterInput = h('input', {
    type: 'search', class: 'filter', placeholder: 'Filter hosts or labels', 'aria-label': 'Filter hosts',
    'data-testid': 'host-filter',
  });
  filterInput.addEventListener('input', () => { filter = filterInput.value.trim().toLowerCase(); render(true); });
  const table = h('table', { class: 'hosts', 'data-testid': 'hosts-table' },
    h('caption', { class: 'sr-only' }, 'Hosts; column headers sort the table'),
    h('thead', {}, h('tr', {}, ths)), tbody);
  // A page of rows at a time: a thousand live rows would keep the browser busy restyling
  // the table; sorting and filtering still see every host.
  const PAGE_ROWS = 100;
  let shownRows = PAGE_ROWS;
  const moreText = h('span', { class: 'muted' });
  const moreBtn = h('button', { type: 'button', class: 'btn-link', 'data-testid': 'show-more' }, 'Show more');
  const allBtn = h('button', { type: 'button', class: 'btn-link', 'data-testid': 'show-all' }, 'Show all');
  const more = h('div', { class: 'table-more', hidden: true, 'data-testid': 'table-more' }, moreText, moreBtn, allBtn);
  moreBtn.addEventListener('click', () => { shownRows += PAGE_ROWS; everything(); });
  allBtn.addEventListener('click', () => { shownRows = Infinity; everything(); });
  const hostsPanel = h('section', { class: 'panel hosts-panel' },
    h('div', { class: 'panel-head' }, h('h2', {}, 'Hosts'), count, h('div', { class: 'spacer' }), filterInput),
    h('div', { class: 'table-wrap' }, table), more, empty);

  const topCpu = h('ol', { class: 'topk' });
  const topMem = h('ol', { class: 'topk' });
  const side = h('div', { class: 'side' },
    h('section', { class: 'panel', 'data-testid': 'topk-cpu' },
      h('div', { class: 'panel-head' }, h('h2', {}, 'Top CPU'), h('span', { class: 'muted' }, 'latest value')), topCpu),
    h('section', { class: 'panel', 'data-testid': 'topk-mem' },
      h('div', { class: 'panel-head' }, h('h2', {}, 'Top memory'), h('span', { class: 'muted' }, 'latest value')), topMem));

  const updated = h('span', { class: 'muted', 'data-testid': 'updated' });
  main.append(h('section', { class: 'view', 'data-testid': 'view-overview' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), updated),
    cards,
    h('div', { class: 'overview-grid' }, hostsPanel, side)));

  const refs = new Map(); // host_id -> row refs (the rows on the page)
  let order = [];
  let fullOrder = []; // every host, sorted
  let known = new Set();

  function renderCards(now) {
    const s = summaryOf(now);
    setText(c.hosts, String(s.hosts));
    setText(c.live, String(s.live));
    setText(c.stale, String(s.stale));
    setText(c.gone, String(s.gone));
    setText(c.cpuAvg, fmt.pct(s.cpu_avg));
    setText(c.cpuMax, fmt.pct(s.cpu_max));
    c.cpuMeter.set(s.cpu_avg);
    setText(c.memAvg, fmt.pct(s.mem_avg));
    setText(c.memMax, fmt.pct(s.mem_max));
    c.memMeter.set(s.mem_avg);
    const d = dash.data;
    if (d) {
      const on = d.summary.live_push;
      setText(c.push, on ? 'On' : 'Off');
      c.push.className = 'card-value ' + (on ? 'lvl-ok' : 'lvl-warn');
      setText(c.pushSub, on
        ? d.summary.sources.length + (d.summary.sources.length === 1 ? ' broker streams' : ' brokers stream') + ' to viz'
        : 'polling brokers instead');
      const cl = d.cluster || {};
      const total = (cl.brokers || []).length;
      setText(c.brokers, (cl.healthy_brokers ?? 0) + ' / ' + total);
      c.brokers.className = 'card-value ' + (cl.healthy_brokers === total && total ? '' : 'lvl-bad');
      setText(c.brokersSub, 'healthy');
    }
  }

  let scheduled = false;
  let lastOrderAt = 0;
  let lastRenderAt = 0;
  let lastFullAt = 0;
  // Rows whose data changed since the last render; the rest are refreshed once a second (for
  // "x s ago" and states), so a thousand hosts streaming cost only the rows that moved.
  let dirty = new Set();
  let allDirty = true;
  function render(force) {
    const now = serverNow();
    lastRenderAt = Date.now();
    const th = theme();
    renderCards(now);
    // Re-sort at most once a second on live updates, so rows do not jump under the pointer.
    const list = [...rows.values()].filter((r) => {
      if (!filter) return true;
      if (r.host_id.toLowerCase().includes(filter)) return true;
      return Object.entries(r.labels || {}).some(([k, v]) => (k + '=' + v).toLowerCase().includes(filter));
    });
    let all;
    if (force || Date.now() - lastOrderAt > 1000 || list.length !== fullOrder.length || list.some((r) => !known.has(r.host_id))) {
      list.sort(compareRows(sort.key, sort.dir, now));
      all = list.map((r) => r.host_id);
      known = new Set(all);
      lastOrderAt = Date.now();
    } else {
      const visible = new Set(list.map((r) => r.host_id));
      all = fullOrder.filter((id) => visible.has(id));
    }
    fullOrder = all;
    const ids = all.slice(0, shownRows);
    more.hidden = ids.length >= all.length;
    if (!more.hidden) setText(moreText, 'Showing ' + ids.length + ' of ' + all.length + ' hosts · ');
    const onPage = new Set(ids);
    for (const id of [...refs.keys()]) {
      if (!onPage.has(id)) {
        refs.get(id).tr.remove();
        refs.delete(id);
      }
    }
    if (ids.join('\n') !== order.join('\n')) {
      const frag = document.createDocumentFragment();
      for (const id of ids) {
        let ref = refs.get(id);
        if (!ref) { ref = rowRefs(id); refs.set(id, ref); }
        frag.append(ref.tr);
      }
      const shown = new Set(ids);
      for (const [id, ref] of refs) if (!shown.has(id)) ref.tr.remove();
      tbody.append(frag);
      order = ids;
    }
    const full = force || allDirty || Date.now() - lastFullAt >= 1000;
    if (full) lastFullAt = Date.now();
    for (const id of ids) {
      if (full || dirty.has(id)) updateRow(refs.get(id), rows.get(id), now, th);
    }
    dirty = new Set();
    allDirty = false;
    for (const t of ths) {
      const k = t.dataset.key;
      t.setAttribute('aria-sort', k === sort.key ? (sort.dir === 'asc' ? 'ascending' : 'descending') : 'none');
    }
    setText(count, filter ? all.length + ' of ' + rows.size : String(rows.size));
    if (!rows.size) {
      empty.hidden = false;
      empty.replaceChildren(dash.data || dash.error
        ? h('div', {}, h('p', {}, h('b', {}, 'No hosts have reported yet.')),
          h('p', { class: 'muted' }, 'Start an agent pointed at a broker, e.g. ', h('code', {}, 'ringwatch agent --broker http://broker:9093')))
        : h('p', { class: 'muted' }, 'Loading hosts…'));
    } else if (!all.length) {
      empty.hidden = false;
      empty.replaceChildren(h('p', { class: 'muted' }, 'No host matches “' + filter + '”.'));
    } else {
      empty.hidden = true;
    }
    renderTopk('topk-cpu', topCpu, 'cpu.usage');
    renderTopk('topk-mem', topMem, 'mem.used_percent');
    if (dash.data) {
      const how = live.state !== 'open' ? ' · live connection down'
        : dash.data.summary.live_push ? ' · live values streaming' : ' · brokers polled, values may lag';
      setText(updated, 'Snapshot ' + fmt.ago(dash.data.summary.generated_ms, now) + how);
    }
  }
  // At most four renders a second: a table read by people needs no more, and a busy fleet
  // would otherwise keep the browser's main thread from anything else.
  const MIN_RENDER_MS = 250;
  function schedule(now = false) {
    if (scheduled) return;
    scheduled = true;
    const wait = now ? 0 : Math.max(0, MIN_RENDER_MS - (Date.now() - lastRenderAt));
    const go = () => requestAnimationFrame(() => { scheduled = false; if (view.active) render(false); });
    if (wait) setTimeout(go, wait); else go();
  }
  // New data as a whole (a dashboard read, a snapshot, a state change) is drawn at the next
  // frame; a stream of single updates at most every MIN_RENDER_MS.
  const everything = () => { allDirty = true; schedule(true); };

  render(true);
  view.cleanup.push(
    on('dashboard', everything),
    on('live-update', (m) => { dirty.add(m.host_id); schedule(); }),
    on('live-snapshot', everything),
    on('live-state', everything),
    on('theme', () => { for (const ref of refs.values()) ref.sig = ''; everything(); }),
  );
  const tick = setInterval(schedule, 1000);
  view.cleanup.push(() => clearInterval(tick));
}
