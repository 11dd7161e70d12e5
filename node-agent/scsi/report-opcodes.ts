// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35): the command table, described from itself, so
// the list is exactly what the target executes. Pure.
import { u16, u32 } from './cdb.ts';
import type { CommandSpec, CommandTable } from './command-table.ts';
import { good, goodStatus, invalidFieldInCdb } from './sense.ts';
import type { ScsiResponse } from './types.ts';

const ReportingOptions = { all: 0, opcode: 1, opcodeAndServiceAction: 2, opcodeOrServiceAction: 3 } as const;

/** Recommended timeout when a command names none: generous, a host should not need more. */
const defaultRecommendedTimeoutSeconds = 30;

/** Command timeouts descriptor (SPC-4 6.35.4), 12 bytes. */
function timeoutsDescriptor(spec: CommandSpec): Buffer {
  const d = Buffer.alloc(12);
  d.writeUInt16BE(0x0a, 0);
  d.writeUInt32BE(spec.timeoutSeconds?.nominal ?? 0, 4);
  d.writeUInt32BE(spec.timeoutSeconds?.recommended ?? defaultRecommendedTimeoutSeconds, 8);
  return d;
}

function commandDescriptor(spec: CommandSpec, withTimeouts: boolean): Buffer {
  const d = Buffer.alloc(8);
  d[0] = spec.opcode;
  d.writeUInt16BE(spec.serviceAction ?? 0, 2);
  d[5] = (withTimeouts ? 0x02 : 0) | (spec.serviceAction !== undefined ? 0x01 : 0); // CTDP, SERVACTV
  d.writeUInt16BE(spec.usage.length, 6);
  return withTimeouts ? Buffer.concat([d, timeoutsDescriptor(spec)]) : d;
}

/** SUPPORT field values (SPC-4 table 233). */
const Support = { notSupported: 0x01, supportedByStandard: 0x03 } as const;

function oneCommand(spec: CommandSpec | undefined, withTimeouts: boolean): Buffer {
  const head = Buffer.alloc(4);
  if (!spec) {
    head[1] = Support.notSupported;
    return head;
  }
  head[1] = (withTimeouts ? 0x80 : 0) | Support.supportedByStandard;
  head.writeUInt16BE(spec.usage.length, 2);
  const parts: Buffer[] = [head, Buffer.from(spec.usage)];
  if (withTimeouts) parts.push(timeoutsDescriptor(spec));
  return Buffer.concat(parts);
}

export function reportSupportedOperationCodes(cdb: Buffer, table: CommandTable): ScsiResponse {
  const withTimeouts = (cdb[2] & 0x80) !== 0; // RCTD
  const options = cdb[2] & 0x07;
  const opcode = cdb[3];
  const serviceAction = u16(cdb, 4);
  const allocationLength = u32(cdb, 6);
  let data: Buffer;
  switch (options) {
    case ReportingOptions.all: {
      const descriptors = table.all.map((spec) => commandDescriptor(spec, withTimeouts));
      const head = Buffer.alloc(4);
      head.writeUInt32BE(descriptors.reduce((n, d) => n + d.length, 0), 0);
      data = Buffer.concat([head, ...descriptors]);
      break;
    }
    case ReportingOptions.opcode:
      // An opcode with service actions cannot be described without one.
      if (table.hasServiceActions(opcode)) return invalidFieldInCdb(3);
      data = oneCommand(table.find(opcode, undefined), withTimeouts);
      break;
    case ReportingOptions.opcodeAndServiceAction:
      if (table.find(opcode, undefined) !== undefined) return invalidFieldInCdb(3);
      data = oneCommand(table.find(opcode, serviceAction), withTimeouts);
      break;
    case ReportingOptions.opcodeOrServiceAction:
      data = oneCommand(table.find(opcode, table.hasServiceActions(opcode) ? serviceAction : undefined), withTimeouts);
      break;
    default:
      return invalidFieldInCdb(2, 2);
  }
  if (allocationLength === 0) return goodStatus;
  return good(data.length > allocationLength ? data.subarray(0, allocationLength) : data);
}
