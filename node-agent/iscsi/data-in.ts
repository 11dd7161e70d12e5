// Read-side arithmetic of a command's completion: residuals (RFC 7143 §11.4.5) and the split of
// Data-In into PDUs within the initiator's MaxRecvDataSegmentLength and sequences within
// MaxBurstLength (§11.7). Pure.
import type { Residual } from './pdu.ts';

/** The Residual Count field is 32 bits; a CDB may ask for more (READ 16 of 2^32 blocks), so an
 *  overflow beyond it saturates rather than wrapping (RFC 7143 §11.4.5). */
const residualCountMax = 0xffff_ffff;

/** Residual of a transfer that needed `neededBytes` where the initiator expected `expectedBytes`. */
export function residualOf(expectedBytes: number, neededBytes: number): Residual {
  if (neededBytes > expectedBytes) return { overflow: true, underflow: false, count: Math.min(neededBytes - expectedBytes, residualCountMax) };
  if (neededBytes < expectedBytes) return { overflow: false, underflow: true, count: expectedBytes - neededBytes };
  return { overflow: false, underflow: false, count: 0 };
}

/**
 * Residual of a read: the CDB's own transfer length (when the SCSI layer reports it) decides
 * overflow; the bytes actually returned decide underflow (INQUIRY with a large allocation length
 * and a short answer underflows).
 */
export function readResidual(expectedBytes: number, returnedBytes: number, commandTransferBytes?: number): Residual {
  const needed = commandTransferBytes ?? returnedBytes;
  if (needed > expectedBytes) return residualOf(expectedBytes, needed);
  return residualOf(expectedBytes, Math.min(returnedBytes, expectedBytes));
}

export interface DataInSegment {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** F bit: the last PDU of a sequence (MaxBurstLength) or of the whole transfer. */
  readonly final: boolean;
}

/** Splits totalBytes into Data-In PDUs: each at most segmentBytesMax, none crossing a
 *  burstBytesMax boundary, F on the last of every burst. */
export function planDataIn(totalBytes: number, segmentBytesMax: number, burstBytesMax: number): DataInSegment[] {
  const out: DataInSegment[] = [];
  let offset = 0;
  while (offset < totalBytes) {
    const burstEnd = Math.min(totalBytes, offset - (offset % burstBytesMax) + burstBytesMax);
    const length = Math.min(segmentBytesMax, burstEnd - offset);
    offset += length;
    out.push({ offsetBytes: offset - length, lengthBytes: length, final: offset === burstEnd });
  }
  return out;
}
