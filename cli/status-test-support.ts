// Fixtures for the status unit tests: a two-site topology (db primary at alpha, vm at beta, one
// weekly drill of db) and the daemons' answers of a healthy cluster, as the wire delivers them,
// for the tests to break one fact at a time.
import { parseTopology, type Topology } from '../common/topology/index.ts';
import type { AgentGroup, AgentStatus, DrillScheduleWire, Gathered, Health } from './status-types.ts';

export const nowMs = Date.parse('2026-12-02T12:00:00Z'); // a Wednesday

const yaml = `apiVersion: metrocluster/v1
kind: MetroCluster
metadata: { name: demo }
sites:
  - { name: alpha, fireZone: building-a, agent: { address: 127.0.1.1, port: 7401 }, portal: { address: 127.0.1.1, port: 3260 }, dataDir: ./a }
  - { name: beta, fireZone: building-b, agent: { address: 127.0.2.1, port: 7402 }, portal: { address: 127.0.2.1, port: 3260 }, dataDir: ./b }
witness: { fireZone: building-c, address: 127.0.3.1, port: 7400, dataDir: ./w }
replication: { ack: sync, maxLagMs: 2000 }
groups:
  - { name: db, preferredSite: alpha, volumes: [ { name: data, size: 64MiB } ] }
  - { name: vm, preferredSite: beta, volumes: [ { name: images, size: 32MiB } ] }
drills:
  - { name: weekly-db, group: db, schedule: "0 3 * * 0", failback: true }
`;

/** The fixture topology, with `extra` lines (e.g. a failover block) appended. */
export function topology(extra = ''): Topology {
  const r = parseTopology(`${yaml}${extra}\n`, '/srv/demo/topology.yaml');
  if (!r.ok) throw new Error(`fixture topology invalid: ${JSON.stringify(r.errors)}`);
  return r.topology;
}

const health = (role: string, site: string, pid: number): { ok: true; value: Health } =>
  ({ ok: true, value: { role, cluster: 'demo', site, version: '0.1.0', uptime_ms: String(3 * 86_400_000), pid } });

function group(name: string, self: string, primary: string): AgentGroup {
  const peer = self === 'alpha' ? 'beta' : 'alpha';
  const isPrimary = self === primary;
  return {
    name, iqn: `iqn.2026-11.io.metrocluster:demo.${name}`, preferred_site: primary, role: isPrimary ? 'primary' : 'secondary', epoch: '3',
    volumes: [{ name: 'data', lun: 0, size_bytes: String(64 << 20), naa: '6001405' }],
    arbitration: {
      primary, epoch: '3', lease_state: 'peer+witness', peer_lease_remaining_ms: '1500', witness_lease_remaining_ms: '1500',
      witness_reachable: true, access: isPrimary ? 'active-optimized' : 'active-non-optimized', gate: isPrimary ? 'mirrored' : 'closed',
      peer_alive: true, secondary: 'up-to-date', blocked: '', switchover: false, failover_requested: false,
    },
    mirror: isPrimary ? {
      peer_site: peer, attached: true, policy: 'sync', mode: 'sync', mode_switches: 0, rtt_ms: 0.41, lag_bytes: '0', lag_ms: 0,
      secondary: 'up-to-date', outdated_reason: '', outdated_since: '',
      resync: { kind: 'full', done: true, bytes_total: String(64 << 20), bytes_done: String(64 << 20), bytes_sent: '0', bytes_matched: String(64 << 20), regions_total: '64', regions_done: '64', rate_bytes_per_sec: 0, eta_ms: '-1' },
      resync_bytes_sent_total: '0', resync_rate_limit_bytes_per_sec: '12500000', throttled: false, copy_has_data: true, copy_consistent: true, hold_down_ms: '0',
    } : {
      peer_site: peer, attached: true, policy: 'sync', mode: '', mode_switches: 0, rtt_ms: 0, lag_bytes: '0', lag_ms: 0, secondary: '',
      outdated_reason: '', outdated_since: '', resync: null, resync_bytes_sent_total: '0', resync_rate_limit_bytes_per_sec: '0', throttled: false,
      copy_has_data: true, copy_consistent: true, hold_down_ms: '0',
    },
    path: {
      primary, fenced: false, link: isPrimary ? 'none' : 'attached', forwarding_sites: isPrimary ? [peer] : [],
      port_groups: ['alpha', 'beta'].map((site, i) => ({ site, port_group: i + 1, state: site === primary ? 'active-optimized' : 'active-non-optimized' })),
    },
  };
}

function agent(site: string): { ok: true; value: AgentStatus } {
  return {
    ok: true,
    value: {
      cluster: 'demo', site, portal: { address: site === 'alpha' ? '127.0.1.1' : '127.0.2.1', port: 3260, portal_group_tag: site === 'alpha' ? 1 : 2, sessions: 1 },
      groups: [group('db', site, 'alpha'), group('vm', site, 'beta')], divergent: [],
    },
  };
}

export function drill(extra: Partial<DrillScheduleWire> = {}): DrillScheduleWire {
  return {
    name: 'weekly-db', group: 'db', schedule: '0 3 * * 0', failback: true, next_run: '2026-12-06T03:00:00.000Z',
    last_run_id: 'weekly-db-20261129T030000-1a2b', last_outcome: 'passed', last_started_at: '2026-11-29T03:00:00.120Z', running: false,
    last_ended_at: '2026-11-29T03:01:10.000Z', last_reason: '', last_rto_ms: '840',
    last_attempt_outcome: 'passed', last_attempt_started_at: '2026-11-29T03:00:00.120Z', last_attempt_reason: '', timezone: 'UTC', ...extra,
  };
}

/** What a healthy cluster answers. */
export function healthy(): Gathered {
  return {
    witness: health('witness', '', 100),
    drills: { ok: true, value: { running_id: '', drills: [drill()] } },
    sites: [
      { name: 'alpha', health: health('agent', 'alpha', 101), status: agent('alpha') },
      { name: 'beta', health: health('agent', 'beta', 102), status: agent('beta') },
    ],
  };
}

/** A site's wire group, to change one fact. */
export function wireGroup(g: Gathered, site: 'alpha' | 'beta', name: string): AgentGroup {
  const s = g.sites.find((x) => x.name === site)!;
  if (!s.status.ok) throw new Error(`no status of ${site} in the fixture`);
  return s.status.value.groups.find((x) => x.name === name)!;
}

export const unreachable = { ok: false as const, reason: 'unreachable', code: 14 };
