// How fast the dashboard opens and how busy it keeps the browser, with many hosts streaming:
// run by `cargo bench --bench ui`. Env: RINGWATCH_URL, RINGWATCH_HOSTS (rows to expect),
// RINGWATCH_WATCH_SECS (how long to watch live updates), RINGWATCH_CHROMIUM, RINGWATCH_PROFILE
// (set: also print, on stderr, the page's requests and where the main thread spent its time),
// RINGWATCH_SHOT (a path: a full-page screenshot after watching).
// Prints one JSON line of measurements; exit 1 with a reason on failure.

import { launch } from './browser.mjs';

const URL_ = process.env.RINGWATCH_URL;
const HOSTS = Number(process.env.RINGWATCH_HOSTS || 0);
const WATCH = Number(process.env.RINGWATCH_WATCH_SECS || 10);
if (!URL_ || !HOSTS) { console.error('FAIL: set RINGWATCH_URL and RINGWATCH_HOSTS'); process.exit(1); }

const browser = await launch();
try {
  const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
  page.setDefaultTimeout(60_000);
  // Long main-thread tasks, from the first script on.
  await page.addInitScript(() => {
    window.__long = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
      .observe({ type: 'longtask', buffered: true });
  });
  const t0 = Date.now();
  await page.goto(URL_, { waitUntil: 'load' });
  const loaded = Date.now() - t0;
  await page.waitForSelector('[data-testid^="host-row-"]');
  const firstRow = Date.now() - t0;
  // The table shows a page of 100 rows, and says how many more there are.
  const pageRows = Math.min(HOSTS, 100);
  await page.waitForFunction((n) => document.querySelectorAll('[data-testid^="host-row-"]').length >= n, pageRows, { polling: 50 });
  if (HOSTS > pageRows) {
    await page.waitForFunction((n) => (document.querySelector('[data-testid="table-more"]')?.textContent || '').includes('of ' + n), HOSTS, { polling: 50 });
  }
  const allRows = Date.now() - t0;
  if (process.env.RINGWATCH_PROFILE) {
    const res = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => [e.name.replace(location.origin, ''), Math.round(e.startTime), Math.round(e.responseEnd), e.transferSize]));
    console.error(JSON.stringify(res));
  }
  // Watch the live page: how much of the main thread long tasks take, and that rows move.
  const before = await page.evaluate(() => {
    window.__long = [];
    const cells = [...document.querySelectorAll('[data-testid^="spark-"]')].slice(0, 50);
    return cells.map((c) => c.getAttribute('data-last-ts'));
  });
  // RINGWATCH_PROFILE=1: also where the main thread spends the watched time (top functions by
  // self time, on stderr), from Chromium's own sampling profiler.
  const cdp = process.env.RINGWATCH_PROFILE ? await page.context().newCDPSession(page) : null;
  if (cdp) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.start');
  }
  const w0 = Date.now();
  await page.waitForTimeout(WATCH * 1000);
  const watched = Date.now() - w0;
  if (cdp) {
    const { profile } = await cdp.send('Profiler.stop');
    const self = new Map();
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const dt = profile.timeDeltas;
    profile.samples.forEach((id, i) => {
      const n = byId.get(id);
      const f = n.callFrame;
      const key = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`;
      self.set(key, (self.get(key) || 0) + (dt[i] || 0) / 1000);
    });
    const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 20);
    for (const [k, ms] of top) console.error(`${ms.toFixed(0).padStart(7)} ms  ${k}`);
  }
  const after = await page.evaluate(() => {
    const cells = [...document.querySelectorAll('[data-testid^="spark-"]')].slice(0, 50);
    return { ts: cells.map((c) => c.getAttribute('data-last-ts')), long: window.__long, heap: performance.memory ? performance.memory.usedJSHeapSize : 0 };
  });
  if (process.env.RINGWATCH_SHOT) await page.screenshot({ path: process.env.RINGWATCH_SHOT, fullPage: true });
  // "Show all": every row, and how long that takes.
  let showAll = 0;
  if (HOSTS > pageRows) {
    const s0 = Date.now();
    await page.click('[data-testid="show-all"]');
    await page.waitForFunction((n) => document.querySelectorAll('[data-testid^="host-row-"]').length >= n, HOSTS, { polling: 50 });
    showAll = Date.now() - s0;
  }
  const moved = after.ts.filter((t, i) => t !== before[i]).length;
  const longMs = after.long.reduce((a, b) => a + b, 0);
  console.log(JSON.stringify({
    hosts: HOSTS, load_ms: loaded, first_row_ms: firstRow, first_page_ms: allRows,
    show_all_ms: showAll, watch_ms: watched, long_task_ms: Math.round(longMs), long_tasks: after.long.length,
    max_long_task_ms: Math.round(Math.max(0, ...after.long)), rows_moved_of_50: moved,
    js_heap_mb: Math.round(after.heap / 1048576),
  }));
  await browser.close();
} catch (e) {
  await browser.close().catch(() => {});
  console.error('FAIL: ' + e.message.split('\n')[0]);
  process.exit(1);
}
