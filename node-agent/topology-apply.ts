// Topology changes at one agent, while it serves (`metroctl topology apply`; topology.proto). An apply
// of version N runs in three phases, each on every daemon before the next: PREPARE validates, records
// N durably, then grows storage (files, dirty maps, the mirror's volumes) where hosts cannot see it;
// COMMIT shows hosts the change (new LUNs, capacities, targets, with unit attentions), cuts what is
// forced away at the SCSI level and waits until the mirror holds every write to it; FINISH releases
// storage no longer served. A restart serves the recorded topology, so a crash between phases leaves
// this site serving version N whole.
import fs from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { assert } from '../common/assert.ts';
import type { Logger } from '../common/log.ts';
import { DaemonError } from '../common/daemon.ts';
import { formatIssue, parseTopology, type Group, type Site, type Topology, type Volume } from '../common/topology/index.ts';
import { diffTopology, type TopologyChange } from '../common/topology/topology-diff.ts';
import { newGroupRecord, volumeKey, type AppliedTopology, type MetaStore } from './meta-store.ts';
import { dirtyMapPath, openOne, type OpenVolume } from './volumes.ts';
import type { SiteRoles } from './role/site-roles.ts';
import type { GroupTarget } from './targets.ts';
import type { PortalAccess } from './access.ts';
import { ackPolicyOf } from './mirror-setup.ts';
import { applyGate, checkApplyRequest, type ApplyOutcome, type ApplyRefusal, type ApplyRequest } from '../common/topology-apply-wire.ts';

/** What the agent built at start, handed over so an apply can change it in place. */
export interface AgentParts {
  site: Site;
  meta: MetaStore;
  log: Logger;
  /** The volumes as opened (their files): closed at stop. */
  opened: OpenVolume[];
  /** The volumes as the targets serve them (mirrored at the primary). */
  served: OpenVolume[];
  targets: {
    targets: Map<string, GroupTarget>;
    addGroup(g: Group, volumes: OpenVolume[]): GroupTarget;
    removeGroup(iqn: string): void;
  };
  mirrors: SiteRoles['mirrors'];
  /** The portal's access rules: the initiator list is changed in place. */
  access: PortalAccess;
}

/**
 * The topology the agent serves at start: the one last recorded in its metadata (a topology apply),
 * or the file's, recorded as version 1 on the first start.
 */
export async function servedTopology(ctx: { meta: MetaStore; fromFile: Topology; log: Logger }): Promise<Topology> {
  const rec = ctx.meta.read().topology;
  if (!rec) {
    const text = await fs.readFile(ctx.fromFile.file, 'utf8');
    await ctx.meta.update((m) => { m.topology = { version: 1, text, file: ctx.fromFile.file, appliedAt: new Date().toISOString() }; });
    return ctx.fromFile;
  }
  const parsed = parseTopology(rec.text, rec.file);
  if (!parsed.ok) {
    throw new DaemonError(`the topology version ${rec.version} recorded in this site's metadata does not parse: ${parsed.errors.map(formatIssue).join('; ')}`);
  }
  if (rec.pendingPhase) {
    ctx.log.warn('a topology apply was interrupted here: serving its version whole', { version: rec.version, phaseDone: rec.pendingPhase });
    await ctx.meta.update((m) => { delete m.topology!.pendingPhase; });
  }
  const fileText = await fs.readFile(ctx.fromFile.file, 'utf8').catch(() => '');
  if (fileText !== rec.text) {
    ctx.log.warn('serving the applied topology, not the file given', { version: rec.version, applied: rec.file, file: ctx.fromFile.file });
  }
  return parsed.topology;
}

export class TopologyRuntime {
  private current: Topology;
  /** What COMMIT showed hosts last, kept for FINISH. */
  private previous: Topology | undefined;
  /** Volumes PREPARE opened for LUNs and groups COMMIT shows. */
  private readonly added = new Map<string, OpenVolume>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly parts: AgentParts, topology: Topology) {
    this.current = topology;
  }

  /** The topology hosts are served now. */
  get topology(): Topology {
    return this.current;
  }

  state(): AppliedTopology & { cluster: string } {
    const rec = this.parts.meta.read().topology;
    assert(rec !== undefined, 'the served topology is recorded at start');
    return { cluster: this.current.name, ...rec };
  }

  /** One apply step at a time. */
  apply(q: ApplyRequest): Promise<ApplyOutcome> {
    const run = this.queue.then(() => this.step(q));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async step(q: ApplyRequest): Promise<ApplyOutcome> {
    const refuse = (message: string, code: ApplyRefusal['code'] = 'precondition'): ApplyRefusal => ({ refused: true, code, message });
    const rec = this.state();
    const gate = applyGate(q, { who: `site ${this.parts.site.name}`, cluster: this.current.name, applied: rec });
    if (!('run' in gate)) return gate;
    if (gate.run === 'commit') return this.commit(q);
    if (gate.run === 'finish') return this.finish(q);
    // Relative paths in the text resolve against this site's own topology file, wherever the
    // operator's copy lives (q.file is where metroctl read it, kept for the record only).
    const parsed = parseTopology(q.text, rec.file);
    if (!parsed.ok) return refuse(`the topology is invalid: ${parsed.errors.slice(0, 5).map(formatIssue).join('; ')}`, 'invalid');
    const next = parsed.topology;
    if (next.name !== q.cluster) return refuse(`the topology names cluster "${next.name}", the request "${q.cluster}"`, 'invalid');
    const plan = diffTopology(this.current, next);
    if (plan.refusals.length > 0) return refuse(`not applicable online: ${plan.refusals.join('; ')}`);
    const destructive = plan.changes.filter((c) => c.destructive);
    if (destructive.length > 0 && !q.force) {
      return refuse(`destructive changes need --force: ${destructive.map((c) => c.sentence).join('; ')}`);
    }
    return this.prepare(q, next, plan.changes.map((c) => c.change));
  }

  // ------------------------------------------------------------ PREPARE

  private async prepare(q: ApplyRequest, next: Topology, changes: TopologyChange[]): Promise<ApplyOutcome> {
    const { meta } = this.parts;
    // Recorded before acting: a crash from here on restarts into version q.version, whose opening
    // of the volumes grows (or, for an approved shrink, cuts) their files.
    await meta.update((m) => {
      m.topology = { version: q.version, text: q.text, file: m.topology?.file ?? q.file, appliedAt: new Date().toISOString(), pendingPhase: 'prepare' };
      for (const c of changes) {
        if (c.kind === 'volume-shrunk') m.volumes[volumeKey(c.group, c.volume)].shrinkApprovedBytes = c.toBytes;
        if (c.kind === 'group-added' && !m.groups[c.group]) {
          m.groups[c.group] = newGroupRecord(c.preferredSite, this.parts.site.name);
        }
      }
    });
    const done: string[] = [];
    for (const c of changes) {
      if (c.kind === 'volume-added') done.push(await this.prepareVolume(next, c.group, c.volume));
      else if (c.kind === 'volume-grown') done.push(await this.growVolume(c.group, c.volume, c.toBytes));
      else if (c.kind === 'group-added') done.push(await this.prepareGroup(next, c.group));
    }
    return { refused: false, version: q.version, done };
  }

  private async prepareVolume(next: Topology, group: string, name: string): Promise<string> {
    const key = volumeKey(group, name);
    if (this.added.has(key)) return `${key}: file ready`;
    const g = next.groups.find((x) => x.name === group)!;
    const volume = g.volumes.find((v) => v.name === name)!;
    const raw = await this.open(next, g, volume);
    // The group's data path takes it (mirrored and gated by the group's role, whichever site is primary).
    const served = await this.parts.mirrors.addVolume(group, raw, volume.lun);
    this.added.set(key, served);
    return `${key}: file ready (${volume.sizeBytes} bytes)`;
  }

  private async open(next: Topology, g: Group, volume: Volume): Promise<OpenVolume> {
    const raw = await openOne({ t: next, site: this.parts.site, group: g, volume, meta: this.parts.meta, log: this.parts.log });
    this.parts.opened.push(raw);
    return raw;
  }

  private async growVolume(group: string, name: string, sizeBytes: number): Promise<string> {
    const v = this.servedVolume(group, name);
    if (v.device.sizeBytes < sizeBytes) {
      assert(v.device.resize !== undefined, `volume ${group}/${name} cannot be resized`);
      await v.device.resize(sizeBytes);
    }
    await this.parts.meta.update((m) => { m.volumes[volumeKey(group, name)].sizeBytes = sizeBytes; });
    return `${group}/${name}: file grown to ${sizeBytes} bytes`;
  }

  private async prepareGroup(next: Topology, group: string): Promise<string> {
    if ([...this.added.values()].some((v) => v.group.name === group)) return `group ${group}: volumes ready`;
    const g = next.groups.find((x) => x.name === group)!;
    const own: OpenVolume[] = [];
    for (const volume of g.volumes) own.push(await this.open(next, g, volume));
    const served = await this.parts.mirrors.mirrorGroup(g, own);
    for (const v of served) this.added.set(volumeKey(group, v.volume.name), v);
    return `group ${group}: ${own.length} volume file(s) ready`;
  }

  // ------------------------------------------------------------ COMMIT

  private async commit(q: ApplyRequest): Promise<ApplyOutcome> {
    const parsed = parseTopology(q.text, this.state().file);
    assert(parsed.ok, 'a prepared topology parses');
    const next = parsed.topology;
    const done: string[] = [];
    for (const { change: c } of diffTopology(this.current, next).changes) {
      const line = await this.commitChange(next, c);
      if (line) done.push(line);
    }
    this.previous = this.current;
    this.current = next;
    await this.parts.meta.update((m) => { m.topology!.pendingPhase = 'commit'; });
    this.parts.log.info('topology committed', { version: q.version, changes: done });
    return { refused: false, version: q.version, done };
  }

  private async commitChange(next: Topology, c: TopologyChange): Promise<string | undefined> {
    const target = (group: string): GroupTarget => {
      const t = this.parts.targets.targets.get(next.groups.find((g) => g.name === group)?.iqn ?? this.iqnOf(group));
      assert(t !== undefined, `group ${group} has no target`);
      return t;
    };
    switch (c.kind) {
      case 'volume-added': {
        const v = this.added.get(volumeKey(c.group, c.volume));
        assert(v !== undefined, `volume ${c.group}/${c.volume} was not prepared`);
        this.added.delete(volumeKey(c.group, c.volume));
        target(c.group).addLun({ lun: v.volume.lun, device: v.device, identity: v.identity });
        this.parts.served.push(v);
        return `${c.group}/${c.volume}: LUN ${c.lun} served (REPORTED LUNS DATA HAS CHANGED)`;
      }
      case 'volume-grown':
        await target(c.group).resizeLun(c.lun, c.toBytes);
        return `${c.group}/${c.volume}: LUN ${c.lun} capacity ${c.toBytes} bytes (CAPACITY DATA HAS CHANGED)`;
      case 'volume-shrunk':
        await target(c.group).resizeLun(c.lun, c.toBytes);
        await this.mirrorSettled(c.group, c.lun);
        return `${c.group}/${c.volume}: LUN ${c.lun} capacity ${c.toBytes} bytes (CAPACITY DATA HAS CHANGED)`;
      case 'volume-deleted':
        await target(c.group).removeLun(c.lun);
        await this.mirrorSettled(c.group, c.lun);
        return `${c.group}/${c.volume}: LUN ${c.lun} no longer served`;
      case 'group-added': {
        const g = next.groups.find((x) => x.name === c.group)!;
        const volumes = g.volumes.map((v) => this.added.get(volumeKey(g.name, v.name)));
        assert(volumes.every((v) => v !== undefined), `group ${g.name} was not prepared`);
        for (const v of g.volumes) this.added.delete(volumeKey(g.name, v.name));
        this.parts.targets.addGroup(g, volumes as OpenVolume[]);
        this.parts.served.push(...(volumes as OpenVolume[]));
        return `group ${g.name}: target ${g.iqn} served`;
      }
      case 'group-removed': {
        const iqn = this.iqnOf(c.group);
        const t = this.parts.targets.targets.get(iqn);
        this.parts.targets.removeGroup(iqn);
        for (const lun of t?.luns() ?? []) {
          await t!.removeLun(lun);
          await this.mirrorSettled(c.group, lun);
        }
        return `group ${c.group}: target ${iqn} no longer served`;
      }
      case 'setting-changed':
        return this.commitSetting(next, c.path);
    }
  }

  private commitSetting(next: Topology, path: string): string {
    const m = /^groups\[(.+)\]\.replication\./.exec(path);
    if (m) {
      const g = next.groups.find((x) => x.name === m[1])!;
      this.parts.mirrors.sessions.get(g.name)?.setPolicy(ackPolicyOf(g.replication));
      return `${path}: in effect`;
    }
    if (path === 'access.initiators') {
      const list = this.parts.access.initiators;
      list.splice(0, list.length, ...next.access.initiators);
      return `${path}: in effect for new logins`;
    }
    if (path === 'access.chap' || path === 'access.limits') return `${path}: recorded; the portal takes it at the agent's next start`;
    return `${path}: recorded`;
  }

  /** At the primary: every write to the volume has reached the peer (or is recorded for its resync). */
  private async mirrorSettled(group: string, lun: number): Promise<void> {
    await this.parts.mirrors.sessions.get(group)?.volumeSettled(lun);
  }

  private iqnOf(group: string): string {
    const g = this.current.groups.find((x) => x.name === group) ?? this.previous?.groups.find((x) => x.name === group);
    assert(g !== undefined, `unknown group ${group}`);
    return g.iqn;
  }

  private servedVolume(group: string, name: string): OpenVolume {
    const v = this.parts.served.find((x) => x.group.name === group && x.volume.name === name);
    assert(v !== undefined, `volume ${group}/${name} is not served`);
    return v;
  }

  // ------------------------------------------------------------ FINISH

  private async finish(q: ApplyRequest): Promise<ApplyOutcome> {
    const done: string[] = [];
    const before = this.previous;
    if (before) {
      // The last LUNs first: a group's mirror numbers its volumes by position.
      const changes = diffTopology(before, this.current).changes.map((p) => p.change)
        .sort((a, b) => ('lun' in b ? b.lun : 0) - ('lun' in a ? a.lun : 0));
      for (const c of changes) {
        if (c.kind === 'volume-shrunk') done.push(await this.shrinkVolume(c.group, c.volume, c.toBytes));
        else if (c.kind === 'volume-deleted') done.push(await this.releaseVolume(q.version, c.group, c.volume, 'deleted'));
        else if (c.kind === 'group-removed') done.push(await this.releaseGroup(q.version, before, c.group));
      }
    }
    this.previous = undefined;
    await this.parts.meta.update((m) => { delete m.topology!.pendingPhase; });
    return { refused: false, version: q.version, done };
  }

  private async shrinkVolume(group: string, name: string, sizeBytes: number): Promise<string> {
    const v = this.servedVolume(group, name);
    if (v.device.sizeBytes > sizeBytes) await v.device.resize!(sizeBytes);
    await this.parts.meta.update((m) => {
      const r = m.volumes[volumeKey(group, name)];
      r.sizeBytes = sizeBytes;
      delete r.shrinkApprovedBytes;
    });
    return `${group}/${name}: file cut to ${sizeBytes} bytes`;
  }

  /** The volume's file is kept aside (renamed), not deleted: the admin removes it once sure. */
  private async releaseVolume(version: number, group: string, name: string, why: string): Promise<string> {
    const v = this.servedVolume(group, name);
    // A group removed whole was dropped before (releaseGroup): no data path holds its volumes.
    if (this.current.groups.some((g) => g.name === group)) await this.parts.mirrors.removeLastVolume(group);
    this.parts.served.splice(this.parts.served.indexOf(v), 1);
    const raw = this.parts.opened.find((o) => o.file === v.file);
    if (raw) {
      this.parts.opened.splice(this.parts.opened.indexOf(raw), 1);
      await raw.device.close();
    }
    const aside = `${v.file}.${why}-v${version}`;
    await fs.rename(v.file, aside);
    await fs.rm(dirtyMapPath(this.parts.site, group, name), { force: true });
    await this.parts.meta.update((m) => { delete m.volumes[volumeKey(group, name)]; });
    return `${group}/${name}: file kept aside as ${aside}`;
  }

  private async releaseGroup(version: number, before: Topology, group: string): Promise<string> {
    this.parts.mirrors.dropGroup(group);
    const g = before.groups.find((x) => x.name === group)!;
    const lines: string[] = [];
    for (const v of [...g.volumes].reverse()) lines.push(await this.releaseVolume(version, group, v.name, 'removed'));
    await this.parts.meta.update((m) => { delete m.groups[group]; });
    return `group ${group}: ${lines.join('; ')}`;
  }
}

/** The gRPC edge: GetTopology and ApplyTopology of MetroAgent, refusals mapped to statuses. */
export function topologyService(runtime: TopologyRuntime, site: string, log: Logger): grpc.UntypedServiceImplementation {
  type Callback = (err: grpc.ServiceError | null, reply?: object) => void;
  const fail = (cb: Callback, code: grpc.status, details: string): void =>
    cb({ code, details, name: 'TopologyRefusal', message: details, metadata: new grpc.Metadata() });
  return {
    GetTopology: (_call: unknown, cb: Callback) => {
      const s = runtime.state();
      cb(null, { cluster: s.cluster, version: String(s.version), text: s.text, file: s.file, applied_at: s.appliedAt, pending_phase: s.pendingPhase ?? '' });
    },
    ApplyTopology: (call: grpc.ServerUnaryCall<Record<string, unknown>, object>, cb: Callback) => {
      const q = checkApplyRequest(call.request);
      if ('refused' in q) return fail(cb, grpc.status.INVALID_ARGUMENT, q.message);
      runtime.apply(q).then((r) => {
        if (r.refused) {
          log.warn('topology apply refused', { version: q.version, phase: q.phase, reason: r.message });
          return fail(cb, r.code === 'invalid' ? grpc.status.INVALID_ARGUMENT : grpc.status.FAILED_PRECONDITION, r.message);
        }
        log.info('topology apply step done', { version: r.version, phase: q.phase, done: r.done });
        cb(null, { version: String(r.version), done: r.done });
      }, (err: Error) => {
        log.error('topology apply failed', { version: q.version, phase: q.phase, error: err.message });
        fail(cb, grpc.status.INTERNAL, `the apply failed at site ${site}: ${err.message}`);
      });
    },
  };
}
