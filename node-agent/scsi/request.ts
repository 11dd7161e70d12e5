// Builds the ScsiRequest of a command, the same way for the portal and for commands forwarded from
// the other site: every field written out, never `{ ...head, dataOut }`. In the V8 of Node 20 each
// field that follows an object spread in a literal misses its inline cache: about 1.3 us per field,
// on every command (measured: 1.8 us for this request, 10 us for a SCSI Response's fields).
import type { Nexus, ScsiRequest, TaskAttribute, TaskSignal } from './types.ts';

/** What every request carries besides its Data-Out. */
export interface RequestHead {
  readonly nexus: Nexus;
  readonly lun: number;
  readonly cdb: Buffer;
  readonly taskTag: number;
  readonly attribute: TaskAttribute;
  readonly expectedDataLength: number;
  readonly expectedReadLength?: number;
  readonly signal?: TaskSignal;
}

/** A request with its Data-Out in one buffer (or none). */
export function scsiRequest(h: RequestHead, dataOut: Buffer | undefined): ScsiRequest {
  return {
    nexus: h.nexus, lun: h.lun, cdb: h.cdb, taskTag: h.taskTag, attribute: h.attribute,
    expectedDataLength: h.expectedDataLength, expectedReadLength: h.expectedReadLength, signal: h.signal, dataOut,
  };
}

/** A request whose Data-Out came in several pieces: WRITE stores them as they are (dataOutParts);
 *  any other command that reads dataOut gets them joined, once, on first access. */
class PiecesRequest implements ScsiRequest {
  readonly nexus: Nexus;
  readonly lun: number;
  readonly cdb: Buffer;
  readonly taskTag: number;
  readonly attribute: TaskAttribute;
  readonly expectedDataLength: number;
  readonly expectedReadLength?: number;
  readonly signal?: TaskSignal;
  private joined: Buffer | undefined;

  constructor(h: RequestHead, readonly dataOutParts: readonly Buffer[], private readonly joinedBytes: number | undefined) {
    this.nexus = h.nexus;
    this.lun = h.lun;
    this.cdb = h.cdb;
    this.taskTag = h.taskTag;
    this.attribute = h.attribute;
    this.expectedDataLength = h.expectedDataLength;
    this.expectedReadLength = h.expectedReadLength;
    this.signal = h.signal;
  }

  get dataOut(): Buffer {
    return (this.joined ??= Buffer.concat(this.dataOutParts, this.joinedBytes));
  }
}

/** A request whose Data-Out is the given pieces, in order; joinedBytes bounds the joined copy. */
export function scsiRequestOfPieces(h: RequestHead, parts: readonly Buffer[], joinedBytes?: number): ScsiRequest {
  return new PiecesRequest(h, parts, joinedBytes);
}
