// The opcode table (tgt's device-template idea): opcode and service action -> handler, plus the
// CDB usage data and timeouts REPORT SUPPORTED OPERATION CODES lists. Command sets (SPC shared,
// SBC for disks) are arrays of CommandSpec; a device type is the table built from its sets.
import { assert } from '../../common/assert.ts';
import type { BlockDevice } from '../storage/block-device.ts';
import type { LunReservations } from './access-check.ts';
import type { PortGroup } from './alua.ts';
import type { PrOutResult } from './persistent-reservations.ts';
import type { AdditionalSense } from './sense.ts';
import type { TaskSet } from './task-set.ts';
import type { VolumeIdentity } from './identity.ts';
import type { Nexus, ScsiRequest, ScsiResponse } from './types.ts';

/** One logical unit as the handlers see it. Sizes in blocks are derived once at creation. */
export interface LogicalUnit {
  readonly lun: number;
  readonly device: BlockDevice;
  readonly identity: VolumeIdentity;
  readonly blockSizeBytes: number;
  readonly blockCount: number;
  /** Block Limits VPD MAXIMUM TRANSFER LENGTH, enforced on READ/WRITE/VERIFY. */
  readonly transferMaxBlocks: number;
  /** Block Limits VPD OPTIMAL TRANSFER LENGTH GRANULARITY. */
  readonly granularityBlocks: number;
  readonly taskSet: TaskSet;
  /** Reservations held on this logical unit; access-check.ts decides what they forbid. */
  readonly reservations: LunReservations;
}

export interface TargetPort {
  readonly relativeTargetPortId: number;
  readonly targetPortGroupId: number;
  /** SCSI name string of the target port, e.g. `${iqn},t,0x0001`. */
  readonly targetPortName: string;
}

/** What handlers may know about the target around them. */
export interface TargetContext {
  readonly iqn: string;
  /** The target port this site's portal is. */
  readonly port: TargetPort;
  /** The target port a nexus came in through: this site's, or the port of the site that forwarded it. */
  portOf(nexus: Nexus): TargetPort;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
  readonly commands: CommandTable;
  lunNumbers(): readonly number[];
  /** Removes and returns the oldest unit attention pending for this nexus and LUN. */
  takeUnitAttention(nexusId: string, lun: number): AdditionalSense | undefined;
  /** Port groups of the logical units with their ALUA states (SPC-4 5.15). */
  portGroups(): readonly PortGroup[];
  /** Persistent reservation registrations a LUN keeps at most. */
  readonly registrationsMax: number;
  /** Persists (APTPL), commits and acts on a PERSISTENT RESERVE OUT that changed the state. */
  applyReservation(lu: LogicalUnit, req: ScsiRequest, result: PrOutResult): Promise<void>;
}

export type Handler<L> = (req: ScsiRequest, lu: L, target: TargetContext) => ScsiResponse | Promise<ScsiResponse>;

interface SpecBase {
  readonly opcode: number;
  /** Present for opcodes whose service action is in CDB byte 1 bits 4-0. */
  readonly serviceAction?: number;
  readonly name: string;
  /** CDB usage data (SPC-4 6.35.3): byte 0 the opcode, one mask per CDB byte; its length is the CDB length. */
  readonly usage: Uint8Array;
  /** Reported and executed while a unit attention is pending (SPC-4 5.14: INQUIRY, REPORT LUNS, REQUEST SENSE). */
  readonly skipsUnitAttention?: boolean;
  /** Nominal and recommended timeouts in seconds for the RCTD timeouts descriptor (0 = not specified). */
  readonly timeoutSeconds?: { nominal: number; recommended: number };
  /** How a failed device call is reported: MEDIUM ERROR with this code; otherwise HARDWARE ERROR. */
  readonly mediumError?: AdditionalSense;
  /** Runs alone on the logical unit, after every earlier command and before any later one
   *  (COMPARE AND WRITE, ORWRITE: SBC-4 5.3 atomicity), as an ORDERED task would. */
  readonly exclusive?: boolean;
}

export type CommandSpec =
  | (SpecBase & { readonly onMissingLun?: false; readonly handler: Handler<LogicalUnit> })
  /** Runs on a LUN that does not exist too (INQUIRY, REPORT LUNS, REQUEST SENSE; SPC-4 4.6). */
  | (SpecBase & { readonly onMissingLun: true; readonly handler: Handler<LogicalUnit | undefined> });

type Slot = { readonly kind: 'single'; readonly spec: CommandSpec } | { readonly kind: 'actions'; readonly byAction: Map<number, CommandSpec> };

/** Why a CDB has no command: the opcode is unknown, or the opcode is known but not the service action. */
export type LookupMiss = 'no-opcode' | 'no-service-action';

export class CommandTable {
  private readonly slots: Array<Slot | undefined> = new Array(256).fill(undefined);
  /** Every command, sorted by opcode then service action (the order RSOC reports them in). */
  readonly all: readonly CommandSpec[];

  constructor(specs: readonly CommandSpec[]) {
    for (const spec of specs) {
      assert(spec.usage[0] === spec.opcode, `${spec.name}: usage data must start with the opcode`);
      const slot = this.slots[spec.opcode];
      if (spec.serviceAction === undefined) {
        assert(slot === undefined, `${spec.name}: opcode 0x${spec.opcode.toString(16)} defined twice`);
        this.slots[spec.opcode] = { kind: 'single', spec };
      } else {
        assert(slot === undefined || slot.kind === 'actions', `${spec.name}: opcode mixes service actions and none`);
        const byAction = slot?.kind === 'actions' ? slot.byAction : new Map<number, CommandSpec>();
        assert(!byAction.has(spec.serviceAction), `${spec.name}: service action defined twice`);
        byAction.set(spec.serviceAction, spec);
        this.slots[spec.opcode] = { kind: 'actions', byAction };
      }
    }
    this.all = [...specs].sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));
  }

  /** Hot path: no allocation. */
  lookup(cdb: Buffer): CommandSpec | LookupMiss {
    const slot = this.slots[cdb[0]];
    if (slot === undefined) return 'no-opcode';
    if (slot.kind === 'single') return slot.spec;
    return slot.byAction.get(cdb[1] & 0x1f) ?? 'no-service-action';
  }

  /** For REPORT SUPPORTED OPERATION CODES with one requested command. */
  find(opcode: number, serviceAction: number | undefined): CommandSpec | undefined {
    const slot = this.slots[opcode];
    if (slot === undefined) return undefined;
    if (slot.kind === 'single') return slot.spec;
    return serviceAction === undefined ? undefined : slot.byAction.get(serviceAction);
  }

  hasServiceActions(opcode: number): boolean {
    return this.slots[opcode]?.kind === 'actions';
  }
}
