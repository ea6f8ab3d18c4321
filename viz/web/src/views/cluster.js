/* #/cluster: the brokers as viz sees them (health, who streams live) and as the broker cluster
 * reports them (Raft leader, term, ring epoch, each broker's ring state, Raft role, the hosts
 * it owns and its hand-off while draining). */

import { on } from '../bus.js';
import { h, icon } from '../dom.js';
import { subscribe } from '../live.js';
import { OVERVIEW_METRICS, dash } from '../model.js';
import { main, title } from '../shell.js';

/* A broker's Raft role and, when it is not simply active, its ring state (down, draining …). */
function roleCell(b, isLeader, leader) {
  const role = b.raft_role ? b.raft_role[0].toUpperCase() + b.raft_role.slice(1) : (isLeader ? 'Leader' : leader ? 'Follower' : '—');
  const state = b.ring_state && b.ring_state !== 'active' ? h('span', { class: 'pill pill-stale', 'data-testid': 'ring-state' }, h('i', { class: 'dot' }), b.ring_state) : null;
  const text = role === '—' ? h('span', { class: 'muted' }, role) : role;
  return state ? h('span', {}, text, ' ', state) : text;
}

/* A draining broker's hand-off: what is left to send to the new owners, or done. */
function handoffCell(b) {
  const ho = b.handoff;
  if (!ho) return h('span', { class: 'muted' }, '—');
  if (ho.done) return h('span', { class: 'pill pill-live', 'data-testid': 'handoff' }, h('i', { class: 'dot' }), 'Handed off');
  const mib = (ho.bytes_left / 1048576).toFixed(1);
  return h('span', { class: 'pill pill-stale', 'data-testid': 'handoff' }, h('i', { class: 'dot' }),
    ho.hosts_left + ' hosts, ' + mib + ' MiB to go');
}

export function clusterView(view) {
  title('Cluster');
  subscribe([], OVERVIEW_METRICS);
  const body = h('div', { class: 'view' });
  main.append(h('section', { class: 'view', 'data-testid': 'view-cluster' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Cluster'), h('span', { class: 'muted' }, 'Brokers as viz sees them')),
    body));
  let lastSig = '';
  function render() {
    const d = dash.data;
    if (!d) {
      if (dash.error) body.replaceChildren(h('div', { class: 'empty' }, h('p', {}, 'Cannot read the cluster: ' + dash.error.message)));
      else body.replaceChildren(h('div', { class: 'empty' }, h('p', { class: 'muted' }, 'Loading…')));
      return;
    }
    const cl = d.cluster || {};
    const sig = JSON.stringify(cl);
    if (sig === lastSig) return;
    lastSig = sig;
    const brokers = cl.brokers || [];
    const sources = new Set(cl.sources || []);
    const single = brokers.length <= 1;
    const raftNote = single ? 'a broker alone (no --raft)' : 'no leader known yet';
    const leader = cl.leader == null ? null
      : typeof cl.leader === 'object' ? (cl.leader.node_id || cl.leader.url || cl.leader.id || JSON.stringify(cl.leader)) : String(cl.leader);
    const card = (testid, label, value, sub, cls) => h('div', { class: 'card', 'data-testid': testid },
      h('div', { class: 'card-label' }, label), h('div', { class: 'card-value ' + (cls || '') }, value), h('div', { class: 'card-sub' }, sub));
    const healthy = cl.healthy_brokers ?? brokers.filter((b) => b.healthy).length;
    body.replaceChildren(
      h('div', { class: 'cards' },
        card('cluster-healthy', 'Healthy brokers', healthy + ' / ' + brokers.length,
          healthy === brokers.length ? 'all answer health checks' : (brokers.length - healthy) + ' not answering',
          healthy === brokers.length && brokers.length ? 'lvl-ok' : 'lvl-bad'),
        card('cluster-push', 'Live push', cl.live_push ? 'On' : 'Off',
          cl.live_push ? sources.size + ' streaming to viz' : 'viz polls brokers instead', cl.live_push ? 'lvl-ok' : 'lvl-warn'),
        card('cluster-leader', 'Raft leader', leader || '—', leader ? 'elected leader' + (cl.term == null ? '' : ', term ' + cl.term) : raftNote),
        card('cluster-epoch', 'Ring epoch', cl.ring_epoch == null ? '—' : String(cl.ring_epoch),
          cl.ring_epoch == null ? raftNote : 'consistent-hash ring version')),
      h('section', { class: 'panel' },
        h('div', { class: 'panel-head' }, h('h2', {}, 'Brokers'), h('span', { class: 'muted' }, String(brokers.length))),
        h('div', { class: 'table-wrap' },
          h('table', { class: 'brokers', 'data-testid': 'brokers-table' },
            h('thead', {}, h('tr', {},
              h('th', { scope: 'col' }, 'Broker'), h('th', { scope: 'col' }, 'Health'),
              h('th', { scope: 'col' }, 'Streams live to viz'), h('th', { scope: 'col' }, 'Role'),
              h('th', { scope: 'col' }, 'Hosts owned'), h('th', { scope: 'col' }, 'Hand-off'),
              h('th', { scope: 'col' }, 'Last error'))),
            h('tbody', {}, brokers.map((b, i) => {
              const isLeader = leader && (leader === b.url || leader === b.node_id);
              return h('tr', { 'data-testid': 'broker-row-' + i, 'data-url': b.url },
                h('td', {}, h('span', { class: 'broker-name' }, icon('server'), h('code', {}, b.url))),
                h('td', {}, h('span', { class: 'pill pill-' + (b.healthy ? 'live' : 'gone-bad') }, h('i', { class: 'dot' }), b.healthy ? 'Healthy' : 'Unhealthy')),
                h('td', {}, sources.has(b.url)
                  ? h('span', { class: 'pill pill-live' }, h('i', { class: 'dot' }), 'Streaming')
                  : h('span', { class: 'pill pill-stale' }, h('i', { class: 'dot' }), b.healthy ? 'Polled' : 'No')),
                h('td', {}, roleCell(b, isLeader, leader)),
                h('td', { 'data-testid': 'hosts-owned' }, b.hosts_owned == null ? h('span', { class: 'muted' }, '—') : String(b.hosts_owned)),
                h('td', {}, handoffCell(b)),
                h('td', { class: b.last_error ? 'err' : 'muted' }, b.last_error || '—'));
            }))))),
      h('p', { class: 'muted small note' },
        'viz health-checks every broker on a timer and fails over to the next one; a broker that streams live pushes each stored snapshot to viz at once, others are polled every few seconds.'));
  }
  render();
  view.cleanup.push(on('dashboard', render));
}
