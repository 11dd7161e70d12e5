// Per group, the path a command takes from this site's portal (DESIGN.md "Data path"): the local SCSI
// target while this site is the group's primary, a ForwardLink to the primary's agent while it is a
// secondary. Chosen per command, so the primary can change (setPrimary) or this site be fenced
// (fence) while hosts stay logged in. Also derives the ALUA states this site reports for the group
// (alua-policy.ts) and applies them to the group's port groups, which queues the unit attentions.
import { assert } from '../../common/assert.ts';
import type { Logger } from '../../common/log.ts';
import type { AluaPortGroups } from '../scsi/alua.ts';
import type { Nexus, ScsiRequest, ScsiResponse, ScsiTarget, TargetRegistry, TaskManagementFunction, TaskManagementResult } from '../scsi/types.ts';
import { aluaStates, type GroupFacts } from './alua-policy.ts';
import type { ForwardLink, LinkState } from './forward-link.ts';
import type { PrimaryLookup } from './forward-service.ts';

/** A secondary that cannot reach the primary reports transitioning this long, then unavailable. */
export const transitionMaxMs = 10_000;

export interface PathGroup {
  readonly name: string;
  readonly iqn: string;
  /** This site's target for the group (its own volume files). */
  readonly local: ScsiTarget;
  /** Its port groups (one per site, id = the site's index). */
  readonly alua: AluaPortGroups;
}

export interface GroupPathsOptions {
  self: string;
  /** Site names in topology order; the n-th (from 1) is port group n. */
  sites: readonly string[];
  groups: readonly PathGroup[];
  /** The group's primary at start (the agent's metadata). */
  primaryOf: (group: string) => string;
  epochOf: (group: string) => number;
  /** At start, whether the secondary of each group this site is primary of is up-to-date. */
  peerUpToDate: (group: string) => boolean;
  /** A link forwarding the group's commands to `primary`, announcing `nexuses` (those open now). */
  openLink: (o: { group: string; primary: string; nexuses: Iterable<Nexus>; onState: (s: LinkState) => void }) => ForwardLink;
  log: Logger;
  /** Called when this site stops executing the group's commands (no longer primary, or fenced). */
  onLeavePrimary?: (group: string, why: string) => void;
}

class GroupPath implements ScsiTarget {
  readonly iqn: string;
  primary: string | undefined;
  fenced = false;
  peerUpToDate: boolean;
  readonly forwarding = new Set<string>();
  link: ForwardLink | undefined;
  /** The site `link` forwards to. */
  linkTo: string | undefined;
  linkSinceMs = 0;
  transitionTimer: NodeJS.Timeout | undefined;
  /** Every nexus open through this site's portal, so a new path learns them. */
  readonly open = new Map<string, Nexus>();

  constructor(readonly g: PathGroup, primary: string, peerUpToDate: boolean, private readonly self: string) {
    this.iqn = g.iqn;
    this.primary = primary;
    this.peerUpToDate = peerUpToDate;
  }

  /** Forward while this site is an unfenced secondary whose link is attached; else the local target
   *  answers (as primary, or with its port group transitioning/unavailable as a secondary). */
  private forwards(): ForwardLink | undefined {
    const l = this.link;
    return l !== undefined && l.attached ? l : undefined;
  }

  luns(): number[] {
    return this.g.local.luns();
  }

  execute(req: ScsiRequest): Promise<ScsiResponse> {
    const l = this.forwards();
    return l ? l.execute(req) : this.g.local.execute(req);
  }

  taskManagement(req: { fn: TaskManagementFunction; nexus: Nexus; lun: number }): Promise<TaskManagementResult> {
    const l = this.forwards();
    return l ? l.taskManagement(req) : this.g.local.taskManagement(req);
  }

  nexusOpened(nexus: Nexus): void {
    this.open.set(nexus.id, nexus);
    this.g.local.nexusOpened(nexus);
    this.link?.nexusOpened(nexus);
  }

  nexusClosed(nexus: Nexus): void {
    this.open.delete(nexus.id);
    this.g.local.nexusClosed(nexus);
    this.link?.nexusClosed(nexus);
  }

  get isPrimaryHere(): boolean {
    return this.primary === this.self && !this.fenced;
  }
}

export class GroupPaths {
  private readonly paths = new Map<string, GroupPath>();
  private readonly byIqn = new Map<string, GroupPath>();
  private closed = false;
  private started = false;
  onLeavePrimary: ((group: string, why: string) => void) | undefined;

  constructor(private readonly o: GroupPathsOptions) {
    this.onLeavePrimary = o.onLeavePrimary;
    for (const g of o.groups) this.addGroup(g);
  }

  /** Opens the links of the groups this site is secondary of (after the gRPC server listens). */
  start(): void {
    this.started = true;
    for (const p of this.paths.values()) {
      this.relink(p);
      this.applyAlua(p);
    }
  }

  /** The registry the portal looks targets up in: each group's switchable path. */
  registry(base: TargetRegistry): TargetRegistry {
    return { lookup: (iqn) => this.byIqn.get(iqn) ?? base.lookup(iqn), discovery: () => base.discovery() };
  }

  /** A group of the topology, at start or added at runtime (topology apply): its path, its link once started. */
  addGroup(g: PathGroup): void {
    assert(!this.paths.has(g.name), `group ${g.name} added twice`);
    const p = new GroupPath(g, this.o.primaryOf(g.name), this.o.peerUpToDate(g.name), this.o.self);
    this.paths.set(g.name, p);
    this.byIqn.set(g.iqn, p);
    if (this.started) this.relink(p);
    this.applyAlua(p);
  }

  /** A group removed at runtime (by its target IQN): no longer found by logins; its link ends. */
  removeGroup(iqn: string): void {
    const p = this.byIqn.get(iqn);
    if (!p) return;
    const name = p.g.name;
    if (p.isPrimaryHere) this.onLeavePrimary?.(name, `group ${name} was removed from the topology`);
    clearTimeout(p.transitionTimer);
    p.link?.close();
    this.paths.delete(name);
    this.byIqn.delete(p.g.iqn);
  }

  // ------------------------------------------------------------ the failover wiring's interface

  has(group: string): boolean {
    return this.paths.has(group);
  }

  /** The group's primary is now `site` (undefined: none known, e.g. during a promotion). */
  setPrimary(group: string, site: string | undefined): void {
    const p = this.path(group);
    if (p.primary === site) return;
    const wasPrimary = p.isPrimaryHere;
    this.o.log.info('group primary changed', { group, from: p.primary, to: site });
    p.primary = site;
    p.forwarding.clear();
    if (wasPrimary && !p.isPrimaryHere) this.onLeavePrimary?.(group, `site ${this.o.self} is no longer the primary of group ${group}`);
    this.relink(p);
    this.applyAlua(p);
  }

  /** Fences this site for the group (lost quorum): it neither executes nor forwards its commands. */
  fence(group: string, fenced = true): void {
    const p = this.path(group);
    if (p.fenced === fenced) return;
    const wasPrimary = p.isPrimaryHere;
    p.fenced = fenced;
    this.o.log.warn(fenced ? 'group fenced at this site' : 'group unfenced at this site', { group });
    if (wasPrimary && !p.isPrimaryHere) this.onLeavePrimary?.(group, `group ${group} is fenced at site ${this.o.self}`);
    this.relink(p);
    this.applyAlua(p);
  }

  /** At the primary: the mirror's record of the secondary (outdated -> its port group unavailable). */
  setPeerUpToDate(group: string, upToDate: boolean): void {
    const p = this.paths.get(group);
    if (!p || p.peerUpToDate === upToDate) return; // a group removed meanwhile has no path
    p.peerUpToDate = upToDate;
    this.applyAlua(p);
  }

  // ------------------------------------------------------------ what the forward service asks

  lookupPrimary(group: string): PrimaryLookup {
    const p = this.paths.get(group);
    if (!p) return { kind: 'refused', reason: 'UNKNOWN_GROUP', message: `no group ${group} in this topology` };
    if (!p.isPrimaryHere) {
      return { kind: 'refused', reason: 'NOT_PRIMARY', message: `site ${this.o.self} is not the primary of group ${group}${p.fenced ? ' (fenced)' : ''}` };
    }
    return { kind: 'primary', target: p.g.local, epoch: this.o.epochOf(group) };
  }

  /** At the primary: which secondaries forward the group's commands now (for status). */
  forwardAttached(group: string, site: string, attached: boolean): void {
    const p = this.paths.get(group);
    if (!p) return;
    if (attached) p.forwarding.add(site);
    else p.forwarding.delete(site);
  }

  status(group: string): { primary: string | undefined; fenced: boolean; link: LinkState['kind'] | 'none'; forwardingSites: string[]; alua: Record<string, string> } {
    const p = this.path(group);
    return {
      primary: p.primary, fenced: p.fenced, link: p.link ? p.link.linkState.kind : 'none', forwardingSites: [...p.forwarding],
      alua: Object.fromEntries(p.g.alua.portGroups().map((g) => [this.o.sites[g.id - 1], g.state])),
    };
  }

  close(): void {
    this.closed = true;
    for (const p of this.paths.values()) {
      clearTimeout(p.transitionTimer);
      p.link?.close();
      p.link = undefined;
    }
  }

  // ------------------------------------------------------------ internals

  private path(group: string): GroupPath {
    const p = this.paths.get(group);
    assert(p !== undefined, `no group ${group}`);
    return p;
  }

  /** A secondary (unfenced, with a known primary elsewhere) keeps one link to the primary. */
  private relink(p: GroupPath): void {
    const want = !this.closed && !p.fenced && p.primary !== undefined && p.primary !== this.o.self ? p.primary : undefined;
    if (p.link && p.link.linkState.kind !== 'closed' && want !== undefined && p.linkTo === want) return;
    p.link?.close();
    p.link = undefined;
    p.linkTo = undefined;
    if (want === undefined) return;
    p.linkSinceMs = performance.now();
    p.linkTo = want;
    p.link = this.o.openLink({
      group: p.g.name, primary: want, nexuses: p.open.values(),
      onState: (s) => {
        if (s.kind !== 'attached') p.linkSinceMs = performance.now();
        this.applyAlua(p);
      },
    });
  }

  private facts(p: GroupPath): GroupFacts {
    let link: GroupFacts['link'] = 'lost';
    const s = p.link?.linkState;
    if (s?.kind === 'attached') link = 'attached';
    else if (s !== undefined && s.kind !== 'closed' && performance.now() - p.linkSinceMs < transitionMaxMs) link = 'connecting';
    return { self: this.o.self, sites: this.o.sites, primary: p.primary, fenced: p.fenced, peerUpToDate: p.peerUpToDate, link };
  }

  private applyAlua(p: GroupPath): void {
    const f = this.facts(p);
    for (const [site, state] of aluaStates(f)) p.g.alua.setState(this.o.sites.indexOf(site) + 1, state);
    clearTimeout(p.transitionTimer);
    p.transitionTimer = undefined;
    if (f.link === 'connecting') {
      // Re-evaluated when the transition bound passes: transitioning becomes unavailable.
      p.transitionTimer = setTimeout(() => this.applyAlua(p), transitionMaxMs - (performance.now() - p.linkSinceMs) + 1);
      p.transitionTimer.unref();
    }
  }
}
