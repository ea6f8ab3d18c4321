/* The overview's CPU sparklines, drawn on a canvas in the theme's colours. */

import { cssVar, withAlpha } from './theme.js';

export function drawSpark(canvas, ts, vals, state) {
  const dpr = window.devicePixelRatio || 1;
  const w = 88;
  const ht = 24;
  if (canvas.width !== Math.round(w * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(ht * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, ht);
  const n = ts.length;
  if (!n) return;
  let max = 10;
  for (const v of vals) if (v != null && v > max) max = v;
  max = Math.min(100, max * 1.1);
  const t0 = ts[0];
  const span = Math.max(ts[n - 1] - t0, 1);
  const x = (t) => (n === 1 ? w - 2 : 1 + ((t - t0) / span) * (w - 3));
  const y = (v) => ht - 1.5 - (Math.min(v, max) / max) * (ht - 4);
  const color = state === 'live' ? cssVar('--accent') : cssVar('--muted');
  // Break the line where a value is missing or the time between samples is long (an outage).
  const gap = n > 2 ? Math.max(3 * ((ts[n - 1] - t0) / (n - 1)), 1) : Infinity;
  const segments = [];
  let seg = [];
  for (let i = 0; i < n; i++) {
    if (vals[i] == null || (seg.length && ts[i] - ts[i - 1] > gap * 3)) {
      if (seg.length) segments.push(seg);
      seg = [];
    }
    if (vals[i] != null) seg.push([x(ts[i]), y(vals[i])]);
  }
  if (seg.length) segments.push(seg);
  const grad = ctx.createLinearGradient(0, 0, 0, ht);
  grad.addColorStop(0, withAlpha(color, 0.35));
  grad.addColorStop(1, withAlpha(color, 0.02));
  for (const s of segments) {
    if (s.length === 1) {
      ctx.fillStyle = color;
      ctx.beginPath();
      ctx.arc(s[0][0], s[0][1], 1.5, 0, Math.PI * 2);
      ctx.fill();
      continue;
    }
    ctx.beginPath();
    ctx.moveTo(s[0][0], ht);
    for (const [px, py] of s) ctx.lineTo(px, py);
    ctx.lineTo(s[s.length - 1][0], ht);
    ctx.closePath();
    ctx.fillStyle = grad;
    ctx.fill();
    ctx.beginPath();
    s.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.25;
    ctx.lineJoin = 'round';
    ctx.stroke();
  }
}
