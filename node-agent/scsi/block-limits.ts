// Limits of the block commands beyond READ/WRITE, named once so the Block Limits VPD page
// (SBC-4 6.6.4) and the handlers that enforce them cannot disagree. Pure.
import type { LogicalUnit } from './command-table.ts';

/** MAXIMUM COMPARE AND WRITE LENGTH: the CDB field is one byte. */
export const compareAndWriteMaxBlocks = 255;
/** MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT. */
export const unmapDescriptorsMax = 256;
/** UNMAP deallocates (a punched hole is cheap; zero-writes where punching is impossible are not). */
const unmapMaxBytes = 1024 * 1024 * 1024;

/** MAXIMUM WRITE SAME LENGTH: no more than one WRITE may carry, so one command stays short. */
export function writeSameMaxBlocks(lu: LogicalUnit): number {
  return lu.transferMaxBlocks;
}

export function unmapMaxBlocks(lu: LogicalUnit): number {
  return unmapMaxBytes / lu.blockSizeBytes;
}

/** OPTIMAL UNMAP GRANULARITY: one filesystem block of the volume file (4 KiB). */
export function unmapGranularityBlocks(lu: LogicalUnit): number {
  return lu.granularityBlocks;
}
