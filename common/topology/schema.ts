// The metrocluster/v1 schema as a table of field specs, and the raw shape it produces (before the
// semantic checks and path resolution). Defaults live here so the table documents the format.
import type { Field, Spec } from './schema-engine.ts';
import type { PortalLimitsConfig } from './types.ts';
import {
  checkAddress, checkChapUser, checkCron, checkInitiator, checkName, checkPath,
  addressExpected, cronExpected, initiatorExpected, nameRule, pathExpected, userExpected,
} from './value-checks.ts';

export const apiVersion = 'metrocluster/v1';
export const kind = 'MetroCluster';

const req = (spec: Spec): Field => ({ spec, required: true });
const opt = (spec: Spec, dflt?: unknown): Field => ({ spec, default: dflt });
const obj = (expected: string, fields: Record<string, Field>): Spec => ({ kind: 'object', expected, fields });

const name: Spec = { kind: 'string', expected: nameRule, check: checkName };
const address: Spec = { kind: 'string', expected: addressExpected, check: checkAddress };
const port: Spec = { kind: 'integer', min: 1, max: 65535 };
const path: Spec = { kind: 'string', expected: pathExpected, check: checkPath };
const fireZone: Spec = { kind: 'string', expected: 'the name of a fire zone (any text, e.g. building-a)' };
const positiveMs: Spec = { kind: 'integer', min: 1, max: Number.MAX_SAFE_INTEGER };

const endpoint = (what: string, portDefault?: number): Spec =>
  obj(`the ${what} endpoint as a mapping { address, port }`, {
    address: req(address),
    port: portDefault === undefined ? req(port) : opt(port, portDefault),
  });

export const ackModes = ['sync', 'async', 'adaptive'] as const;

/** Cluster-wide replication, and the per-group override (same keys, no defaults: unset = inherited). */
const replicationFields = (withDefaults: boolean): Record<string, Field> => ({
  ack: opt({ kind: 'enum', values: ackModes }, withDefaults ? 'adaptive' : undefined),
  syncMaxRttMs: opt({ kind: 'number', greaterThan: 0 }, withDefaults ? 5 : undefined),
  maxLagMs: opt(positiveMs, withDefaults ? 2000 : undefined),
  resyncMbps: opt({ kind: 'number', greaterThan: 0 }, withDefaults ? resyncMbpsDefault : undefined),
});
const replicationExpected = 'a mapping { ack, syncMaxRttMs, maxLagMs, resyncMbps }';
/** 800 Mbps = 100 MB/s: resync and verify leave room for the mirror of host writes on a 10 Gb/s link. */
export const resyncMbpsDefault = 800;

const routes = obj('a mapping { peer, witness } of the endpoints this site dials', {
  peer: opt(endpoint('peer route (where this site dials the other site\'s agent)')),
  witness: opt(endpoint('witness route (where this site dials the witness)')),
});

const site = obj('a site as a mapping { name, fireZone, agent, portal, dataDir, routes }', {
  name: req(name),
  fireZone: req(fireZone),
  agent: req(endpoint('agent (gRPC: mirror and control)')),
  portal: req(endpoint('iSCSI portal', 3260)),
  dataDir: req(path),
  routes: opt(routes),
});

const volume = obj('a volume as a mapping { name, size }', {
  name: req(name),
  size: req({ kind: 'size' }),
});

const group = obj('a group as a mapping { name, preferredSite, volumes }', {
  name: req(name),
  preferredSite: req({ kind: 'string', expected: 'the name of one of the sites' }),
  volumes: req({ kind: 'list', expected: 'a list of at least one volume { name, size }', items: volume, minItems: 1 }),
  replication: opt(obj(replicationExpected, replicationFields(false))),
});

const chapCredentials = (what: string): Spec =>
  obj(`${what} as a mapping { user, secretFile }`, {
    user: req({ kind: 'string', expected: userExpected, check: checkChapUser }),
    secretFile: req(path),
  });

const chap = obj('CHAP settings as a mapping { user, secretFile, mutual }', {
  user: req({ kind: 'string', expected: userExpected, check: checkChapUser }),
  secretFile: req(path),
  mutual: opt(chapCredentials('the credentials the target proves itself with')),
});

/** What one initiator, or all of them together, may hold at an iSCSI portal (issue 7: hostile input). */
const portalLimits = obj('a mapping { connectionsMax, loginsInProgressMax, sessionsPerInitiatorMax, loginTimeoutMs }', {
  connectionsMax: opt({ kind: 'integer', min: 1, max: 65536 }, 1024),
  loginsInProgressMax: opt({ kind: 'integer', min: 1, max: 65536 }, 64),
  sessionsPerInitiatorMax: opt({ kind: 'integer', min: 1, max: 65535 }, 64),
  loginTimeoutMs: opt({ kind: 'integer', min: 100, max: 600_000 }, 15_000),
});

const drill = obj('a drill as a mapping { name, group, schedule, failback }', {
  name: req(name),
  group: req({ kind: 'string', expected: 'the name of one of the groups' }),
  schedule: req({ kind: 'string', expected: cronExpected, check: checkCron }),
  failback: opt({ kind: 'boolean' }, true),
});

const keyPair = obj('a mapping { cert, key } of file paths', { cert: req(path), key: req(path) });

const security = obj('a mapping { insecure, tls }', {
  insecure: opt({ kind: 'boolean' }, false),
  tls: opt(
    obj('a mapping { ca, daemons, metroctl }', {
      ca: req(path),
      daemons: opt({ kind: 'record', expected: 'a mapping from a site name or "witness" to { cert, key }', values: keyPair }, {}),
      metroctl: opt(keyPair),
    }),
  ),
});

export const topologySpec: Spec = obj('a MetroCluster topology mapping', {
  apiVersion: req({ kind: 'enum', values: [apiVersion] }),
  kind: req({ kind: 'enum', values: [kind] }),
  metadata: req(obj('a mapping { name }', { name: req(name) })),
  sites: req({ kind: 'list', expected: 'a list of exactly 2 sites', items: site }),
  witness: req(
    obj('the witness as a mapping { fireZone, address, port, dataDir }', {
      fireZone: req(fireZone),
      address: req(address),
      port: req(port),
      dataDir: req(path),
    }),
  ),
  replication: opt(obj(replicationExpected, replicationFields(true)), {}),
  failover: opt(
    obj('a mapping { leaseMs, maxDataLossMs }', {
      leaseMs: opt(positiveMs, 2000),
      maxDataLossMs: opt({ kind: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER }, 0),
    }),
    {},
  ),
  groups: req({ kind: 'list', expected: 'a list of at least one group', items: group, minItems: 1 }),
  access: opt(
    obj('a mapping { initiators, chap, limits }', {
      initiators: opt({ kind: 'list', expected: 'a list of initiator names', items: { kind: 'string', expected: initiatorExpected, check: checkInitiator } }, []),
      chap: opt(chap),
      limits: opt(portalLimits, {}),
    }),
    {},
  ),
  drills: opt({ kind: 'list', expected: 'a list of drills { name, group, schedule, failback }', items: drill }, []),
  security: opt(security),
});

// The raw shape the table yields. Any field may be undefined where validation failed.
export interface RawEndpoint { address?: string; port?: number }
export interface RawReplication { ack?: (typeof ackModes)[number]; syncMaxRttMs?: number; maxLagMs?: number; resyncMbps?: number }
export interface RawSite {
  name?: string; fireZone?: string; agent?: RawEndpoint; portal?: RawEndpoint; dataDir?: string;
  routes?: { peer?: RawEndpoint; witness?: RawEndpoint };
}
export interface RawVolume { name?: string; size?: number }
export interface RawGroup { name?: string; preferredSite?: string; volumes?: (RawVolume | undefined)[]; replication?: RawReplication }
export interface RawChap { user?: string; secretFile?: string; mutual?: { user?: string; secretFile?: string } }
export interface RawDrill { name?: string; group?: string; schedule?: string; failback?: boolean }
export interface RawSecurity { insecure?: boolean; tls?: { ca?: string; daemons?: Record<string, { cert?: string; key?: string } | undefined>; metroctl?: { cert?: string; key?: string } } }
export interface RawTopology {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string };
  sites?: (RawSite | undefined)[];
  witness?: RawEndpoint & { fireZone?: string; dataDir?: string };
  replication?: RawReplication;
  failover?: { leaseMs?: number; maxDataLossMs?: number };
  groups?: (RawGroup | undefined)[];
  access?: { initiators?: (string | undefined)[]; chap?: RawChap; limits?: PortalLimitsConfig };
  drills?: (RawDrill | undefined)[];
  security?: RawSecurity;
}
