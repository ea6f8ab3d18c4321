/* A uPlot chart of the host page (uPlot is the global its own <script> tag loads): aligned
 * data, live appends (raw or into the step's buckets), zoom shared by a group, legend, theme. */
/* global uPlot */

import { h, setAttr, setText } from './dom.js';
import { fmt } from './format.js';
import { cssVar, theme, withAlpha } from './theme.js';

/** One uPlot chart: its own aligned data, drawn into a panel. */
export class Chart {
  constructor(def, group) {
    this.def = def;
    this.group = group;
    this.xs = []; // seconds
    this.ys = def.series.map(() => []);
    this.counts = def.series.map(() => 0); // samples in the newest bucket (coarse ranges)
    this.points = 0;
    this.lastTs = 0;
    this.u = null;
    this.el = h('div', {
      class: 'chart', 'data-testid': 'chart-' + def.id, 'data-points': '0', 'data-last-ts': '0',
      role: 'img', 'aria-label': def.title + ' chart',
    });
    this.msg = h('div', { class: 'chart-msg' }, 'Loading…');
    this.legend = h('div', { class: 'legend' });
    this.panel = h('section', { class: 'panel chart-panel', 'data-testid': 'panel-' + def.id },
      h('div', { class: 'panel-head' }, h('h2', {}, def.title), this.legend),
      h('div', { class: 'chart-box' }, this.el, this.msg));
    this.legendItems = def.series.map((s, i) => {
      const val = h('b', {}, '—');
      const btn = h('button', { type: 'button', class: 'lg', 'aria-pressed': 'true', title: s.name },
        h('i', { class: 'sw sw-' + (i + 1) }), h('span', {}, s.label), val);
      btn.addEventListener('click', () => {
        if (!this.u) return;
        const show = !this.u.series[i + 1].show;
        this.u.setSeries(i + 1, { show });
        btn.setAttribute('aria-pressed', String(show));
      });
      return { btn, val };
    });
    this.legend.append(...this.legendItems.map((x) => x.btn));
    this.ro = new ResizeObserver(() => this.resize());
    this.ro.observe(this.el);
  }

  /** Replaces the data with a query's result. */
  load(xs, ys, counts) {
    this.xs = xs;
    this.ys = ys;
    this.counts = counts || this.def.series.map(() => 0);
    this.recount();
    this.redraw();
  }

  recount() {
    let n = 0;
    for (let i = 0; i < this.xs.length; i++) {
      if (this.ys.some((col) => col[i] != null)) n++;
    }
    this.points = n;
  }

  /** Appends a live update; false if the chart has nothing from it or already has it. */
  append(tsMs, metrics) {
    const vals = this.def.series.map((s) => (metrics[s.name] ? metrics[s.name].value : null));
    if (vals.every((v) => v == null)) return false;
    if (tsMs <= this.lastTs) return false;
    const g = this.group;
    const n = this.xs.length;
    if (g.step) {
      // Buckets start at multiples of the step, as the brokers' rollups do.
      const b = (Math.floor(tsMs / g.step) * g.step) / 1000;
      if (n && this.xs[n - 1] === b) {
        vals.forEach((v, i) => {
          if (v == null) return;
          const c = this.counts[i] || 0;
          const old = this.ys[i][n - 1];
          this.ys[i][n - 1] = old == null ? v : (old * c + v) / (c + 1);
          this.counts[i] = c + 1;
        });
      } else {
        this.pushPoint(b, vals, g.step / 1000);
        this.counts = vals.map((v) => (v == null ? 0 : 1));
      }
    } else {
      this.pushPoint(tsMs / 1000, vals, g.gapSecs);
    }
    this.lastTs = tsMs;
    return true;
  }

  pushPoint(x, vals, gapSecs) {
    const n = this.xs.length;
    if (n && x - this.xs[n - 1] > gapSecs * 3) {
      // An outage: break the line rather than drawing across it.
      this.xs.push(this.xs[n - 1] + gapSecs);
      this.ys.forEach((col) => col.push(null));
    }
    this.xs.push(x);
    vals.forEach((v, i) => this.ys[i].push(v));
    this.points++;
  }

  /** Drops what has slid out of the window. */
  trim(startSec) {
    let k = 0;
    while (k < this.xs.length && this.xs[k] < startSec) k++;
    if (!k) return;
    this.xs.splice(0, k);
    this.ys.forEach((col) => col.splice(0, k));
    this.recount();
  }

  opts(width) {
    const pal = palette();
    const def = this.def;
    const font = '11px ' + cssVar('--font');
    const axis = {
      stroke: pal.muted, font, labelFont: font,
      grid: { stroke: pal.grid, width: 1 },
      ticks: { stroke: pal.grid, width: 1, size: 4 },
    };
    return {
      width, height: 210,
      padding: [8, 12, 0, 4],
      legend: { show: false },
      cursor: {
        sync: { key: this.group.syncKey },
        drag: { x: true, y: false, setScale: false },
        points: { size: 7, width: 2 },
        bind: { dblclick: () => () => { this.group.resetZoom(); return null; } },
      },
      select: { show: true },
      scales: { x: { time: true }, y: { range: def.range } },
      series: [
        { value: (u, v) => (v == null ? '' : fmt.time(v * 1000)) },
        ...def.series.map((s, i) => ({
          label: s.label,
          stroke: pal.series[i % pal.series.length],
          width: 1.6,
          fill: def.fill ? withAlpha(pal.series[i % pal.series.length], i === 0 ? 0.14 : 0.06) : undefined,
          points: { show: false },
          spanGaps: false,
          value: (u, v) => def.fmt(v),
        })),
      ],
      axes: [
        Object.assign({}, axis, { space: 70, values: timeTicks }),
        Object.assign({}, axis, {
          size: 70, incrs: def.incrs,
          values: (u, vals) => vals.map((v) => (v == null ? '' : def.axis(v))),
        }),
      ],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 3) {
            const min = u.posToVal(u.select.left, 'x');
            const max = u.posToVal(u.select.left + u.select.width, 'x');
            this.group.zoomTo(min, max);
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
        setCursor: [(u) => this.renderLegend(u.cursor.idx)],
        setSeries: [() => this.renderLegend(this.u ? this.u.cursor.idx : null)],
      },
    };
  }

  data() { return [this.xs, ...this.ys]; }

  build() {
    if (this.u) this.u.destroy();
    const width = Math.max(200, this.el.clientWidth || 400);
    this.el.replaceChildren();
    this.u = new uPlot(this.opts(width), this.data(), this.el);
    this.el.dataset.theme = theme();
    // Keep the series the user hid hidden across rebuilds.
    this.legendItems.forEach((it, i) => {
      if (it.btn.getAttribute('aria-pressed') === 'false') this.u.setSeries(i + 1, { show: false });
    });
    this.applyScale();
  }

  applyScale() {
    const g = this.group;
    const [min, max] = g.zoom || [g.start / 1000, g.end / 1000];
    this.u.setScale('x', { min, max });
  }

  redraw() {
    if (!this.u) this.build();
    else this.u.batch(() => { this.u.setData(this.data()); this.applyScale(); });
    setAttr(this.el, 'data-points', this.points);
    setAttr(this.el, 'data-last-ts', this.lastTs);
    setAttr(this.el, 'aria-busy', !!this.group.loading);
    if (this.group.loaded) setAttr(this.el, 'data-range', this.group.loaded);
    this.renderLegend(this.u.cursor.idx);
    const g = this.group;
    if (g.error) this.showMsg(g.error, true);
    else if (g.loading && !this.points) this.showMsg('Loading…');
    else if (!this.points) this.showMsg('No data in this range');
    else this.showMsg('');
  }

  showMsg(text, isError) {
    this.msg.hidden = !text;
    this.msg.className = 'chart-msg' + (isError ? ' error' : '');
    setText(this.msg, text || '');
  }

  renderLegend(idx) {
    this.def.series.forEach((s, i) => {
      const col = this.ys[i];
      let v = null;
      if (idx != null && idx >= 0) v = col[idx];
      else for (let k = col.length - 1; k >= 0; k--) if (col[k] != null) { v = col[k]; break; }
      setText(this.legendItems[i].val, v == null ? '—' : this.def.fmt(v));
    });
  }

  resize() {
    if (!this.u) return;
    const w = Math.max(200, this.el.clientWidth);
    if (Math.abs(w - this.u.width) > 1) this.u.setSize({ width: w, height: 210 });
  }

  destroy() {
    this.ro.disconnect();
    if (this.u) this.u.destroy();
    this.u = null;
  }
}

// Axis steps for bytes/s: 1, 2, 5 × powers of 1024, so ticks read "5 MiB/s", not "4.77 MiB/s".
export const BYTE_INCRS = [];
for (let p = 0; p < 6; p++) for (const m of [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) BYTE_INCRS.push(m * 1024 ** p);

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad2 = (n) => String(n).padStart(2, '0');
/** x-axis labels: 24-hour local time; the date under the first tick and at midnight. */
function timeTicks(u, splits, axisIdx, space, incr) {
  return splits.map((s, i) => {
    if (s == null) return '';
    const d = new Date(s * 1000);
    const day = MONTHS[d.getMonth()] + ' ' + d.getDate();
    if (incr >= 86400) return day;
    let t = pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    if (incr < 60) t += ':' + pad2(d.getSeconds());
    const prev = i > 0 && splits[i - 1] != null ? new Date(splits[i - 1] * 1000) : null;
    return !prev || prev.getDate() !== d.getDate() ? t + '\n' + day : t;
  });
}

function palette() {
  return {
    muted: cssVar('--muted'),
    grid: cssVar('--grid'),
    series: [1, 2, 3, 4, 5, 6].map((i) => cssVar('--c' + i)),
  };
}
