// The validated topology (metrocluster/v1) as the daemons and metroctl consume it, and the issues
// a topology file can have. Every value here has passed validation: paths are absolute, sizes are
// bytes, defaults are filled in, per-group replication overrides are merged.

export interface Endpoint { address: string; port: number }

/** access.limits: what initiators may hold at each site's iSCSI portal; defaults filled in. */
export interface PortalLimitsConfig {
  /** TCP connections at once, logged in or logging in; more are refused at login (out of resources). */
  connectionsMax: number;
  /** Connections still logging in; a new one closes the oldest of them (slow or abandoned logins). */
  loginsInProgressMax: number;
  /** Sessions one initiator name may hold; more are refused at login (out of resources). */
  sessionsPerInitiatorMax: number;
  /** A connection that has not finished its login by then is closed. */
  loginTimeoutMs: number;
}

export interface ChapConfig {
  user: string;
  /** Absolute path; the contents are read by the agent, never by the topology loader. */
  secretFile: string;
  mutual?: { user: string; secretFile: string };
}

export interface ReplicationConfig {
  ack: 'sync' | 'async' | 'adaptive';
  syncMaxRttMs: number;
  maxLagMs: number;
  /** Bandwidth bound of resync and verify traffic, megabits per second (1 Mbps = 125000 bytes/s). */
  resyncMbps: number;
}

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
  /**
   * Where this site's agent dials the others: `peer` (the mirror link to the other site's agent)
   * and `witness`. Defaults: the other site's `agent` endpoint and the topology's witness endpoint;
   * set them to use a dedicated replication network or a proxy.
   */
  routes: { peer: Endpoint; witness: Endpoint };
}

export interface Witness { fireZone: string; address: string; port: number; /** absolute */ dataDir: string }

export interface Drill { name: string; group: string; /** 5-field cron */ schedule: string; failback: boolean }

/** Certificate and private key of one daemon (absolute paths). */
export interface TlsKeyPair { cert: string; key: string }

/**
 * Optional `security` block. Absent: mutual TLS on an automatic PKI (common/tls/pki.ts).
 * `tls.daemons` is keyed by site name or "witness"; `tls.metroctl` is the pair metroctl presents
 * by default (an admin or viewer certificate).
 */
export interface SecurityConfig {
  insecure: boolean;
  tls?: { ca: string; daemons: Record<string, TlsKeyPair>; metroctl?: TlsKeyPair };
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
  access: { initiators: string[]; chap?: ChapConfig; limits: PortalLimitsConfig };
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
