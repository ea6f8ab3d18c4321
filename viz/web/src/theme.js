/* The theme (light or dark: the user's choice, else the system's) and its colours for canvases. */

import { emit } from './bus.js';
import { $, icon } from './dom.js';
import { store } from './storage.js';

export const THEME_KEY = 'ringwatch.theme';
const darkQuery = window.matchMedia ? window.matchMedia('(prefers-color-scheme: dark)') : null;
export function theme() {
  const s = store.get(THEME_KEY);
  if (s === 'dark' || s === 'light') return s;
  return darkQuery && darkQuery.matches ? 'dark' : 'light';
}
// Theme colours, read once per theme: reading computed style after the table changed would
// force the browser to recompute every row's style, once per sparkline.
const cssVars = new Map();
export function applyTheme() {
  const t = theme();
  if (document.documentElement.dataset.theme !== t) {
    document.documentElement.dataset.theme = t;
    cssVars.clear();
    emit('theme', t);
  }
  const btn = $('[data-testid="theme-toggle"]');
  if (btn) {
    btn.replaceChildren(icon(t === 'dark' ? 'sun' : 'moon'));
    const label = t === 'dark' ? 'Switch to the light theme' : 'Switch to the dark theme';
    btn.setAttribute('aria-label', label);
    btn.title = label;
  }
}
export function toggleTheme() {
  store.set(THEME_KEY, theme() === 'dark' ? 'light' : 'dark');
  applyTheme();
}
if (darkQuery) {
  const f = () => { if (!store.get(THEME_KEY)) applyTheme(); };
  if (darkQuery.addEventListener) darkQuery.addEventListener('change', f);
  else if (darkQuery.addListener) darkQuery.addListener(f);
}
export function cssVar(name) {
  let v = cssVars.get(name);
  if (v === undefined) {
    v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    cssVars.set(name, v);
  }
  return v;
}

/** '#rrggbb' or 'rgb(…)' with an alpha. */
export function withAlpha(color, a) {
  const c = color.trim();
  let m = c.match(/^#([0-9a-f]{6})$/i);
  if (m) {
    const n = parseInt(m[1], 16);
    return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
  }
  m = c.match(/^rgba?\(([^)]+)\)$/);
  if (m) {
    const p = m[1].split(',').slice(0, 3).join(',');
    return `rgba(${p}, ${a})`;
  }
  return c;
}
