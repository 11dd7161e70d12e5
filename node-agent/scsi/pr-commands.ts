// PERSISTENT RESERVE IN/OUT (SPC-4 6.15, 6.16) and REPORT TARGET PORT GROUPS (SPC-4 6.36) as
// opcode-table entries. The decisions are in persistent-reservations.ts and alua.ts; these
// handlers decode, call them and hand a PERSISTENT RESERVE OUT outcome to the target to apply.
import { u16, u32, usage } from './cdb.ts';
import type { CommandSpec, LogicalUnit, TargetContext } from './command-table.ts';
import { prNexusOf } from './access-check.ts';
import { reportTargetPortGroups } from './alua.ts';
import { PrInAction, PrOutAction, prIn, prOut } from './persistent-reservations.ts';
import { allocated } from './spc-commands.ts';
import { invalidFieldInCdb } from './sense.ts';
import type { ScsiRequest, ScsiResponse } from './types.ts';

function persistentReserveIn(req: ScsiRequest, lu: LogicalUnit): ScsiResponse {
  const data = prIn(lu.reservations.pr, req.cdb[1] & 0x1f);
  if (!Buffer.isBuffer(data)) return data;
  return allocated(data, u16(req.cdb, 7));
}

async function persistentReserveOut(req: ScsiRequest, lu: LogicalUnit, target: TargetContext): Promise<ScsiResponse> {
  const result = prOut(lu.reservations.pr, {
    nexus: prNexusOf(req.nexus),
    cdb: req.cdb,
    dataOut: req.dataOut,
    relativeTargetPortIds: target.portGroups().flatMap((g) => g.relativeTargetPortIds),
    registrationsMax: target.registrationsMax,
  });
  if (result.state !== lu.reservations.pr) await target.applyReservation(lu, req, result);
  // The parameter list is consumed whole: no residual beyond what the CDB asked for.
  return result.response.status === 0 ? { ...result.response, commandTransferBytes: u32(req.cdb, 5) } : result.response;
}

function reportTargetPortGroupsCommand(req: ScsiRequest, _lu: LogicalUnit, target: TargetContext): ScsiResponse {
  const format = req.cdb[1] >> 5;
  if (format > 1) return invalidFieldInCdb(1, 7);
  return allocated(reportTargetPortGroups(target.portGroups(), format === 1), u32(req.cdb, 6));
}

const prInNames: Record<number, string> = {
  [PrInAction.ReadKeys]: 'PERSISTENT RESERVE IN (READ KEYS)',
  [PrInAction.ReadReservation]: 'PERSISTENT RESERVE IN (READ RESERVATION)',
  [PrInAction.ReportCapabilities]: 'PERSISTENT RESERVE IN (REPORT CAPABILITIES)',
  [PrInAction.ReadFullStatus]: 'PERSISTENT RESERVE IN (READ FULL STATUS)',
};

const prOutNames: Record<number, string> = {
  [PrOutAction.Register]: 'REGISTER',
  [PrOutAction.Reserve]: 'RESERVE',
  [PrOutAction.Release]: 'RELEASE',
  [PrOutAction.Clear]: 'CLEAR',
  [PrOutAction.Preempt]: 'PREEMPT',
  [PrOutAction.PreemptAndAbort]: 'PREEMPT AND ABORT',
  [PrOutAction.RegisterAndIgnoreExistingKey]: 'REGISTER AND IGNORE EXISTING KEY',
  [PrOutAction.RegisterAndMove]: 'REGISTER AND MOVE',
};

export const prCommands: readonly CommandSpec[] = [
  ...Object.entries(prInNames).map(([sa, name]): CommandSpec => ({
    opcode: 0x5e,
    serviceAction: Number(sa),
    name,
    usage: usage(0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0),
    handler: persistentReserveIn,
  })),
  ...Object.entries(prOutNames).map(([sa, name]): CommandSpec => ({
    opcode: 0x5f,
    serviceAction: Number(sa),
    name: `PERSISTENT RESERVE OUT (${name})`,
    usage: usage(0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0),
    // Alone on the logical unit: ordered with every read and write around it, and no two
    // reservation changes interleave while one is being persisted.
    exclusive: true,
    handler: persistentReserveOut,
  })),
  {
    opcode: 0xa3,
    serviceAction: 0x0a,
    name: 'REPORT TARGET PORT GROUPS',
    usage: usage(0xa3, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0),
    handler: reportTargetPortGroupsCommand,
  },
];
