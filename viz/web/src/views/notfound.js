/* Any other route: page not found. */

import { h } from '../dom.js';
import { main, title } from '../shell.js';

export function notFoundView() {
  title('Not found');
  main.append(h('section', { class: 'view' },
    h('div', { class: 'empty big', 'data-testid': 'not-found' },
      h('h1', {}, 'Page not found'),
      h('p', {}, h('a', { href: '#/' }, 'Back to the overview')))));
}
