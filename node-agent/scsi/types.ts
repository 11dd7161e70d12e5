// The contract between the iSCSI transport and the SCSI layer (SAM-5 model): the transport
// delivers whole commands in CmdSN order with every Data-Out byte collected (one buffer, and for
// multi-PDU transfers also the received pieces, which WRITE stores without joining); the SCSI layer
// never sees a socket or a PDU, the transport never parses a CDB.

/** One I_T nexus: an initiator port (name + ISID) logged in to a target through one portal group. */
export interface Nexus {
  /** Stable key for maps: `${initiatorName},i,0x${isidHex}` plus the target portal group tag. */
  readonly id: string;
  readonly initiatorName: string;
  /** 6-byte ISID as 12 hex digits. */
  readonly isidHex: string;
  /** iSCSI target portal group tag (= the site's relative target port / port group number). */
  readonly portalGroupTag: number;
}

export const enum ScsiStatus {
  Good = 0x00,
  CheckCondition = 0x02,
  ConditionMet = 0x04,
  Busy = 0x08,
  ReservationConflict = 0x18,
  TaskSetFull = 0x28,
  AcaActive = 0x30,
  TaskAborted = 0x40,
}

export type TaskAttribute = 'untagged' | 'simple' | 'ordered' | 'head-of-queue' | 'aca';

export interface ScsiRequest {
  readonly nexus: Nexus;
  readonly lun: number;
  /** CDB: 16 bytes from the BHS, longer when an extended-CDB AHS was present. */
  readonly cdb: Buffer;
  readonly taskTag: number;
  readonly attribute: TaskAttribute;
  /** ExpectedDataTransferLength from the SCSI Command PDU (for bidi: the write direction). */
  readonly expectedDataLength: number;
  readonly expectedReadLength?: number;
  /** Every Data-Out byte the initiator sent for this command (length <= expectedDataLength). */
  readonly dataOut?: Buffer;
  /** The same bytes as the Data-Out pieces the transport received, in order, when there were
   *  several: WRITE stores them without joining. dataOut is then joined on first access. */
  readonly dataOutParts?: readonly Buffer[];
  /** Raised by the transport when the task is aborted; long operations may check it. */
  readonly signal?: TaskSignal;
}

/** Whether a task has been aborted (an AbortSignal fits). */
export interface TaskSignal {
  aborted: boolean;
}

export interface ScsiResponse {
  readonly status: ScsiStatus;
  /** Data for the initiator; never longer than the CDB's allocation length. The transport truncates
   *  it to expectedDataLength and reports residuals. */
  readonly dataIn?: Buffer;
  /** Fixed-format sense data (SPC-4 4.5.3) with CHECK CONDITION. */
  readonly sense?: Buffer;
  /** Bytes the CDB itself asks to transfer (in either direction), when the command moves data.
   *  The transport compares it with expectedDataLength to report overflow/underflow residuals
   *  (RFC 7143 §11.4.5). */
  readonly commandTransferBytes?: number;
  /** The dataIn bytes may be reused once the transport has written them (a pooled read buffer);
   *  a transport that does not call it leaves the buffer to the garbage collector. */
  readonly release?: () => void;
}

export type TaskManagementFunction =
  | 'abort-task'
  | 'abort-task-set'
  | 'clear-aca'
  | 'clear-task-set'
  | 'logical-unit-reset'
  | 'target-warm-reset'
  | 'target-cold-reset'
  | 'task-reassign';

export type TaskManagementResult =
  | 'function-complete'
  | 'task-does-not-exist'
  | 'lun-does-not-exist'
  | 'task-still-allegiant'
  | 'reassignment-not-supported'
  | 'function-not-supported'
  | 'authorization-failed'
  | 'function-rejected';

/** One group's target as the SCSI layer presents it: its LUNs and their command execution. */
export interface ScsiTarget {
  readonly iqn: string;
  /** LUN numbers served, ascending. */
  luns(): number[];
  /** Executes one command. Never throws for an expected refusal: returns CHECK CONDITION with sense. */
  execute(req: ScsiRequest): Promise<ScsiResponse>;
  /** Task management after the transport has aborted its own queued tasks for the function. */
  taskManagement(req: {
    fn: TaskManagementFunction;
    nexus: Nexus;
    lun: number;
  }): Promise<TaskManagementResult>;
  /** A nexus was established (login) / ended (logout, connection loss). */
  nexusOpened(nexus: Nexus): void;
  nexusClosed(nexus: Nexus): void;
}

/** What the transport needs from the agent: targets by name, and what SendTargets lists. */
export interface TargetRegistry {
  lookup(iqn: string): ScsiTarget | undefined;
  /** Every target, with the portals (address, port, portal group tag) it is reachable at,
   *  the local site's first. */
  discovery(): Array<{ iqn: string; portals: Array<{ address: string; port: number; portalGroupTag: number }> }>;
}
