// The PathStatus message of the agent's Status RPC (protos/agent.proto) for one group: where this
// site's portal sends the group's commands and the ALUA state of every site's port group as this
// portal reports it to hosts (GroupPaths.status). Pure mapping, no I/O.
import type { GroupPaths } from './group-paths.ts';

export type PathFacts = ReturnType<GroupPaths['status']>;

/** `sites` in topology order: the n-th (from 1) is target port group n (DESIGN.md, identity). */
export function pathStatusMessage(p: PathFacts, sites: readonly string[]): Record<string, unknown> {
  return {
    primary: p.primary ?? '',
    fenced: p.fenced,
    link: p.link,
    forwarding_sites: [...p.forwardingSites].sort(),
    port_groups: sites.map((site, i) => ({ site, port_group: i + 1, state: p.alua[site] ?? '' })),
  };
}
