// End-to-end check of the Ringwatch web UI in a real (Debian) Chromium, driven by playwright-core.
//
// Env: RINGWATCH_URL (viz, e.g. http://127.0.0.1:8080/), RINGWATCH_TOKEN (a viewer token; empty
// when viz runs with --no-auth), RINGWATCH_HOST (a host id an agent reports as, at a 1 s
// interval), RINGWATCH_ARTIFACTS (folder for screenshots), RINGWATCH_CHROMIUM (default
// /usr/bin/chromium).
//
// It signs in, sees the host's row and its sparkline move, opens the host, sees the charts
// drawn and one grow live, switches the range and the theme (which must persist across a
// reload), visits the cluster page, and fails on any console error or page error. Every wait is
// bounded. Exit 0 on success; otherwise a reason, a failure screenshot, exit 1.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch } from './browser.mjs';

const URL_ = process.env.RINGWATCH_URL;
const TOKEN = process.env.RINGWATCH_TOKEN || '';
const HOST = process.env.RINGWATCH_HOST;
const ART = resolve(process.env.RINGWATCH_ARTIFACTS || 'ui-artifacts');
const WAIT = 20_000;
const OVERALL = 180_000;

function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}
if (!URL_) fail('set RINGWATCH_URL to the viz address, e.g. http://127.0.0.1:8080/');
if (!HOST) fail('set RINGWATCH_HOST to a host id an agent reports as');
mkdirSync(ART, { recursive: true });

const started = Date.now();
const consoleErrors = [];
const pageErrors = [];
const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s]`, ...a);
const tid = (id) => `[data-testid="${id}"]`;

let browser;
let page;
let current = 'start';

const watchdog = setTimeout(async () => {
  console.error(`FAIL: the whole run took longer than ${OVERALL / 1000} s (at step "${current}")`);
  await shot('failure').catch(() => {});
  process.exit(1);
}, OVERALL);

async function shot(name) {
  if (!page) return null;
  const path = join(ART, name + '.png');
  await page.screenshot({ path, fullPage: true, timeout: 10_000 });
  log(`screenshot ${path}`);
  return path;
}

async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  log(`ok  ${name} (${Date.now() - t0} ms)`);
}

/** An attribute of the first element matching sel, as a number (NaN when missing). */
async function numAttr(sel, attr) {
  return page.$eval(sel, (el, a) => Number(el.getAttribute(a)), attr).catch(() => NaN);
}

async function waitAttrAbove(sel, attr, min, what) {
  try {
    await page.waitForFunction(
      ([s, a, m]) => {
        const el = document.querySelector(s);
        return !!el && Number(el.getAttribute(a)) > m;
      },
      [sel, attr, min],
      { timeout: WAIT, polling: 100 },
    );
  } catch {
    const now = await numAttr(sel, attr);
    throw new Error(`${what}: ${sel} ${attr} stayed at ${now} (wanted > ${min}) for ${WAIT / 1000} s`);
  }
}

async function visible(sel, what) {
  try {
    await page.locator(sel).first().waitFor({ state: 'visible', timeout: WAIT });
  } catch {
    throw new Error(`${what}: ${sel} not visible within ${WAIT / 1000} s (page at ${page.url()})`);
  }
}

async function main() {
  browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' });
  context.setDefaultTimeout(WAIT);
  page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text() + (m.location().url ? ` (${m.location().url})` : ''));
  });
  page.on('pageerror', (e) => pageErrors.push(String(e && e.stack ? e.stack : e)));

  await step('open the dashboard', async () => {
    await page.goto(URL_, { waitUntil: 'load', timeout: WAIT });
  });

  if (TOKEN) {
    await step('the login page is shown', async () => {
      await visible(tid('login-page'), 'login page');
      if (!/#\/login/.test(page.url())) throw new Error(`expected the #/login route, at ${page.url()}`);
    });
    await step('sign in with the token', async () => {
      await page.fill(tid('login-token'), TOKEN);
      await page.click(tid('login-submit'));
      await visible(tid('view-overview'), 'overview after sign-in');
      const who = await page.textContent(tid('whoami'));
      if (!/viewer/i.test(who || '')) throw new Error(`the header should show the viewer role, shows ${JSON.stringify(who)}`);
      const stored = await page.evaluate(() => localStorage.getItem('ringwatch.token'));
      if (stored !== TOKEN) throw new Error('the token was not kept in localStorage');
    });
  } else {
    await step('the overview is shown (auth off)', async () => {
      await visible(tid('view-overview'), 'overview');
    });
  }

  const row = tid(`host-row-${HOST}`);
  const spark = tid(`spark-${HOST}`);
  await step(`the row of ${HOST} is shown, live`, async () => {
    await visible(row, 'host row');
    await page.waitForFunction((s) => document.querySelector(s)?.dataset.state === 'live', row, { timeout: WAIT });
    const hosts = Number(await page.textContent(tid('count-hosts')));
    if (!(hosts >= 1)) throw new Error(`the hosts card shows ${hosts}`);
  });

  await step('the sparkline updates live', async () => {
    await waitAttrAbove(spark, 'data-last-ts', 0, 'sparkline has data');
    const t0 = await numAttr(spark, 'data-last-ts');
    await waitAttrAbove(spark, 'data-last-ts', t0, 'sparkline grows');
    await visible(`${tid('live-status')}[data-state="open"]`, 'live WebSocket');
  });

  await step('sort by clicking and by keyboard', async () => {
    const th = page.locator('th[data-key="cpu"]');
    await page.click(tid('sort-cpu'));
    const a = await th.getAttribute('aria-sort');
    await page.focus(tid('sort-cpu'));
    await page.keyboard.press('Enter');
    const b = await th.getAttribute('aria-sort');
    if (!['ascending', 'descending'].includes(a) || a === b) throw new Error(`aria-sort went ${a} → ${b}`);
    await page.click(tid('sort-host_id'));
    const c = await page.locator('th[data-key="host_id"]').getAttribute('aria-sort');
    if (c !== 'ascending') throw new Error(`host column sort is ${c}`);
  });

  await step('Top-K panels list the host', async () => {
    await visible(`${tid('topk-cpu')} ${tid(`topk-cpu-${HOST}`)}`, 'Top-K CPU entry');
    await visible(`${tid('topk-mem')} ${tid(`topk-mem-${HOST}`)}`, 'Top-K memory entry');
  });

  await step('screenshot the overview', async () => {
    await shot('overview');
  });

  const charts = ['cpu', 'mem', 'disk', 'net'];
  await step('open the host by clicking its row', async () => {
    await page.locator(`${row} td.col-state`).click();
    await visible(tid('view-host'), 'host detail');
    const hash = await page.evaluate(() => location.hash);
    if (hash !== `#/host/${encodeURIComponent(HOST)}`) throw new Error(`at ${hash}`);
  });

  await step('the four charts have points', async () => {
    for (const c of charts) {
      await visible(tid(`chart-${c}`), `chart ${c}`);
      await waitAttrAbove(tid(`chart-${c}`), 'data-points', 0, `chart ${c} points`);
    }
    const meta = await page.textContent(tid('host-meta'));
    if (!/Agent\s*v\d/.test(meta) || !/Interval\s*\d+ m?s/.test(meta)) throw new Error(`host meta lacks version/interval: ${meta}`);
  });

  await step('a chart updates live', async () => {
    const sel = tid('chart-cpu');
    const t0 = await numAttr(sel, 'data-last-ts');
    const p0 = await numAttr(sel, 'data-points');
    await waitAttrAbove(sel, 'data-last-ts', t0, 'CPU chart newest timestamp');
    const p1 = await numAttr(sel, 'data-points');
    log(`    chart-cpu: ${p0} → ${p1} points, last ts ${t0} → ${await numAttr(sel, 'data-last-ts')}`);
  });

  await step('switch the range to 1 h, 6 h, 7 d (the brokers\' rollups) and back to 15 min', async () => {
    for (const r of ['1h', '6h', '7d', '15m']) {
      await page.click(tid(`range-${r}`));
      await visible(`${tid(`range-${r}`)}[aria-pressed="true"]`, `range button ${r}`);
      await visible(`${tid('chart-cpu')}[data-range="${r}"][aria-busy="false"]`, `CPU chart re-queried for ${r}`);
      await waitAttrAbove(tid('chart-net'), 'data-points', 0, `network chart over ${r}`);
    }
  });

  await step('screenshot the host detail', async () => {
    await page.waitForTimeout(300);
    await shot('host');
  });

  await step('switch the theme; charts recolor; the choice persists', async () => {
    const before = await page.evaluate(() => document.documentElement.dataset.theme);
    await page.click(tid('theme-toggle'));
    const want = before === 'dark' ? 'light' : 'dark';
    await page.waitForFunction((w) => document.documentElement.dataset.theme === w, want, { timeout: WAIT });
    await page.waitForFunction(
      ([w, ids]) => ids.every((c) => document.querySelector(`[data-testid="chart-${c}"]`)?.dataset.theme === w),
      [want, charts], { timeout: WAIT });
    await waitAttrAbove(tid('chart-cpu'), 'data-points', 0, 'CPU chart after the theme switch');
    await page.waitForTimeout(300);
    await shot('host-' + want);
    await page.reload({ waitUntil: 'load' });
    await visible(tid('view-host'), 'host detail after reload (still signed in)');
    const after = await page.evaluate(() => document.documentElement.dataset.theme);
    if (after !== want) throw new Error(`theme after reload is ${after}, wanted ${want}`);
    await waitAttrAbove(tid('chart-mem'), 'data-points', 0, 'memory chart after reload');
  });

  await step('overview and cluster in the other theme', async () => {
    await page.click(tid('nav-overview'));
    await visible(row, 'host row');
    await waitAttrAbove(spark, 'data-last-ts', 0, 'sparkline after navigation');
    await page.waitForTimeout(300);
    await shot('overview-' + (await page.evaluate(() => document.documentElement.dataset.theme)));
    await page.click(tid('nav-cluster'));
    await visible(tid('broker-row-0'), 'a broker on the cluster page');
    const leader = await page.textContent(tid('cluster-leader'));
    if (!/—|Raft|leader/i.test(leader || '')) throw new Error(`leader card says ${leader}`);
    await shot('cluster');
    await page.click(tid('nav-overview'));
    await visible(row, 'host row');
  });

  if (TOKEN) {
    await step('sign out returns to the login page', async () => {
      await page.click(tid('sign-out'));
      await visible(tid('login-page'), 'login page after sign-out');
      const stored = await page.evaluate(() => localStorage.getItem('ringwatch.token'));
      if (stored) throw new Error('the token is still stored after sign-out');
    });
  }

  await step('no console errors and no page errors', async () => {
    await page.waitForTimeout(500);
    if (consoleErrors.length || pageErrors.length) {
      throw new Error('errors in the page:\n  ' + [...pageErrors, ...consoleErrors].join('\n  '));
    }
  });
}

try {
  await main();
  clearTimeout(watchdog);
  log(`PASS in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${ART}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  clearTimeout(watchdog);
  console.error(`FAIL at step "${current}": ${e && e.message ? e.message : e}`);
  if (consoleErrors.length) console.error('console errors:\n  ' + consoleErrors.join('\n  '));
  if (pageErrors.length) console.error('page errors:\n  ' + pageErrors.join('\n  '));
  try { await shot('failure'); } catch (se) { console.error('(no failure screenshot: ' + se.message + ')'); }
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
