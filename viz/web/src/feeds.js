/* Starts the two data feeds (the dashboard read every few seconds, the live WebSocket) when a
 * signed-in view shows, and stops them and forgets what they read on sign-out. */

import { startLive, stopLive } from './live.js';
import { clearModel } from './model.js';
import { startPolling, stopPolling } from './poll.js';

export function startData() {
  startPolling();
  startLive();
}

export function stopData() {
  stopPolling();
  clearModel();
  stopLive();
}
