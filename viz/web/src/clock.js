/* Server clock: "5 s ago" is measured against viz's clock, not the browser's. */

let clockOffset = 0;
export const serverNow = () => Date.now() + clockOffset;

/** Sets the clock from a time viz stamped (ms since the epoch) on what it just sent. */
export function setServerTime(ms) {
  clockOffset = ms - Date.now();
}
