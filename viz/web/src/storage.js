/* Settings kept in this browser (localStorage); without storage they last for this page only. */

export const store = {
  get(k) { try { return window.localStorage.getItem(k); } catch { return null; } },
  set(k, v) {
    try {
      if (v == null) window.localStorage.removeItem(k);
      else window.localStorage.setItem(k, v);
    } catch { /* storage disabled: settings last for this page only */ }
  },
};
