/* A tiny event bus between the data layer and the views.
 *
 * Events: 'dashboard' (a read of /api/dashboard ended), 'live-state' (the WebSocket's state),
 * 'live-update', 'live-snapshot', 'live-downsampled', 'live-reconnected' (the live feed),
 * 'theme' (the theme changed), 'user' (who is signed in changed), 'signed-out' (the token was
 * dropped; true when the user asked), 'route' (a view was drawn). */

const bus = new EventTarget();
export const emit = (name, detail) => bus.dispatchEvent(new CustomEvent(name, { detail }));
export function on(name, fn) {
  const f = (e) => fn(e.detail);
  bus.addEventListener(name, f);
  return () => bus.removeEventListener(name, f);
}
