// createScsiTarget: one group's SCSI target device, a disk per LUN over a BlockDevice. Executes
// commands through the opcode table with SAM-5 ordering of checks (missing LUN, unit attention,
// opcode, CDB fields, access), per-LUN task sets, per-nexus unit attentions, task management
// across nexuses (TAS 1: another nexus's aborted task ends with TASK ABORTED), persistent
// reservations kept through a ReservationStore, and the ALUA state of the local port group.
import { AssertionFailed, assert } from '../../common/assert.ts';
import { AccessUnavailable, type BlockDevice } from '../storage/block-device.ts';
import { LunReservations, accessConflict, prNexusOf } from './access-check.ts';
import { ActiveTasks, type ActiveTask } from './active-tasks.ts';
import type { AluaProvider, AluaState, PortGroup } from './alua.ts';
import { findUnsupportedCdbBit } from './cdb.ts';
import { CommandTable, type CommandSpec, type LogicalUnit, type TargetContext, type TargetPort } from './command-table.ts';
import type { VolumeIdentity } from './identity.ts';
import { assertPrState, emptyPrState, type AttentionTarget, type PrOutResult, type PrState } from './persistent-reservations.ts';
import { prCommands } from './pr-commands.ts';
import type { ReservationStore } from './reservation-store.ts';
import { reserveReleaseCommands } from './reserve-release.ts';
import { compareAndWriteCommands } from './compare-and-write.ts';
import { sbcCommands } from './sbc-commands.ts';
import { sbcExtraCommands } from './sbc-extra-commands.ts';
import { thinProvisioningCommands } from './thin-provisioning.ts';
import { Asc, SenseKey, checkCondition, type AdditionalSense } from './sense.ts';
import { spcCommands } from './spc-commands.ts';
import { TaskSet } from './task-set.ts';
import {
  ScsiStatus,
  type Nexus,
  type ScsiRequest,
  type ScsiResponse,
  type ScsiTarget,
  type TaskManagementFunction,
  type TaskManagementResult,
} from './types.ts';
import { UnitAttentions } from './unit-attention.ts';

export interface ScsiTargetOptions {
  readonly iqn: string;
  readonly luns: ReadonlyArray<{ lun: number; device: BlockDevice; identity: VolumeIdentity }>;
  readonly port: TargetPort;
  /** The target ports of the other sites, whose portals forward their commands here (a nexus's
   *  portal group tag names its port); INQUIRY and ALUA checks answer for the nexus's port. */
  readonly remotePorts?: readonly TargetPort[];
  readonly vendor?: string;
  readonly product?: string;
  readonly revision?: string;
  /** Largest READ/WRITE/VERIFY transfer (Block Limits VPD); 8 MiB unless given. */
  readonly transferMaxBytes?: number;
  /** Unit attentions kept per nexus per LUN; 16 unless given. */
  readonly unitAttentionQueueMax?: number;
  /** Port groups and their ALUA states; without it, one active/optimized group of this port. */
  readonly alua?: AluaProvider;
  /** Where persistent reservations are kept across restarts (APTPL); without it, they are not. */
  readonly reservationStore?: ReservationStore;
  /** Persistent reservation registrations per LUN; 64 unless given. */
  readonly registrationsMax?: number;
  /** Where host-visible state goes before the command that changed it completes (the group's mirror). */
  readonly stateMirror?: StateMirror;
}

/**
 * Host-visible state the peer site must hold so that a promoted secondary answers as this target
 * did (DESIGN.md "Data path"): the complete persistent reservation state of a LUN after each change.
 */
export interface StateMirror {
  /** Resolves once the peer holds the LUN's new state as the group's acknowledgement policy requires. */
  reservations(lun: number, state: PrState): Promise<void>;
}

/** The key a LUN's persistent reservation state is stored under. */
export function reservationKey(iqn: string, lun: number): string {
  return `${iqn}/${lun}`;
}

/** The command set of a direct access block device: SPC shared commands plus SBC. */
export const diskCommandTable = new CommandTable([...spcCommands, ...sbcCommands, ...sbcExtraCommands, ...compareAndWriteCommands, ...thinProvisioningCommands, ...reserveReleaseCommands, ...prCommands]);

const transferMaxBytesDefault = 8 * 1024 * 1024;
const granularityBytes = 4096;
const lunMax = 16383; // flat space addressing (SAM-5 4.7.7.4)

/** A target's logical unit inventory changed online (a topology apply); hosts learn it by unit attentions. */
export interface LunInventory {
  /** Every LUN's persistent reservation state (for a newly attached secondary). */
  reservationStates(): Array<{ lun: number; state: PrState }>;
  /** The state the primary holds for a LUN, adopted at this site (a secondary): commands after a promotion see it. */
  adoptReservations(lun: number, state: PrState): Promise<void>;
  /** Serves a new LUN; every nexus sees REPORTED LUNS DATA HAS CHANGED on the LUNs it had (SPC-4 5.14). */
  addLun(unit: { lun: number; device: BlockDevice; identity: VolumeIdentity }): void;
  /**
   * The LUN's capacity becomes its device's size, ordered after every task before it and ahead of
   * every later one; every nexus sees CAPACITY DATA HAS CHANGED (SBC-4 4.6). A shrink happens
   * at this level first (the device keeps its size until nothing can reach the tail).
   */
  resizeLun(lun: number, sizeBytes: number): Promise<void>;
  /** Stops serving a LUN once its running tasks finished; the others see REPORTED LUNS DATA HAS CHANGED. */
  removeLun(lun: number): Promise<void>;
}

export function createScsiTarget(opts: ScsiTargetOptions): ScsiTarget & LunInventory {
  return new DiskTarget(opts);
}

class DiskTarget implements ScsiTarget, TargetContext, LunInventory {
  readonly iqn: string;
  readonly port: TargetPort;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly commands = diskCommandTable;
  private readonly units = new Map<number, LogicalUnit>();
  private lunList: readonly number[];
  private readonly transferMaxBytes: number;
  private readonly attentions: UnitAttentions;
  private readonly active = new Map<number, ActiveTasks>();
  /** Open nexuses by id, to find those a unit attention or an abort is meant for. */
  private readonly nexuses = new Map<string, Nexus>();
  private readonly alua: AluaProvider;
  /** Target ports by relative target port identifier (= portal group tag): this site's and the others'. */
  private readonly ports = new Map<number, TargetPort>();
  /** The ALUA state of each relative target port's group, read on every command. */
  private aluaByPort = new Map<number, AluaState>();
  /** The local port group's state: for a nexus whose port is in no group. */
  private aluaLocal: AluaState = 'active-optimized';
  private readonly store: ReservationStore | undefined;
  private readonly stateMirror: StateMirror | undefined;
  readonly registrationsMax: number;

  constructor(opts: ScsiTargetOptions) {
    this.iqn = opts.iqn;
    this.port = opts.port;
    this.vendor = opts.vendor ?? 'METRO';
    this.product = opts.product ?? 'metrocluster';
    this.revision = opts.revision ?? '0001';
    this.attentions = new UnitAttentions(opts.unitAttentionQueueMax ?? 16);
    this.transferMaxBytes = opts.transferMaxBytes ?? transferMaxBytesDefault;
    for (const unit of opts.luns) this.newUnit(unit);
    this.lunList = [...this.units.keys()].sort((a, b) => a - b);
    this.registrationsMax = opts.registrationsMax ?? 64;
    this.store = opts.reservationStore;
    this.stateMirror = opts.stateMirror;
    this.loadReservations();
    const port = opts.port;
    this.alua = opts.alua ?? {
      portGroups: () => [{ id: port.targetPortGroupId, state: 'active-optimized', relativeTargetPortIds: [port.relativeTargetPortId] }],
    };
    this.ports.set(port.relativeTargetPortId, port);
    for (const p of opts.remotePorts ?? []) {
      assert(!this.ports.has(p.relativeTargetPortId), `relative target port ${p.relativeTargetPortId} listed twice`);
      this.ports.set(p.relativeTargetPortId, p);
    }
    this.readAluaStates();
    this.alua.subscribe?.(() => this.aluaChanged());
  }

  portOf(nexus: Nexus): TargetPort {
    return this.ports.get(nexus.portalGroupTag) ?? this.port;
  }

  /** The ALUA state of the port group a nexus came in through (SPC-4 5.15.2.4: per target port). */
  private aluaOf(nexus: Nexus): AluaState {
    return this.aluaByPort.get(nexus.portalGroupTag) ?? this.aluaLocal;
  }

  private readAluaStates(): void {
    const byPort = new Map<number, AluaState>();
    for (const g of this.alua.portGroups()) for (const rtpi of g.relativeTargetPortIds) byPort.set(rtpi, g.state);
    const own = byPort.get(this.port.relativeTargetPortId);
    assert(own !== undefined, `no ALUA port group holds relative target port ${this.port.relativeTargetPortId}`);
    this.aluaLocal = own;
    this.aluaByPort = byPort;
  }

  private newUnit({ lun, device, identity }: { lun: number; device: BlockDevice; identity: VolumeIdentity }): LogicalUnit {
    assert(Number.isInteger(lun) && lun >= 0 && lun <= lunMax, `LUN ${lun} outside 0..${lunMax}`);
    assert(!this.units.has(lun), `LUN ${lun} listed twice`);
    const blockSizeBytes = device.blockSizeBytes;
    assert(device.sizeBytes % blockSizeBytes === 0, `LUN ${lun}: size is not a whole number of blocks`);
    const lu: LogicalUnit = {
      lun,
      device,
      identity,
      blockSizeBytes,
      blockCount: device.sizeBytes / blockSizeBytes,
      transferMaxBlocks: Math.max(1, Math.floor(this.transferMaxBytes / blockSizeBytes)),
      granularityBlocks: Math.max(1, granularityBytes / blockSizeBytes),
      taskSet: new TaskSet(),
      reservations: new LunReservations(),
    };
    this.units.set(lun, lu);
    this.active.set(lun, new ActiveTasks());
    return lu;
  }

  addLun(unit: { lun: number; device: BlockDevice; identity: VolumeIdentity }): void {
    const had = this.lunList;
    const lu = this.newUnit(unit);
    this.lunList = [...this.units.keys()].sort((a, b) => a - b);
    this.loadReservationsOf(lu);
    for (const l of had) this.attentions.establish(l, Asc.ReportedLunsDataHasChanged);
  }

  async resizeLun(lun: number, sizeBytes: number): Promise<void> {
    const lu = this.units.get(lun);
    assert(lu !== undefined, `resize of LUN ${lun}, which the target does not serve`);
    assert(sizeBytes % lu.blockSizeBytes === 0 && sizeBytes > 0, `LUN ${lun}: size ${sizeBytes} is not a whole number of blocks`);
    assert(sizeBytes <= lu.device.sizeBytes, `LUN ${lun}: grow the device to ${sizeBytes} bytes before the LUN`);
    await lu.taskSet.run('ordered', async () => {
      (lu as { blockCount: number }).blockCount = sizeBytes / lu.blockSizeBytes;
    });
    this.attentions.establish(lun, Asc.CapacityDataHasChanged);
  }

  async removeLun(lun: number): Promise<void> {
    const lu = this.units.get(lun);
    if (!lu) return;
    this.units.delete(lun);
    this.lunList = [...this.units.keys()].sort((a, b) => a - b);
    // Commands already queued on it hold the unit: they run (or end) before this resolves.
    await lu.taskSet.run('ordered', async () => undefined);
    await lu.taskSet.drain();
    for (const l of this.lunList) this.attentions.establish(l, Asc.ReportedLunsDataHasChanged);
  }

  /** APTPL (SPC-4 5.13.5): reservations saved with APTPL set come back after a restart. */
  private loadReservations(): void {
    for (const lu of this.units.values()) this.loadReservationsOf(lu);
  }

  private loadReservationsOf(lu: LogicalUnit): void {
    const saved = this.store?.load(reservationKey(this.iqn, lu.lun));
    if (saved === undefined) return;
    const state = assertPrState(saved);
    lu.reservations.setPr(state.aptpl ? state : { ...emptyPrState, generation: state.generation });
  }

  /** Persisted first when APTPL is or was set (a restart must find it), then in effect. */
  private async commitPr(lu: LogicalUnit, state: PrState): Promise<void> {
    if (this.store && (state.aptpl || lu.reservations.pr.aptpl)) await this.store.save(reservationKey(this.iqn, lu.lun), state);
    lu.reservations.setPr(state);
  }

  portGroups(): readonly PortGroup[] {
    return this.alua.portGroups();
  }

  /** SPC-4 5.15.2.? : any group's state change is ASYMMETRIC ACCESS STATE CHANGED for every nexus. */
  private aluaChanged(): void {
    this.readAluaStates();
    for (const lun of this.lunList) this.attentions.establish(lun, Asc.AsymmetricAccessStateChanged);
  }

  /**
   * A PERSISTENT RESERVE OUT changed the state: persist it (before the command completes, when
   * APTPL is or was set), commit it, then establish its unit attentions and abort what it preempted.
   */
  async applyReservation(lu: LogicalUnit, req: ScsiRequest, result: PrOutResult): Promise<void> {
    await this.commitPr(lu, result.state);
    // Entered in the mirror in the same turn as the commit: every write admitted after it follows it
    // in the stream too. The command completes once the peer holds it (after the attentions below).
    const mirrored = this.stateMirror?.reservations(lu.lun, result.state);
    for (const a of result.attentions) {
      this.attentions.establish(lu.lun, a.code, (nexusId) => this.reaches(a, nexusId, req.nexus.id));
    }
    if (result.abort.length > 0) {
      // PREEMPT AND ABORT runs alone on the LUN (exclusive): nothing else is running, and the
      // preempted nexuses' queued tasks will end with TASK ABORTED instead of starting.
      this.active.get(lu.lun)!.abort((t) => t.nexusId !== req.nexus.id && result.abort.some((r) => this.reaches({ ...r, code: Asc.NoAdditionalSense }, t.nexusId, undefined)));
    }
    await mirrored;
  }

  reservationStates(): Array<{ lun: number; state: PrState }> {
    return this.lunList.map((lun) => ({ lun, state: this.units.get(lun)!.reservations.pr }));
  }

  async adoptReservations(lun: number, state: PrState): Promise<void> {
    const lu = this.units.get(lun);
    assert(lu !== undefined, `reservations for LUN ${lun}, which the target does not serve`);
    // Kept as this site would keep its own (APTPL): a restart of a promoted site finds them.
    await this.commitPr(lu, state);
  }

  /** Whether an attention or abort aimed at a registration reaches this open nexus. */
  private reaches(a: Omit<AttentionTarget, 'code'> & { code?: unknown }, nexusId: string, except: string | undefined): boolean {
    if (nexusId === except) return false;
    const n = this.nexuses.get(nexusId);
    if (!n) return false;
    const p = prNexusOf(n);
    return p.initiatorPort === a.initiatorPort && (a.allTargetPorts || p.relativeTargetPortId === a.relativeTargetPortId);
  }

  luns(): number[] {
    return [...this.lunList];
  }

  lunNumbers(): readonly number[] {
    return this.lunList;
  }

  takeUnitAttention(nexusId: string, lun: number): AdditionalSense | undefined {
    return this.attentions.take(nexusId, lun);
  }

  nexusOpened(nexus: Nexus): void {
    // SAM-5 6.3.1: a new I_T nexus sees the logical units as just powered on.
    this.attentions.openNexus(nexus.id, this.lunList, Asc.PowerOnResetOccurred);
    this.nexuses.set(nexus.id, nexus);
  }

  nexusClosed(nexus: Nexus): void {
    this.attentions.closeNexus(nexus.id);
    this.nexuses.delete(nexus.id);
    for (const lu of this.units.values()) lu.reservations.nexusLost(nexus.id);
  }

  execute(req: ScsiRequest): Promise<ScsiResponse> {
    const nexusId = req.nexus.id;
    if (!this.attentions.knows(nexusId)) this.nexusOpened(req.nexus);
    const lu = this.units.get(req.lun);
    const spec = this.commands.lookup(req.cdb);
    if (typeof spec === 'string') {
      if (!lu) return Promise.resolve(lunNotSupported());
      const ua = this.attentions.take(nexusId, lu.lun);
      if (ua) return Promise.resolve(unitAttention(ua));
      return Promise.resolve(
        spec === 'no-opcode'
          ? checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InvalidCommandOperationCode })
          : checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InvalidFieldInCdb, fieldPointer: { inCdb: true, byte: 1, bit: 4 } }),
      );
    }
    if (!lu) {
      if (!spec.onMissingLun) return Promise.resolve(lunNotSupported());
      return this.runOnMissingLun(spec, req);
    }
    if (!spec.skipsUnitAttention) {
      const ua = this.attentions.take(nexusId, lu.lun);
      if (ua) return Promise.resolve(unitAttention(ua));
    }
    const bad = findUnsupportedCdbBit(req.cdb, spec.usage);
    if (bad) return Promise.resolve(checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InvalidFieldInCdb, fieldPointer: bad }));
    const alua = this.aluaOf(req.nexus);
    if (lu.reservations.held || alua !== 'active-optimized') {
      const conflict = accessConflict(spec, req, lu, alua);
      if (conflict) return Promise.resolve(conflict);
    }
    const active = this.active.get(lu.lun)!;
    const task = active.add(nexusId);
    const done = lu.taskSet.run(spec.exclusive ? 'ordered' : req.attribute, () => this.run(spec, req, lu, task, active));
    task.done = done;
    return done;
  }

  private async runOnMissingLun(spec: CommandSpec & { onMissingLun: true }, req: ScsiRequest): Promise<ScsiResponse> {
    const bad = findUnsupportedCdbBit(req.cdb, spec.usage);
    if (bad) return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InvalidFieldInCdb, fieldPointer: bad });
    return spec.handler(req, undefined, this);
  }

  private async run(spec: CommandSpec, req: ScsiRequest, lu: LogicalUnit, task: ActiveTask, active: ActiveTasks): Promise<ScsiResponse> {
    try {
      // Aborted while waiting behind an ORDERED task: never start it. The transport drops the
      // answer for its own aborts; another nexus's TMF ends it with TASK ABORTED (TAS 1).
      if (task.aborted || req.signal?.aborted) return taskAborted;
      const response = await spec.handler(req, lu, this);
      return task.aborted ? taskAborted : response;
    } catch (err) {
      return deviceFailure(spec, err);
    } finally {
      active.remove(task);
    }
  }

  async taskManagement(req: { fn: TaskManagementFunction; nexus: Nexus; lun: number }): Promise<TaskManagementResult> {
    switch (req.fn) {
      case 'abort-task':
      case 'abort-task-set': {
        const lu = this.units.get(req.lun);
        if (!lu) return 'lun-does-not-exist';
        // The transport has aborted its own tasks (SAM-5 7.2, 7.3: this nexus's only); what already
        // reached the device finishes first, so no write is half-applied once this completes.
        await this.active.get(lu.lun)!.settled((t) => t.nexusId === req.nexus.id);
        return 'function-complete';
      }
      case 'clear-task-set': {
        const lu = this.units.get(req.lun);
        if (!lu) return 'lun-does-not-exist';
        await this.abortAll(lu);
        return 'function-complete';
      }
      case 'logical-unit-reset': {
        const lu = this.units.get(req.lun);
        if (!lu) return 'lun-does-not-exist';
        await this.abortAll(lu);
        lu.reservations.reset();
        // SAM-5 6.3.3: every I_T nexus, the requester's included, sees the reset (hosts expect it:
        // Linux sets expecting_cc_ua after its own resets; libiscsi's MultipathIO.Reset asserts it
        // on the resetting path too).
        this.attentions.establish(lu.lun, Asc.BusDeviceResetFunctionOccurred);
        return 'function-complete';
      }
      case 'target-warm-reset':
      case 'target-cold-reset': {
        await Promise.all([...this.units.values()].map((lu) => this.abortAll(lu)));
        for (const lu of this.units.values()) lu.reservations.reset();
        for (const lun of this.lunList) this.attentions.establish(lun, Asc.PowerOnResetOccurred);
        return 'function-complete';
      }
      case 'clear-aca':
        return 'function-not-supported'; // NACA is refused in every CDB, so there is never an ACA
      case 'task-reassign':
        return 'reassignment-not-supported';
    }
  }

  /** SAM-5 7.4, 7.6: every nexus's tasks on the LU are aborted; resolves once none is running. */
  private async abortAll(lu: LogicalUnit): Promise<void> {
    const active = this.active.get(lu.lun)!;
    active.abort(() => true);
    await active.settled(() => true);
    await lu.taskSet.drain();
  }
}

const taskAborted: ScsiResponse = Object.freeze({ status: ScsiStatus.TaskAborted });

function lunNotSupported(): ScsiResponse {
  return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.LogicalUnitNotSupported });
}

function unitAttention(code: AdditionalSense): ScsiResponse {
  return checkCondition({ key: SenseKey.UnitAttention, code });
}

/**
 * A device call failed: an operating-system error is reported to the host as sense data; anything
 * else is a bug and propagates.
 */
function deviceFailure(spec: CommandSpec, err: unknown): ScsiResponse {
  if (err instanceof AssertionFailed) throw err;
  if (err instanceof AccessUnavailable) {
    // Fenced or changing primary mid-command: nothing was acknowledged; the host retries another path.
    return checkCondition({ key: SenseKey.NotReady, code: err.transitioning ? Asc.LogicalUnitNotAccessibleTransitioning : Asc.LogicalUnitNotAccessibleUnavailable });
  }
  // System errors carry errno names (EIO, ENOSPC); Node's own ERR_* codes mean a misuse, a bug.
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) throw err;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    // A thin volume file could not grow (SBC-3 4.7.3.6).
    return checkCondition({ key: SenseKey.DataProtect, code: Asc.SpaceAllocationFailedWriteProtect });
  }
  if (spec.mediumError) return checkCondition({ key: SenseKey.MediumError, code: spec.mediumError });
  return checkCondition({ key: SenseKey.HardwareError, code: Asc.InternalTargetFailure });
}
