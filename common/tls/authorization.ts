// Roles: what the identity in a caller's certificate may call. Every gRPC method a daemon serves
// declares one requirement (or a list, any of which suffices) in its service's access table; a
// method without one is refused to everybody. Pure: the caller's identity comes in, a decision
// with a reason goes out.
//
// | requirement  | who passes                                                            |
// | ------------ | --------------------------------------------------------------------- |
// | `viewer`     | any identity of this cluster: viewer, admin, a topology agent, witness |
// | `admin`      | an admin certificate                                                  |
// | `agent`      | the agent of either site of the topology                              |
// | `peer-agent` | the agent of the other site (only an agent serves such methods)       |
// | `witness`    | the witness                                                           |
import { describeIdentity, type Identity } from './identity.ts';

export type Requirement = 'viewer' | 'admin' | 'agent' | 'peer-agent' | 'witness';

/** Method name (as in the .proto) -> who may call it. */
export type AccessTable = Record<string, Requirement | readonly Requirement[]>;

export interface AuthorizationContext {
  cluster: string;
  /** The topology's site names. */
  sites: readonly string[];
  /** The daemon that serves the call. */
  self: Identity;
}

export type Decision = { allowed: true } | { allowed: false; reason: string };

const requirementWords: Record<Requirement, string> = {
  viewer: 'a viewer or admin certificate of this cluster',
  admin: 'an admin certificate',
  agent: "an agent certificate of one of the topology's sites",
  'peer-agent': "the peer site's agent certificate",
  witness: "the witness's certificate",
};

function passes(req: Requirement, caller: Identity, ctx: AuthorizationContext): boolean {
  const isTopologyAgent = caller.kind === 'agent' && ctx.sites.includes(caller.site);
  switch (req) {
    case 'viewer': return caller.kind !== 'agent' || isTopologyAgent;
    case 'admin': return caller.kind === 'admin';
    case 'agent': return isTopologyAgent;
    case 'peer-agent': return isTopologyAgent && ctx.self.kind === 'agent' && caller.kind === 'agent' && caller.site !== ctx.self.site;
    case 'witness': return caller.kind === 'witness';
  }
}

export function requirementsOf(table: AccessTable, method: string): readonly Requirement[] {
  const r = Object.hasOwn(table, method) ? table[method] : undefined;
  return r === undefined ? [] : typeof r === 'string' ? [r] : r;
}

/** Decides one call. `caller` is undefined when the certificate names no identity of ours. */
export function authorize(reqs: readonly Requirement[], caller: Identity | undefined, ctx: AuthorizationContext): Decision {
  if (reqs.length === 0) return { allowed: false, reason: 'this method declares no role that may call it' };
  if (caller === undefined) return { allowed: false, reason: 'the client certificate names no metrocluster identity' };
  if (caller.cluster !== ctx.cluster) {
    return { allowed: false, reason: `the certificate is for cluster "${caller.cluster}", this is cluster "${ctx.cluster}"` };
  }
  if (reqs.some((r) => passes(r, caller, ctx))) return { allowed: true };
  return { allowed: false, reason: `${describeIdentity(caller)} may not call this; it needs ${reqs.map((r) => requirementWords[r]).join(' or ')}` };
}
