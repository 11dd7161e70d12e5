// Asymmetric logical unit access (SPC-4 5.15): the port groups of a target (one per site), their
// states, REPORT TARGET PORT GROUPS parameter data, and which commands each state of the local
// port group refuses. Implicit ALUA only (TPGS 01b): states change when the cluster says so.
import {
  Asc,
  SenseKey,
  checkCondition,
  type AdditionalSense,
} from './sense.ts';
import type { ScsiResponse } from './types.ts';

export type AluaState = 'active-optimized' | 'active-non-optimized' | 'standby' | 'unavailable' | 'transitioning';

export interface PortGroup {
  readonly id: number;
  readonly state: AluaState;
  readonly relativeTargetPortIds: readonly number[];
}

/** Where a target reads the port groups' states from; `subscribe` tells it they changed. */
export interface AluaProvider {
  portGroups(): readonly PortGroup[];
  subscribe?(onChange: () => void): void;
}

/** SPC-4 table 174: ASYMMETRIC ACCESS STATE codes. */
const stateCode: Readonly<Record<AluaState, number>> = {
  'active-optimized': 0x0,
  'active-non-optimized': 0x1,
  standby: 0x2,
  unavailable: 0x3,
  transitioning: 0xf,
};

/** T_SUP, U_SUP, S_SUP, AN_SUP, AO_SUP: every state this target can report. */
const supportedStates = 0x80 | 0x08 | 0x04 | 0x02 | 0x01;

/** Seconds a host should allow for an implicit transition (extended header, SPC-4 6.36). */
export const implicitTransitionS = 10;

/** REPORT TARGET PORT GROUPS parameter data (SPC-4 6.36), length-only or extended header. */
export function reportTargetPortGroups(groups: readonly PortGroup[], extended: boolean): Buffer {
  const descriptors = groups.map((g) => {
    const d = Buffer.alloc(8 + 4 * g.relativeTargetPortIds.length);
    d[0] = stateCode[g.state]; // PREF 0
    d[1] = supportedStates;
    d.writeUInt16BE(g.id, 2);
    d[5] = 0x02; // STATUS CODE: altered by an implicit transition (or never altered; hosts ignore it)
    d[7] = g.relativeTargetPortIds.length;
    g.relativeTargetPortIds.forEach((rtpi, i) => d.writeUInt16BE(rtpi, 8 + 4 * i + 2));
    return d;
  });
  const body = Buffer.concat(descriptors);
  const head = Buffer.alloc(extended ? 8 : 4);
  if (extended) {
    head[4] = 0x10; // FORMAT TYPE 001b
    head[5] = implicitTransitionS;
  }
  head.writeUInt32BE(head.length - 4 + body.length, 0);
  return Buffer.concat([head, body]);
}

/**
 * Opcodes served in each inaccessible state (SPC-4 5.15.2.4.4-5.15.2.4.6); every other command is
 * refused with NOT READY and the state's code. Active states serve everything.
 */
const servedInStandby = new Set([
  0x03, // REQUEST SENSE
  0x12, // INQUIRY
  0x15, 0x55, 0x1a, 0x5a, // MODE SELECT / MODE SENSE
  0x1c, 0x1d, // RECEIVE DIAGNOSTIC RESULTS, SEND DIAGNOSTIC
  0x3b, 0x3c, // WRITE BUFFER, READ BUFFER
  0x4c, 0x4d, // LOG SELECT, LOG SENSE
  0x5e, 0x5f, // PERSISTENT RESERVE IN / OUT
  0xa0, // REPORT LUNS
  0xa3, 0xa4, // MAINTENANCE IN (REPORT TARGET PORT GROUPS, ...) / OUT
]);
const servedInUnavailable = new Set([0x03, 0x12, 0x3b, 0x3c, 0xa0, 0xa3, 0xa4]);
const servedInTransitioning = new Set([0x03, 0x12, 0xa0, 0xa3]);

function notReady(code: AdditionalSense): ScsiResponse {
  return checkCondition({ key: SenseKey.NotReady, code });
}

const refusals = {
  standby: notReady(Asc.LogicalUnitNotAccessibleStandby),
  unavailable: notReady(Asc.LogicalUnitNotAccessibleUnavailable),
  transitioning: notReady(Asc.LogicalUnitNotAccessibleTransitioning),
} as const;

/** The refusal of a command by the local port group's state, or undefined when it may run. */
export function aluaRefusal(state: AluaState, opcode: number): ScsiResponse | undefined {
  switch (state) {
    case 'active-optimized':
    case 'active-non-optimized':
      return undefined;
    case 'standby':
      return servedInStandby.has(opcode) ? undefined : refusals.standby;
    case 'unavailable':
      return servedInUnavailable.has(opcode) ? undefined : refusals.unavailable;
    case 'transitioning':
      return servedInTransitioning.has(opcode) ? undefined : refusals.transitioning;
  }
}

/**
 * The agent's side of a target's port groups: holds the states and tells subscribed targets when
 * one changes (they establish ASYMMETRIC ACCESS STATE CHANGED). Not a pure core: a small holder.
 */
export class AluaPortGroups implements AluaProvider {
  private groups: PortGroup[];
  private readonly listeners: Array<() => void> = [];

  constructor(groups: readonly PortGroup[]) {
    this.groups = groups.map((g) => ({ ...g, relativeTargetPortIds: [...g.relativeTargetPortIds] }));
  }

  portGroups(): readonly PortGroup[] {
    return this.groups;
  }

  subscribe(onChange: () => void): void {
    this.listeners.push(onChange);
  }

  /** Changes one group's state; returns false (and tells no one) when it already had it. */
  setState(groupId: number, state: AluaState): boolean {
    const at = this.groups.findIndex((g) => g.id === groupId);
    if (at < 0 || this.groups[at].state === state) return false;
    this.groups = this.groups.map((g, i) => (i === at ? { ...g, state } : g));
    for (const fn of this.listeners) fn();
    return true;
  }
}
