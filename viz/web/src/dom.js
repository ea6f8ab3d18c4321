/* DOM helpers: the element builder, icons and the logo, and writes that skip unchanged values. */

/** Element builder: h('div', {class: 'x', onclick: f, 'data-testid': 't'}, ...children). */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'style') el.style.cssText = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of kids.flat(4)) {
    if (c == null || c === false) continue;
    el.append(c.nodeType ? c : String(c));
  }
  return el;
}

const SVGNS = 'http://www.w3.org/2000/svg';
const ICONS = {
  sun: ['M12 3v2', 'M12 19v2', 'M5.6 5.6 7 7', 'M17 17l1.4 1.4', 'M3 12h2', 'M19 12h2', 'M5.6 18.4 7 17', 'M17 7l1.4-1.4', 'M12 8a4 4 0 1 0 0 8a4 4 0 0 0 0-8z'],
  moon: ['M20 14.5A8 8 0 1 1 9.5 4a6.5 6.5 0 0 0 10.5 10.5z'],
  logout: ['M9 20H5a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1h4', 'M16 16l4-4-4-4', 'M20 12H9'],
  warn: ['M12 4 2.5 20h19z', 'M12 10v4', 'M12 17h.01'],
  back: ['M15 18l-6-6 6-6'],
  retry: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 5v6h-6'],
  user: ['M12 12a4 4 0 1 0 0-8a4 4 0 0 0 0 8z', 'M4 20a8 8 0 0 1 16 0'],
  server: ['M4 5h16v5H4z', 'M4 14h16v5H4z', 'M8 7.5h.01', 'M8 16.5h.01'],
  down: ['M12 5v14', 'M6 13l6 6 6-6'],
  up: ['M12 19V5', 'M6 11l6-6 6 6'],
};
export function icon(name, cls) {
  const s = document.createElementNS(SVGNS, 'svg');
  s.setAttribute('viewBox', '0 0 24 24');
  s.setAttribute('aria-hidden', 'true');
  s.setAttribute('class', 'icon' + (cls ? ' ' + cls : ''));
  for (const d of ICONS[name]) {
    const p = document.createElementNS(SVGNS, 'path');
    p.setAttribute('d', d);
    s.append(p);
  }
  return s;
}
export function logo() {
  const s = document.createElementNS(SVGNS, 'svg');
  s.setAttribute('viewBox', '0 0 32 32');
  s.setAttribute('aria-hidden', 'true');
  s.setAttribute('class', 'logo');
  const c = document.createElementNS(SVGNS, 'circle');
  c.setAttribute('cx', '16'); c.setAttribute('cy', '16'); c.setAttribute('r', '12');
  c.setAttribute('class', 'logo-ring');
  const p = document.createElementNS(SVGNS, 'path');
  p.setAttribute('d', 'M7 17h5l2-5 4 9 2-4h5');
  p.setAttribute('class', 'logo-pulse');
  s.append(c, p);
  return s;
}

export function setText(el, s) {
  if (el && el.textContent !== s) el.textContent = s;
}
export function setAttr(el, k, v) {
  v = String(v);
  if (el && el.getAttribute(k) !== v) el.setAttribute(k, v);
}

export function $(sel, root = document) { return root.querySelector(sel); }
