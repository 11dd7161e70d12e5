// CDB field helpers (SPC-4 4.2): big-endian fields, the CDB length implied by the group code, and
// the reserved-bit check driven by the CDB usage data that REPORT SUPPORTED OPERATION CODES reports,
// so what we accept and what we advertise cannot drift apart. Pure.
import type { FieldPointer } from './sense.ts';

/** CDB length from the group code in the opcode's top three bits; undefined for variable/vendor groups. */
export function cdbLengthOf(opcode: number): number | undefined {
  switch (opcode >> 5) {
    case 0:
      return 6;
    case 1:
    case 2:
      return 10;
    case 4:
      return 16;
    case 5:
      return 12;
    default:
      return undefined;
  }
}

export function u16(cdb: Buffer, offset: number): number {
  return (cdb[offset] << 8) | cdb[offset + 1];
}

export function u24(cdb: Buffer, offset: number): number {
  return (cdb[offset] << 16) | (cdb[offset + 1] << 8) | cdb[offset + 2];
}

export function u32(cdb: Buffer, offset: number): number {
  return cdb.readUInt32BE(offset);
}

/** A 64-bit field as a number; values beyond 2^53 come back as Infinity (always out of range). */
export function u64(cdb: Buffer, offset: number): number {
  const hi = cdb.readUInt32BE(offset);
  if (hi >= 0x200000) return Infinity;
  return hi * 0x1_0000_0000 + cdb.readUInt32BE(offset + 4);
}

/** Highest set bit of a non-zero byte. */
function topBit(value: number): number {
  return 31 - Math.clz32(value);
}

/**
 * First CDB bit set where the usage data says the field is reserved or unsupported (SPC-4 6.35.3:
 * a usage bit of one means the device server evaluates that bit). The control byte is checked for
 * NACA and LINK only; its vendor-specific bits are ignored (SAM-5 5.2).
 */
export function findUnsupportedCdbBit(cdb: Buffer, usage: Uint8Array): FieldPointer | undefined {
  const last = usage.length - 1;
  for (let i = 1; i < last; i++) {
    const bad = cdb[i] & ~usage[i];
    if (bad !== 0) return { inCdb: true, byte: i, bit: topBit(bad) };
  }
  const badControl = cdb[last] & 0x3f & ~usage[last];
  if (badControl !== 0) return { inCdb: true, byte: last, bit: topBit(badControl) };
  return undefined;
}

/**
 * CDB usage data from a compact description: the opcode, then one mask per following byte
 * (the last is the control byte). Written out by hand per command in the opcode tables.
 */
export function usage(...bytes: number[]): Uint8Array {
  return Uint8Array.from(bytes);
}
