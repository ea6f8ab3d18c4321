// The dashboard during a broker outage and after it, in a real (Debian) Chromium: with
// RINGWATCH_EXPECT=outage the host's row must turn Stale with its warning marker and the
// "data may be delayed" banner must show; with RINGWATCH_EXPECT=recovered the row must be Live
// again with neither. The Rust test (tests/viz_ui.rs) kills and restarts the broker between
// the two runs.
//
// Env: RINGWATCH_URL, RINGWATCH_TOKEN (empty with --no-auth), RINGWATCH_HOST,
// RINGWATCH_ARTIFACTS, RINGWATCH_EXPECT (outage | recovered), RINGWATCH_CHROMIUM.
// Exit 0 on success; otherwise a reason, a failure screenshot, exit 1.

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch } from './browser.mjs';

const URL_ = process.env.RINGWATCH_URL;
const TOKEN = process.env.RINGWATCH_TOKEN || '';
const HOST = process.env.RINGWATCH_HOST;
const EXPECT = process.env.RINGWATCH_EXPECT;
const ART = resolve(process.env.RINGWATCH_ARTIFACTS || 'ui-artifacts');
const WAIT = 40_000;

const tid = (id) => `[data-testid="${id}"]`;
function fail(msg) {
  console.error('FAIL: ' + msg);
  process.exit(1);
}
if (!URL_ || !HOST) fail('set RINGWATCH_URL and RINGWATCH_HOST');
if (EXPECT !== 'outage' && EXPECT !== 'recovered') fail('set RINGWATCH_EXPECT to outage or recovered');
mkdirSync(ART, { recursive: true });

let page;
const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  context.setDefaultTimeout(WAIT);
  page = await context.newPage();
  await page.goto(URL_);
  if (TOKEN) {
    await page.waitForSelector(tid('login-token'));
    await page.fill(tid('login-token'), TOKEN);
    await page.click(tid('login-submit'));
  }
  await page.waitForSelector(tid('host-row-' + HOST));
  const state = tid('state-' + HOST);
  const marker = tid('stale-marker-' + HOST);
  if (EXPECT === 'outage') {
    await page.waitForFunction((s) => /Stale/.test(document.querySelector(s)?.textContent || ''), state, { polling: 200 });
    await page.waitForSelector(marker, { state: 'visible' });
    await page.waitForSelector(tid('banner-delayed'), { state: 'visible' });
    const why = await page.$eval(tid('banner-delayed'), (el) => el.textContent);
    console.log(`outage shown: ${HOST} is Stale with its marker; banner: ${why.trim().slice(0, 160)}`);
  } else {
    await page.waitForFunction((s) => /Live/.test(document.querySelector(s)?.textContent || ''), state, { polling: 200 });
    await page.waitForSelector(marker, { state: 'hidden' });
    await page.waitForFunction(() => !document.querySelector('[data-testid="banner-delayed"]'), null, { polling: 200 });
    console.log(`recovered: ${HOST} is Live, no marker, no banner`);
  }
  await page.screenshot({ path: join(ART, EXPECT + '.png'), fullPage: true });
  await browser.close();
} catch (e) {
  if (page) await page.screenshot({ path: join(ART, `failure-${EXPECT}.png`), fullPage: true }).catch(() => {});
  await browser.close().catch(() => {});
  fail(`${EXPECT}: ${e.message.split('\n')[0]}`);
}
