// Debian's Chromium, headless, as every browser script here launches it: no sandbox (root in
// CI), no GPU, and none of the background networking this machine's closed network refuses.
// RINGWATCH_CHROMIUM overrides the path.

import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.RINGWATCH_CHROMIUM || '/usr/bin/chromium';

/** The browser; exits with a reason when Chromium is not installed. */
export async function launch() {
  if (!existsSync(CHROMIUM)) {
    console.error(`FAIL: no Chromium at ${CHROMIUM}: apt-get install -y chromium`);
    process.exit(1);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}
