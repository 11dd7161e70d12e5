// createScsiTarget: one group's SCSI target device, a disk per LUN over a BlockDevice. Executes
// commands through the opcode table with SAM-5 ordering of checks (missing LUN, unit attention,
// opcode, CDB fields), per-LUN task sets, per-nexus unit attentions and task management.
import { AssertionFailed, assert } from '../../common/assert.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import { LunReservations, accessConflict } from './access-check.ts';
import { findUnsupportedCdbBit } from './cdb.ts';
import { CommandTable, type CommandSpec, type LogicalUnit, type TargetContext, type TargetPort } from './command-table.ts';
import type { VolumeIdentity } from './identity.ts';
import { reserveReleaseCommands } from './reserve-release.ts';
import { sbcCommands } from './sbc-commands.ts';
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
  readonly vendor?: string;
  readonly product?: string;
  readonly revision?: string;
  /** Largest READ/WRITE/VERIFY transfer (Block Limits VPD); 8 MiB unless given. */
  readonly transferMaxBytes?: number;
  /** Unit attentions kept per nexus per LUN; 16 unless given. */
  readonly unitAttentionQueueMax?: number;
}

/** The command set of a direct access block device: SPC shared commands plus SBC. */
export const diskCommandTable = new CommandTable([...spcCommands, ...sbcCommands, ...reserveReleaseCommands]);

const transferMaxBytesDefault = 8 * 1024 * 1024;
const granularityBytes = 4096;
const lunMax = 16383; // flat space addressing (SAM-5 4.7.7.4)

export function createScsiTarget(opts: ScsiTargetOptions): ScsiTarget {
  return new DiskTarget(opts);
}

class DiskTarget implements ScsiTarget, TargetContext {
  readonly iqn: string;
  readonly port: TargetPort;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly commands = diskCommandTable;
  private readonly units = new Map<number, LogicalUnit>();
  private readonly lunList: readonly number[];
  private readonly attentions: UnitAttentions;

  constructor(opts: ScsiTargetOptions) {
    this.iqn = opts.iqn;
    this.port = opts.port;
    this.vendor = opts.vendor ?? 'METRO';
    this.product = opts.product ?? 'metrocluster';
    this.revision = opts.revision ?? '0001';
    this.attentions = new UnitAttentions(opts.unitAttentionQueueMax ?? 16);
    const transferMaxBytes = opts.transferMaxBytes ?? transferMaxBytesDefault;
    for (const { lun, device, identity } of opts.luns) {
      assert(Number.isInteger(lun) && lun >= 0 && lun <= lunMax, `LUN ${lun} outside 0..${lunMax}`);
      assert(!this.units.has(lun), `LUN ${lun} listed twice`);
      const blockSizeBytes = device.blockSizeBytes;
      assert(device.sizeBytes % blockSizeBytes === 0, `LUN ${lun}: size is not a whole number of blocks`);
      this.units.set(lun, {
        lun,
        device,
        identity,
        blockSizeBytes,
        blockCount: device.sizeBytes / blockSizeBytes,
        transferMaxBlocks: Math.max(1, Math.floor(transferMaxBytes / blockSizeBytes)),
        granularityBlocks: Math.max(1, granularityBytes / blockSizeBytes),
        taskSet: new TaskSet(),
        reservations: new LunReservations(),
      });
    }
    this.lunList = [...this.units.keys()].sort((a, b) => a - b);
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
  }

  nexusClosed(nexus: Nexus): void {
    this.attentions.closeNexus(nexus.id);
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
    if (lu.reservations.held) {
      const conflict = accessConflict(spec, req, lu);
      if (conflict) return Promise.resolve(conflict);
    }
    return lu.taskSet.run(spec.exclusive ? 'ordered' : req.attribute, () => this.run(spec, req, lu));
  }

  private async runOnMissingLun(spec: CommandSpec & { onMissingLun: true }, req: ScsiRequest): Promise<ScsiResponse> {
    const bad = findUnsupportedCdbBit(req.cdb, spec.usage);
    if (bad) return checkCondition({ key: SenseKey.IllegalRequest, code: Asc.InvalidFieldInCdb, fieldPointer: bad });
    return spec.handler(req, undefined, this);
  }

  private async run(spec: CommandSpec, req: ScsiRequest, lu: LogicalUnit): Promise<ScsiResponse> {
    // Aborted while waiting behind an ORDERED task: never start it (the transport drops the answer).
    if (req.signal?.aborted) return taskAborted;
    try {
      return await spec.handler(req, lu, this);
    } catch (err) {
      return deviceFailure(spec, err);
    }
  }

  async taskManagement(req: { fn: TaskManagementFunction; nexus: Nexus; lun: number }): Promise<TaskManagementResult> {
    switch (req.fn) {
      case 'abort-task':
      case 'abort-task-set':
      case 'clear-task-set': {
        const lu = this.units.get(req.lun);
        if (!lu) return 'lun-does-not-exist';
        // The transport has aborted its tasks; what already reached the device finishes first,
        // so no aborted command completes after this function does.
        await lu.taskSet.drain();
        return 'function-complete';
      }
      case 'logical-unit-reset': {
        const lu = this.units.get(req.lun);
        if (!lu) return 'lun-does-not-exist';
        await lu.taskSet.drain();
        lu.reservations.reset();
        // SAM-5 6.3.3: every I_T nexus, the requester's included, sees the reset.
        this.attentions.establish(lu.lun, Asc.BusDeviceResetFunctionOccurred);
        return 'function-complete';
      }
      case 'target-warm-reset':
      case 'target-cold-reset': {
        await Promise.all([...this.units.values()].map((lu) => lu.taskSet.drain()));
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
