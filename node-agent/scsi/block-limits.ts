// Limits of the block commands beyond READ/WRITE, named once so the Block Limits VPD page
// (SBC-4 6.6.4) and the handlers that enforce them cannot disagree. Pure.
import type { LogicalUnit } from './command-table.ts';

/** MAXIMUM COMPARE AND WRITE LENGTH: the CDB field is one byte. */
export const compareAndWriteMaxBlocks = 255;
/** MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT. */
export const unmapDescriptorsMax = 256;
/**
 * UNMAP deallocates (a punched hole is cheap; zero-writes where punching is impossible are not).
 * 512 MiB, and never more than 2^20 blocks: hosts (and libiscsi's Inquiry.BlockLimits) take a finite
 * MAXIMUM UNMAP LBA COUNT above that for a garbled field.
 */
const unmapMaxBytes = 512 * 1024 * 1024;
const unmapMaxBlocksCap = 1024 * 1024;
/** MAXIMUM ATOMIC TRANSFER LENGTH in bytes: a WRITE ATOMIC holds every other command on the LU back. */
const atomicMaxBytes = 1024 * 1024;

/** MAXIMUM WRITE SAME LENGTH: no more than one WRITE may carry, so one command stays short. */
export function writeSameMaxBlocks(lu: LogicalUnit): number {
  return lu.transferMaxBlocks;
}

export function unmapMaxBlocks(lu: LogicalUnit): number {
  return Math.min(unmapMaxBlocksCap, Math.max(1, Math.floor(unmapMaxBytes / lu.blockSizeBytes)));
}

/**
 * MAXIMUM ATOMIC TRANSFER LENGTH (SBC-4 6.6.4): WRITE ATOMIC(16) runs alone on the logical unit, so
 * any length up to this is atomic whatever its alignment (ATOMIC ALIGNMENT and ATOMIC TRANSFER
 * LENGTH GRANULARITY 0). Never above MAXIMUM TRANSFER LENGTH.
 */
export function atomicMaxBlocks(lu: LogicalUnit): number {
  return Math.min(lu.transferMaxBlocks, Math.max(1, Math.floor(atomicMaxBytes / lu.blockSizeBytes)));
}

/** OPTIMAL UNMAP GRANULARITY: one filesystem block of the volume file (4 KiB). */
export function unmapGranularityBlocks(lu: LogicalUnit): number {
  return lu.granularityBlocks;
}
