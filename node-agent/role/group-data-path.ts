// One group's data path at this site, switched by its role (DESIGN.md "Data path", "Arbitration"):
// as primary it runs the group's MirrorSession and its LUNs write through it; as secondary it runs
// the applier that dials the primary and its LUNs execute nothing (AccessUnavailable). Every read
// and write asks the role runtime's gate when it starts and again before it completes, so a site
// that lost quorum, its epoch or its role acknowledges nothing, whatever was in flight.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../common/log.ts';
import type { Group, Site, Topology } from '../../common/topology/index.ts';
import { AccessUnavailable, readPooled, type BlockDevice } from '../storage/block-device.ts';
import type { PooledBuffer } from '../storage/buffer-pool.ts';
import { assert } from '../../common/assert.ts';
import { MirrorSession, forgetOwnDirtyRegions, resizeSessionVolume, type SessionVolume } from '../mirror/mirror-session.ts';
import { startApplierLink, type ApplierLink } from '../mirror/mirror-applier.ts';
import type { DivergentRecord, MetaStore } from '../meta-store.ts';
import { dirtyMapPath } from '../volumes.ts';
import { ackPolicyOf, ownDirtyRegions, regionSizeBytes } from '../mirror-setup.ts';
import type { OpenVolume } from '../volumes.ts';
import type { RoleView, RoleRuntime } from './role-runtime.ts';
import type { HostStateOwner } from '../reservation-mirror.ts';

/** A write finished locally while the gate was closed waits this long for it to reopen, then fails. */
const gateWaitMs = 500;
/** Divergent writes are copied aside in reads of at most this many bytes (a dirty run may span the volume). */
const divergentChunkBytesMax = 4 * 1024 * 1024;

export interface PathVolume extends SessionVolume {
  open: OpenVolume;
}

export class GroupDataPath {
  readonly devices: RoleGatedDevice[];
  private mode: { kind: 'none' } | { kind: 'primary'; epoch: number; session: MirrorSession | undefined } | { kind: 'secondary'; epoch: number; link: ApplierLink | undefined } = { kind: 'none' };
  private fence = new Fence();
  /** I/O started and not yet answered (a switchover drains it). */
  inflight = 0;
  private held: { promise: Promise<void>; release: () => void } | undefined;

  /** The raw devices the applier writes to (a topology apply adds to them and removes the last). */
  private readonly applierDevices: BlockDevice[];

  constructor(private readonly ctx: {
    topology: Topology;
    site: Site;
    peer: Site | undefined;
    /** Where the peer's agent is dialled (the topology's route to it, else its address). */
    peerAgent: { address: string; port: number } | undefined;
    group: Group;
    volumes: PathVolume[];
    runtime: RoleRuntime;
    /** The group's sessions by name, as MetroMirror.Attach looks them up. */
    sessions: Map<string, MirrorSession>;
    mirroring: boolean;
    log: Logger;
    /** This site's metadata: the copy record (GroupRecord.copy) the resync keeps. */
    meta: MetaStore;
    /** The group's host-visible state (its SCSI target's reservations), once the target exists. */
    hostState: () => HostStateOwner | undefined;
  }) {
    this.devices = ctx.volumes.map((v, i) => new RoleGatedDevice(this, v.open.device, i));
    this.applierDevices = ctx.volumes.map((v) => v.open.device);
  }

  /** A volume added at the end of the group by a topology apply: the running mirror, if any, shares the list. */
  addVolume(v: PathVolume): RoleGatedDevice {
    this.ctx.volumes.push(v);
    this.applierDevices.push(v.open.device);
    const d = new RoleGatedDevice(this, v.open.device, v.index);
    this.devices.push(d);
    return d;
  }

  /**
   * The group's last volume is deleted (hosts no longer reach it): the running mirror waits for its
   * writes and forgets it, or, with no session here (a secondary), it leaves the list between
   * dirty-map rewrites. Then the applier's and the LUNs' lists drop it and its dirty map is closed.
   */
  async removeLastVolume(): Promise<void> {
    const m = this.mode;
    const session = m.kind === 'primary' ? m.session : undefined;
    const v = session ? await session.removeLastVolume() : await this.idleMapWork(async () => {
      assert(this.ctx.volumes.length > 1, 'a group keeps at least one volume');
      return this.ctx.volumes.pop()!;
    });
    this.applierDevices.pop();
    this.devices.pop();
    await v.dirtyFile.close();
  }

  get name(): string {
    return this.ctx.group.name;
  }

  /** The role changed (after its persist): run the matching side of the mirror. */
  configure(view: RoleView): void {
    const m = this.mode;
    if (view.isPrimary) {
      if (m.kind === 'primary' && m.epoch === view.epoch) {
        if (!view.peerAlive) m.session?.declarePeerDown();
        return;
      }
      this.stop();
      this.mode = { kind: 'primary', epoch: view.epoch, session: this.startSession(view) };
      this.ctx.log.warn('serving as primary', { group: this.name, epoch: view.epoch });
      return;
    }
    if (m.kind === 'secondary' && m.epoch === view.epoch) return;
    this.stop();
    this.mode = { kind: 'secondary', epoch: view.epoch, link: this.startApplier(view) };
    this.ctx.log.warn('serving as secondary', { group: this.name, epoch: view.epoch, primary: view.primary });
  }

  /** Every tick: tell the role machine whether the secondary holds every acknowledged write. */
  reportMirror(): void {
    const m = this.mode;
    if (m.kind !== 'primary' || !m.session) return;
    const st = m.session.roleReport();
    if (st.peer === 'up' && st.secondary === 'up-to-date') this.ctx.runtime.mirror(this.name, true, null);
    else if (st.peer === 'down' || st.secondary === 'outdated') this.ctx.runtime.mirror(this.name, false, st.mode === 'async' ? Math.round(st.lagMs) : null);
  }

  status(): ReturnType<MirrorSession['status']> | undefined {
    return this.mode.kind === 'primary' ? this.mode.session?.status() : undefined;
  }

  /** The device a LUN's I/O goes to now, or the refusal. */
  target(index: number): { device: BlockDevice; session: MirrorSession | undefined; fence: Fence } {
    const gate = this.ctx.runtime.gate(this.name);
    const m = this.mode;
    if (gate === 'closed' || m.kind !== 'primary') throw new AccessUnavailable(this.name, this.ctx.runtime.view(this.name)?.access === 'transitioning');
    return { device: this.ctx.volumes[index].open.device, session: m.session, fence: this.fence };
  }

  /** The common case of confirm, without a promise: the epoch is unchanged and the gate open. */
  confirmedNow(epoch: number): boolean {
    return this.ctx.runtime.epoch(this.name) === epoch && this.ctx.runtime.gate(this.name) !== 'closed';
  }

  /**
   * Before acknowledging: the gate must (still) be open in the epoch the I/O started in. A closed
   * gate may reopen within gateWaitMs (only a role step or a completed persist opens it, and the
   * runtime checks after each).
   */
  async confirm(epoch: number): Promise<void> {
    const rt = this.ctx.runtime;
    await rt.until(this.name, (s) => s.persisted.epoch !== epoch || rt.gate(this.name) !== 'closed', gateWaitMs);
    if (rt.epoch(this.name) === epoch && rt.gate(this.name) !== 'closed') return;
    throw new AccessUnavailable(this.name, rt.view(this.name)?.access === 'transitioning');
  }

  /** Grows the file before the mirror's structures, shrinks them first (writes past the old end come after both). */
  async resize(index: number, local: BlockDevice, sizeBytes: number): Promise<void> {
    if (!local.resize) throw new Error('the volume cannot be resized');
    const m = this.mode;
    const session = m.kind === 'primary' ? m.session : undefined;
    if (!session) {
      // No session runs here (a secondary): the dirty map and the recorded size follow now, so a
      // session started later (this site becomes primary) plans and checks on the new size.
      await local.resize(sizeBytes);
      const v = this.ctx.volumes[index];
      if (v && v.sizeBytes !== sizeBytes) await this.idleMapWork(() => resizeSessionVolume(v, sizeBytes, performance.now()));
      return;
    }
    if (sizeBytes >= local.sizeBytes) {
      await local.resize(sizeBytes);
      await session.resizeVolume(index, sizeBytes);
    } else {
      await session.resizeVolume(index, sizeBytes);
      await local.resize(sizeBytes);
    }
  }

  /** New I/O waits here while a switchover drains the group. */
  admitted(): Promise<void> | undefined {
    return this.held?.promise;
  }

  /**
   * Switchover, step one: hold new I/O, let what is in flight complete and reach the secondary
   * (the mirror applied everything sent). Returns whether it drained within timeoutMs, and the
   * release of the held I/O (which then meets whatever role the group has by then).
   */
  async drain(timeoutMs: number): Promise<{ drained: boolean; release: () => void }> {
    let release!: () => void;
    const promise = new Promise<void>((r) => { release = r; });
    const hold = { promise, release: () => { if (this.held === hold) this.held = undefined; release(); } };
    this.held = hold;
    const until = performance.now() + timeoutMs;
    for (;;) {
      const m = this.mode;
      const w = m.kind === 'primary' ? m.session?.status().window : undefined;
      const mirrored = !w || w.appliedSeq >= w.nextSeq - 1;
      if (this.inflight === 0 && mirrored) return { drained: true, release: hold.release };
      if (performance.now() > until) return { drained: false, release: hold.release };
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  epoch(): number {
    return this.ctx.runtime.epoch(this.name);
  }

  /**
   * Stepped down after a failover: every region this site wrote that the peer never confirmed
   * durable (the dirty map) goes aside, one file per volume: a JSON header line with the regions,
   * then their data in that order. Nothing is discarded silently.
   */
  async saveDivergentWrites(epoch: number, dataDir: string): Promise<DivergentRecord[]> {
    const saved: DivergentRecord[] = [];
    for (const v of this.ctx.volumes) {
      const runs = v.dirty.dirtyBitmap().runs();
      if (runs.length === 0) continue;
      const dir = path.join(dataDir, 'divergent', this.name);
      await fs.mkdir(dir, { recursive: true });
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const file = path.join(dir, `${v.open.volume.name}.epoch-${epoch}.${stamp}.div`);
      const regions = runs.map(([first, count]) => {
        const offsetBytes = first * v.regionSizeBytes;
        return { offsetBytes, lengthBytes: Math.min(count * v.regionSizeBytes, v.sizeBytes - offsetBytes) };
      });
      const header = { format: 'metrocluster-divergent-v1', group: this.name, volume: v.open.volume.name, lun: v.open.volume.lun, replacedInEpoch: epoch, regions };
      const fh = await fs.open(file, 'wx', 0o600);
      let bytes = 0;
      try {
        await fh.write(JSON.stringify(header) + '\n');
        for (const r of regions) {
          for (let at = 0; at < r.lengthBytes; at += divergentChunkBytesMax) {
            const data = await v.open.device.read(r.offsetBytes + at, Math.min(divergentChunkBytesMax, r.lengthBytes - at));
            await fh.write(data);
            bytes += data.length;
          }
        }
        await fh.datasync();
      } finally {
        await fh.close();
      }
      saved.push({ group: this.name, volume: v.open.volume.name, epoch, file, regions: regions.length, bytes, savedAt: new Date().toISOString() });
      this.ctx.log.warn('divergent writes saved aside', { group: this.name, volume: v.open.volume.name, file, regions: regions.length, bytes });
    }
    return saved;
  }

  close(): void {
    this.stop();
    this.mode = { kind: 'none' };
  }

  private stop(): void {
    const m = this.mode;
    // Whatever was in flight under the old role is never acknowledged.
    this.fence.reject(new AccessUnavailable(this.name, true));
    this.fence = new Fence();
    if (m.kind === 'primary' && m.session) {
      this.ctx.sessions.delete(this.name);
      m.session.close();
    }
    if (m.kind === 'secondary') m.link?.close();
  }

  /** Dirty-map rewrites while no session runs here, one at a time (a map file takes one persist at once). */
  private idleMapWork<T>(work: () => Promise<T>): Promise<T> {
    const run = this.idleMapChain.then(work);
    this.idleMapChain = run.then(() => undefined, () => undefined);
    return run;
  }

  private idleMapChain: Promise<void> = Promise.resolve();

  private startSession(view: RoleView): MirrorSession | undefined {
    const { topology: t, site, group: g, runtime } = this.ctx;
    if (!this.ctx.mirroring) return undefined;
    const r = g.replication;
    const name = this.name;
    // The primary's copy is the group's data by definition; kept should this site become secondary.
    if (!this.ctx.meta.read().groups[name]?.copy) {
      void this.ctx.meta.update((m) => { m.groups[name] = { ...m.groups[name], copy: { hasData: true, consistent: true, since: new Date().toISOString() } }; });
    }
    // This session is still the group's (a closed one acknowledges nothing more).
    const current = (): boolean => this.mode.kind === 'primary' && this.mode.session === session;
    const session = new MirrorSession({
      cluster: t.name, group: name, site: site.name, epoch: view.epoch, volumes: this.ctx.volumes,
      policy: ackPolicyOf(r),
      resyncRateBytesPerSec: r.resyncMbps * 125_000,
      stateSnapshot: () => this.ctx.hostState()?.snapshot() ?? [],
      // The witness's view decides: local completions only once it holds the secondary outdated.
      secondaryRecord: view.gate === 'local' ? 'outdated' : 'up-to-date',
      recorder: {
        markOutdated: async () => {
          // Until the witness holds it outdated (or this session is over: nothing more is acknowledged).
          while (current() && !(await runtime.markOutdated(name, null, 2000))) {
            if (runtime.epoch(name) !== view.epoch) return;
          }
        },
        markUpToDate: async () => { runtime.mirror(name, true, null); },
      },
      log: this.ctx.log.child({ part: 'mirror', group: name }),
    });
    if (!view.peerAlive) session.declarePeerDown();
    this.ctx.sessions.set(name, session);
    return session;
  }

  /**
   * A host-visible state change of the group's target (persistent reservations): into the mirror
   * stream while this site is the primary with a session, resolving as a write would; else at once.
   */
  recordState(volume: number, kind: string, payload: Buffer): Promise<void> {
    const m = this.mode;
    return m.kind === 'primary' && m.session ? m.session.recordState(volume, kind, payload) : Promise.resolve();
  }

  /** The secondary's link to the primary, for status (undefined at a primary). */
  linkStatus(): ReturnType<ApplierLink['status']> | undefined {
    return this.mode.kind === 'secondary' ? this.mode.link?.status() : undefined;
  }

  private startApplier(view: RoleView): ApplierLink | undefined {
    const { topology: t, site, group: g, runtime, peerAgent, meta } = this.ctx;
    if (!this.ctx.mirroring || !peerAgent) return undefined;
    const name = this.name;
    return startApplierLink({
      cluster: t.name, group: name, site: site.name, epoch: view.epoch,
      devices: this.applierDevices, regionSizeBytes: this.ctx.volumes[0]?.regionSizeBytes ?? regionSizeBytes,
      address: peerAgent.address, port: peerAgent.port,
      peer: { kind: 'agent', cluster: t.name, site: this.ctx.peer!.name }, log: this.ctx.log.child({ part: 'mirror', group: g.name }),
      // Epochs come from arbitration: a primary's newer epoch is followed once the role machine has it.
      adoptEpoch: async (epoch) => {
        if (runtime.epoch(name) < epoch) throw new Error(`epoch ${epoch} not yet adopted by the role machine (at ${runtime.epoch(name)})`);
      },
      copy: () => ({ hasData: meta.read().groups[name]?.copy?.hasData ?? false, consistent: meta.read().groups[name]?.copy?.consistent ?? true }),
      recordCopy: async (c) => {
        await meta.update((m) => { m.groups[name] = { ...m.groups[name], copy: { ...c, since: new Date().toISOString() } }; });
        // Resynced: regions this site wrote as a primary now hold the primary's data. The map is
        // rewritten clean through its open file (removing the file would leave that handle
        // appending to an unlinked file once this site is primary again).
        if (c.consistent) await this.idleMapWork(() => Promise.all(this.ctx.volumes.map((v) => forgetOwnDirtyRegions(v, performance.now()))));
      },
      ownDirty: async (index) => {
        const v = this.ctx.volumes[index];
        return v ? ownDirtyRegions(dirtyMapPath(site, name, v.open.volume.name), v.sizeBytes, v.regionSizeBytes) : undefined;
      },
      hostState: {
        check: (kind, volume, payload) => {
          const owner = this.ctx.hostState();
          return owner ? owner.check(kind, volume, payload) : `group ${name} has no target here yet`;
        },
        adopt: (kind, volume, payload) => this.ctx.hostState()?.adopt(kind, volume, payload) ?? Promise.resolve(),
      },
    });
  }
}

/**
 * Rejects the I/O in flight when the group is fenced. Each I/O subscribes and unsubscribes when it
 * ends: racing every I/O against one long-lived pending promise would keep every I/O's result (read
 * buffers included) reachable from that promise's reactions until the next fence.
 */
class Fence {
  private fenced: Error | undefined;
  private readonly listeners = new Set<(e: Error) => void>();

  reject(e: Error): void {
    this.fenced = e;
    for (const l of this.listeners) l(e);
    this.listeners.clear();
  }

  /** `running`'s outcome, or the fence's error if the group is fenced first. */
  race<T>(running: Promise<T>): Promise<T> {
    if (this.fenced) return Promise.reject(this.fenced);
    return new Promise<T>((resolve, reject) => {
      this.listeners.add(reject);
      running.then(
        (v) => { this.listeners.delete(reject); resolve(v); },
        (e: unknown) => { this.listeners.delete(reject); reject(e); },
      );
    });
  }
}

/** A LUN's device: executes only while the group's gate is open, through the mirror when there is one. */
export class RoleGatedDevice implements BlockDevice {
  readonly blockSizeBytes: number;

  constructor(private readonly path: GroupDataPath, private readonly local: BlockDevice, private readonly index: number) {
    this.blockSizeBytes = local.blockSizeBytes;
  }

  get sizeBytes(): number {
    return this.local.sizeBytes;
  }

  /** A topology apply grows or cuts the volume: the file and, where the mirror runs, its dirty map. */
  resize(sizeBytes: number): Promise<void> {
    return this.path.resize(this.index, this.local, sizeBytes);
  }

  private async gated<T>(work: (t: ReturnType<GroupDataPath['target']>) => Promise<T>): Promise<T> {
    const held = this.path.admitted();
    if (held) await held;
    const epoch = this.path.epoch();
    const t = this.path.target(this.index);
    this.path.inflight++;
    try {
      const running = work(t);
      running.catch(() => undefined);
      const result = await t.fence.race(running);
      if (!this.path.confirmedNow(epoch)) await this.path.confirm(epoch);
      return result;
    } finally {
      this.path.inflight--;
    }
  }

  read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.gated((t) => t.device.read(offsetBytes, lengthBytes));
  }

  readPooled(offsetBytes: number, lengthBytes: number): Promise<PooledBuffer> {
    return this.gated((t) => readPooled(t.device, offsetBytes, lengthBytes));
  }

  write(offsetBytes: number, data: Buffer, opts?: { fua?: boolean }): Promise<void> {
    return this.gated((t) => t.session
      ? t.session.write(this.index, t.device, offsetBytes, data, opts?.fua ?? false)
      : t.device.write(offsetBytes, data, opts));
  }

  /** Data-Out as received, in pieces: stored through pwritev(2) without a joined copy where nothing
   *  mirrors; a mirror entry carries one buffer, so a mirrored write joins them once. */
  writev(offsetBytes: number, parts: readonly Buffer[], opts?: { fua?: boolean }): Promise<void> {
    return this.gated((t) => {
      if (!t.session && t.device.writev) return t.device.writev(offsetBytes, parts, opts);
      const data = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      return t.session ? t.session.write(this.index, t.device, offsetBytes, data, opts?.fua ?? false) : t.device.write(offsetBytes, data, opts);
    });
  }

  flush(): Promise<void> {
    return this.gated((t) => t.session ? t.session.flush(this.index, t.device) : t.device.flush());
  }

  deallocate(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.gated((t) => {
      if (t.session) return t.session.deallocate(this.index, t.device, offsetBytes, lengthBytes);
      return t.device.deallocate ? t.device.deallocate(offsetBytes, lengthBytes) : t.device.write(offsetBytes, Buffer.alloc(lengthBytes));
    });
  }

  close(): Promise<void> {
    return this.local.close();
  }
}
