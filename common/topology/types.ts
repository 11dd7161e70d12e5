// The validated topology (metrocluster/v1) as the daemons and metroctl consume it, and the issues
// a topology file can have. Every value here has passed validation: paths are absolute, sizes are
// bytes, defaults are filled in, per-group replication overrides are merged.

export interface Endpoint { address: string; port: number }

export interface ChapConfig {
  user: string;
  /** Absolute path; the contents are read by the agent, never by the topology loader. */
  secretFile: string;
  mutual?: { user: string; secretFile: string };
}

export interface ReplicationConfig { ack: 'sync' | 'async' | 'adaptive'; syncMaxRttMs: number; maxLagMs: number }

export interface Volume { name: string; sizeBytes: number; /** position in the group's volume list */ lun: number }

export interface Group {
  name: string;
  preferredSite: string;
  volumes: Volume[];
  /** Effective settings: the group's `replication` override merged over the cluster's. */
  replication: ReplicationConfig;
  /** iqn.2026-11.io.metrocluster:<cluster>.<group> */
  iqn: string;
}

export interface Site {
  name: string;
  /** 1-based: the site's ALUA target port group and relative target port number. */
  index: number;
  fireZone: string;
  agent: Endpoint;
  portal: Endpoint;
  /** absolute */
  dataDir: string;
}

export interface Witness { fireZone: string; address: string; port: number; /** absolute */ dataDir: string }

export interface Drill { name: string; group: string; /** 5-field cron */ schedule: string; failback: boolean }

/** Certificate and private key of one daemon (absolute paths). */
export interface TlsKeyPair { cert: string; key: string }

/**
 * Optional `security` block (accepted and checked now; used by the TLS work).
 * `tls.daemons` is keyed by site name or "witness".
 */
export interface SecurityConfig {
  insecure: boolean;
  tls?: { ca: string; daemons: Record<string, TlsKeyPair> };
}

export interface Topology {
  /** absolute path of the topology file */
  file: string;
  /** its folder; relative paths in the file were resolved against it */
  dir: string;
  apiVersion: 'metrocluster/v1';
  kind: 'MetroCluster';
  name: string;
  sites: [Site, Site];
  witness: Witness;
  replication: ReplicationConfig;
  failover: { leaseMs: number; maxDataLossMs: number };
  groups: Group[];
  access: { initiators: string[]; chap?: ChapConfig };
  drills: Drill[];
  security?: SecurityConfig;
}

export interface TopologyIssue {
  file: string;
  line: number;
  column: number;
  /** field path such as `sites[1].portal.port`; empty for YAML syntax errors */
  path: string;
  /** found/expected sentence */
  message: string;
  severity: 'error' | 'warning';
}

export type TopologyResult =
  | { ok: true; topology: Topology; warnings: TopologyIssue[] }
  | { ok: false; errors: TopologyIssue[]; warnings: TopologyIssue[] };
