// Full feature phase of one connection (one connection per session, ERL 0): the command window,
// Data-Out collection (immediate, unsolicited, R2T-solicited), delivery to the SCSI layer in CmdSN
// order, Data-In/SCSI Response with residuals, NOP-Out/NOP-In, Text (SendTargets), Logout, task
// management and Reject. A pure core driven by calls (receive, complete, tick): it never touches a
// socket, timer or clock; what it must do goes out through ConnectionIo.
import { assert } from '../../common/assert.ts';
import {
  AsyncEvent,
  InitiatorOpcode,
  LogoutReason,
  LogoutResponseCode,
  RejectReason,
  ScsiResponseCode,
  tagNone,
  textBytesMax,
} from './constants.ts';
import { CommandWindow } from './command-window.ts';
import { planDataIn, readResidual, residualOf } from './data-in.ts';
import type { LoginResult } from './login.ts';
import { negotiate, initialNegotiation, type SessionParams, type TargetPreferences } from './negotiation.ts';
import type { ParseResult } from './pdu-parser.ts';
import {
  dataPartsOf,
  dataSegmentLengthOf,
  decodeDataOut,
  decodeLogoutRequest,
  decodeNopOut,
  decodeScsiCommand,
  decodeTaskManagement,
  decodeTextRequest,
  encodeAsyncMessage,
  encodeDataIn,
  encodeLogoutResponse,
  encodeNopIn,
  encodeR2T,
  encodeReject,
  encodeScsiResponse,
  encodeTaskManagementResponse,
  encodeTextResponse,
  framePdu,
  isImmediate,
  noResidual,
  opcodeOf,
  senseSegment,
  snAdd,
  type Digests,
  type Pdu,
  type Residual,
  type ScsiCommandPdu,
  type Sequence,
} from './pdu.ts';
import { decodeText, encodeText, splitText, type TextPair } from './text-keys.ts';
import {
  ScsiStatus,
  type Nexus,
  type ScsiRequest,
  type ScsiResponse,
  type TargetRegistry,
  type TaskSignal,
  type TaskManagementFunction,
  type TaskManagementResult,
} from '../scsi/types.ts';
import { scsiRequest, scsiRequestOfPieces, type RequestHead } from '../scsi/request.ts';

export interface ConnectionLimits {
  /** Non-immediate commands outstanding per session (the MaxCmdSN window). */
  readonly commandWindowMax: number;
  /** Immediate SCSI commands outstanding at once; more are rejected (§11.17.1 reason 0x06). */
  readonly immediateCommandsMax: number;
  /** Largest write (ExpectedDataTransferLength) one command may buffer. */
  readonly commandDataBytesMax: number;
  /** Data-Out bytes buffered or solicited per connection before R2Ts wait. */
  readonly pendingDataBytesMax: number;
  /** Idle time after which the target pings with a NOP-In. */
  readonly nopInIntervalMs: number;
  /** A ping with no traffic from the initiator for this long ends the connection. */
  readonly nopInTimeoutMs: number;
}

/** The edge the core drives; the portal implements it over a socket and the SCSI target. */
export interface ConnectionIo {
  /** The wire buffers of one or more PDUs, in order; write them together (cork/writev). `written`
   *  runs once the socket has taken them all (their buffers may then be reused), never on failure. */
  send(parts: Buffer[], written?: () => void): void;
  /** Run one command; answer with complete(serial, response) or fail(serial). */
  execute(serial: number, req: ScsiRequest): void;
  /** Run one task management function; answer with completeTaskManagement(serial, result). */
  taskManagement(serial: number, req: { fn: TaskManagementFunction; nexus: Nexus; lun: number }): void;
  /** End the connection once what was sent is flushed. Called at most once. */
  close(reason: string): void;
}

const taskSetFull: ScsiResponse = { status: ScsiStatus.TaskSetFull };

/** Data-Out bytes buffered by every connection of a portal together (immediate, unsolicited and
 *  solicited, awaiting execution), so one initiator's many sessions cannot exhaust memory. Shared
 *  and mutable: the portal owns it, each connection adds what it buffers and removes what it frees. */
export interface SharedDataBudget {
  usedBytes: number;
  readonly bytesMax: number;
}

export interface ConnectionSetup {
  readonly login: LoginResult;
  readonly nexus: Nexus;
  readonly prefs: TargetPreferences;
  readonly limits: ConnectionLimits;
  /** Default: a budget of this connection alone (pendingDataBytesMax bounds it). */
  readonly dataBudget?: SharedDataBudget;
  /** For SendTargets. */
  readonly discovery: TargetRegistry['discovery'];
  readonly nowMs: number;
}

type TaskState = 'collecting' | 'ready' | 'executing';

interface R2TState {
  readonly task: Task;
  readonly offset: number;
  readonly length: number;
  next: number;
  dataSN: number;
}

interface Task {
  readonly serial: number;
  readonly cmd: ScsiCommandPdu;
  state: TaskState;
  /** Data-Out pieces in arrival order, each at its buffer offset. */
  readonly pieces: Array<{ offset: number; data: Buffer }>;
  received: number;
  /** Unsolicited Data-Out may still arrive, starting at unsolicitedNext, up to unsolicitedEnd. */
  unsolicitedOpen: boolean;
  unsolicitedNext: number;
  unsolicitedDataSN: number;
  readonly unsolicitedEnd: number;
  nextR2TOffset: number;
  /** Outstanding R2Ts by TTT; created with the first (most commands never need one). */
  r2ts: Map<number, R2TState> | undefined;
  /** DataSN/R2TSN: shared by Data-In and R2T of the task (§11.7.5, §11.8.5). */
  sn: number;
  /** Set when the task reaches the SCSI layer; raised when the task is aborted. */
  signal?: TaskSignal;
  /** The transport's own refusal, answered once the task's data is in. */
  failure?: ScsiResponse;
}

interface TextExchange {
  readonly itt: number;
  readonly ttt: number;
  request: Buffer[];
  requestBytes: number;
  /** Our answer's remaining segments (sent on the initiator's empty continuation requests). */
  segments: Buffer[];
}

const tmfFunctions: Readonly<Record<number, TaskManagementFunction>> = {
  1: 'abort-task',
  2: 'abort-task-set',
  3: 'clear-aca',
  4: 'clear-task-set',
  5: 'logical-unit-reset',
  6: 'target-warm-reset',
  7: 'target-cold-reset',
  8: 'task-reassign',
};
/** Task management response codes (RFC 7143 §11.6.1). */
const tmfResponseCodes: Readonly<Record<TaskManagementResult, number>> = {
  'function-complete': 0,
  'task-does-not-exist': 1,
  'lun-does-not-exist': 2,
  'task-still-allegiant': 3,
  'reassignment-not-supported': 4,
  'function-not-supported': 5,
  'authorization-failed': 6,
  'function-rejected': 255,
};

/** Fixed-format sense (SPC-4 4.5.3) for the transport's own refusals. */
export function fixedSense(key: number, asc: number, ascq: number): Buffer {
  const s = Buffer.alloc(18);
  s[0] = 0x70;
  s[2] = key;
  s[7] = 10;
  s[12] = asc;
  s[13] = ascq;
  return s;
}
/** A read that returned nothing; shared, never written to. */
const noData = Buffer.alloc(0);
const senseAbortedCommand = 0x0b;
const senseIllegalRequest = 0x05;
/** ASCQs under ASC 0x4B (DATA PHASE ERROR family, SPC-4 Annex D). */
const ascDataPhaseError = 0x00;
const ascTooMuchWriteData = 0x02;
const ascDataOffsetError = 0x05;
/** Unsolicited data where none may come: reported as a data phase error too. */
const ascUnexpectedData = 0x00;

export class FullFeatureConnection {
  readonly nexus: Nexus;
  private readonly login: LoginResult;
  private params: SessionParams;
  private readonly prefs: TargetPreferences;
  private readonly limits: ConnectionLimits;
  private readonly discovery: TargetRegistry['discovery'];
  private readonly window: CommandWindow<Pdu>;
  private statSN: number;
  private readonly tasks = new Map<number, Task>(); // by ITT
  private readonly executing = new Map<number, Task>(); // by serial
  private readonly order: Task[] = []; // non-immediate tasks not yet executed, CmdSN order
  private readonly collecting = new Set<Task>(); // tasks that still need Data-Out, arrival order
  private readonly r2tByTag = new Map<number, R2TState>();
  private readonly tombstones = new Set<number>(); // CmdSNs aborted before they arrived
  private readonly pendingTmf = new Map<number, { itt: number; windowed: boolean; cold: boolean }>();
  private text?: TextExchange;
  private serial = 0;
  private nextTag = 1;
  private immediateOutstanding = 0;
  private bufferedBytes = 0;
  /** Data of PDUs the command window holds ahead of a gap. */
  private heldBytes = 0;
  private readonly budget: SharedDataBudget;
  private solicitedBytes = 0;
  private lastActivityMs: number;
  private ping?: { ttt: number; sentMs: number };
  private out: Buffer[] = [];
  private closed = false;

  constructor(
    setup: ConnectionSetup,
    private readonly io: ConnectionIo,
  ) {
    this.login = setup.login;
    this.nexus = setup.nexus;
    this.params = setup.login.params;
    this.prefs = setup.prefs;
    this.limits = setup.limits;
    this.budget = setup.dataBudget ?? { usedBytes: 0, bytesMax: Number.MAX_SAFE_INTEGER };
    this.discovery = setup.discovery;
    this.window = new CommandWindow(setup.login.cmdSN, setup.limits.commandWindowMax);
    this.statSN = setup.login.statSN;
    this.lastActivityMs = setup.nowMs;
  }

  get digests(): Digests {
    return { header: this.params.headerDigest, data: this.params.dataDigest };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Commands accepted and not answered, for status and tests. */
  get outstandingCommands(): number {
    return this.window.outstandingCount + this.immediateOutstanding;
  }

  get expCmdSN(): number {
    return this.window.expCmdSN;
  }

  receive(result: ParseResult, nowMs: number): void {
    if (this.closed) return;
    this.lastActivityMs = nowMs;
    this.ping = undefined; // any traffic answers a ping
    if (result.kind === 'fatal') {
      this.shutdown(`unrecoverable PDU: ${result.reason}`);
      return;
    }
    if (result.kind === 'data-digest-error') this.onDataDigestError(result.pdu);
    else this.dispatch(result.pdu);
    this.flush();
  }

  /** The SCSI layer finished a command. Ignored for aborted tasks: they never complete. */
  complete(serial: number, response: ScsiResponse): void {
    const task = this.executing.get(serial);
    if (task === undefined || this.closed) {
      response.release?.(); // nothing of it is sent
      return;
    }
    this.retire(task);
    this.sendScsiResult(task, response);
    // A pooled read buffer goes back once the socket has its Data-In.
    if (response.release) this.outWritten.push(response.release);
    this.flush();
  }

  /** The SCSI layer failed unexpectedly (a bug or an I/O fault it did not map): Target Failure. */
  fail(serial: number): void {
    const task = this.executing.get(serial);
    if (task === undefined || this.closed) return;
    this.retire(task);
    this.emit(
      encodeScsiResponse(this.sequenced(true, {
        response: ScsiResponseCode.TargetFailure,
        status: 0,
        initiatorTaskTag: task.cmd.initiatorTaskTag,
        expDataSN: task.sn,
        residual: noResidual,
        dataLength: 0,
      })),
    );
    this.flush();
  }

  completeTaskManagement(serial: number, result: TaskManagementResult): void {
    const pending = this.pendingTmf.get(serial);
    if (pending === undefined || this.closed) return;
    this.pendingTmf.delete(serial);
    this.answerTmf(pending.itt, tmfResponseCodes[result], pending.windowed);
    this.flush();
    if (pending.cold) this.shutdown('target cold reset');
  }

  /** Time passes: ping an idle initiator, drop one that stopped answering. */
  tick(nowMs: number): void {
    if (this.closed) return;
    if (this.ping !== undefined) {
      if (nowMs - this.ping.sentMs >= this.limits.nopInTimeoutMs) this.shutdown('initiator did not answer NOP-In');
      return;
    }
    if (nowMs - this.lastActivityMs < this.limits.nopInIntervalMs) return;
    const ttt = this.newTag();
    this.ping = { ttt, sentMs: nowMs };
    // §11.19: ITT 0xffffffff, a TTT the initiator must echo; StatSN not advanced.
    this.emit(encodeNopIn(this.sequenced(false, { lun: 0, initiatorTaskTag: tagNone, targetTransferTag: ttt, dataLength: 0 })));
    this.flush();
  }

  /** Asks the initiator to log out within timeS seconds (Async Message, §11.9.1), e.g. on shutdown. */
  requestLogout(timeS: number): void {
    if (this.closed) return;
    this.emit(
      encodeAsyncMessage(this.sequenced(true, {
        lun: 0,
        event: AsyncEvent.RequestLogout,
        vcode: 0,
        parameter1: 0,
        parameter2: 0,
        parameter3: timeS,
        dataLength: 0,
      })),
    );
    this.flush();
  }

  /** The connection is gone (or must go): every task is aborted and nothing more is sent. */
  shutdown(reason: string): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.budget.usedBytes -= this.bufferedBytes + this.heldBytes;
    for (const task of [...this.tasks.values()]) if (task.signal) task.signal.aborted = true;
    this.tasks.clear();
    this.executing.clear();
    this.order.length = 0;
    this.collecting.clear();
    this.r2tByTag.clear();
    this.pendingTmf.clear();
    this.io.close(reason);
  }

  // ---- dispatch ----

  private dispatch(pdu: Pdu): void {
    const op = opcodeOf(pdu.bhs);
    switch (op) {
      case InitiatorOpcode.DataOut:
        this.onDataOut(pdu);
        return;
      case InitiatorOpcode.NopOut:
      case InitiatorOpcode.ScsiCommand:
      case InitiatorOpcode.TaskManagementRequest:
      case InitiatorOpcode.TextRequest:
      case InitiatorOpcode.LogoutRequest:
        if (op === InitiatorOpcode.NopOut && pdu.bhs.readUInt32BE(16) === tagNone) {
          this.onPingAnswer(pdu); // a NOP-Out with no ITT wants no answer and takes no CmdSN
          return;
        }
        if (isImmediate(pdu.bhs)) {
          this.handleCommand(pdu, false);
          return;
        }
        this.ordered(pdu);
        return;
      case InitiatorOpcode.Snack:
        this.reject(RejectReason.ProtocolError, pdu.bhs); // ERL 0 has no SNACK (§7.1.1)
        return;
      case InitiatorOpcode.LoginRequest:
        this.reject(RejectReason.ProtocolError, pdu.bhs);
        return;
      default:
        this.reject(RejectReason.CommandNotSupported, pdu.bhs);
    }
  }

  private ordered(pdu: Pdu): void {
    const arrival = this.window.arrive(pdu.bhs.readUInt32BE(24), pdu);
    if (arrival.kind === 'held') {
      // Ahead of a CmdSN gap, which one TCP connection never has unless the initiator makes it.
      const heldBytes = dataSegmentLengthOf(pdu.bhs); // not pdu.data: that would join a PDU in pieces
      this.heldBytes += heldBytes;
      this.budget.usedBytes += heldBytes;
      if (this.budget.usedBytes > this.budget.bytesMax) this.shutdown('commands held ahead of a CmdSN gap exceed the data budget');
      return;
    }
    if (arrival.kind !== 'deliver') return;
    const items = arrival.items;
    for (let i = 0; i < items.length; i++) {
      if (this.closed) return;
      if (i > 0) {
        const heldBytes = dataSegmentLengthOf(items[i].bhs);
        this.heldBytes -= heldBytes;
        this.budget.usedBytes -= heldBytes;
      }
      this.handleCommand(items[i], true);
    }
  }

  /** `windowed`: the PDU took a CmdSN slot, which its answer must release. */
  private handleCommand(pdu: Pdu, windowed: boolean): void {
    const op = opcodeOf(pdu.bhs);
    const discovery = this.login.sessionType === 'Discovery';
    if (discovery && op !== InitiatorOpcode.TextRequest && op !== InitiatorOpcode.LogoutRequest && op !== InitiatorOpcode.NopOut) {
      // A discovery session allows only Text (SendTargets) and Logout (§13.21); NOP-Out is harmless.
      this.rejectCommand(RejectReason.ProtocolError, pdu.bhs, windowed);
      return;
    }
    switch (op) {
      case InitiatorOpcode.ScsiCommand:
        this.onScsiCommand(pdu, windowed);
        return;
      case InitiatorOpcode.NopOut:
        this.onNopOut(pdu, windowed);
        return;
      case InitiatorOpcode.TextRequest:
        this.onText(pdu, windowed);
        return;
      case InitiatorOpcode.LogoutRequest:
        this.onLogout(pdu, windowed);
        return;
      case InitiatorOpcode.TaskManagementRequest:
        this.onTaskManagement(pdu, windowed);
        return;
    }
  }

  // ---- SCSI commands and Data-Out ----

  private onScsiCommand(pdu: Pdu, windowed: boolean): void {
    const decoded = decodeScsiCommand(pdu);
    if (!decoded.ok) {
      this.rejectCommand(RejectReason.InvalidPduField, pdu.bhs, windowed);
      return;
    }
    const cmd = decoded.value;
    if (windowed && this.tombstones.delete(cmd.cmdSN)) {
      this.window.finish(); // aborted before it arrived (§11.5.1): discarded, no answer
      return;
    }
    const immediateBytes = dataSegmentLengthOf(pdu.bhs);
    const refusal = this.checkCommand(cmd, immediateBytes, windowed);
    if (refusal !== undefined) {
      this.rejectCommand(refusal, pdu.bhs, windowed);
      return;
    }
    if (!windowed) this.immediateOutstanding++;
    const p = this.params;
    const unsolicitedEnd = !cmd.write ? 0 : p.initialR2T ? immediateBytes : Math.min(p.firstBurstBytes, cmd.expectedDataLength);
    const task: Task = {
      serial: ++this.serial,
      cmd,
      state: 'collecting',
      pieces: [],
      received: 0,
      unsolicitedOpen: cmd.write && !cmd.final,
      unsolicitedNext: immediateBytes,
      unsolicitedDataSN: 0,
      unsolicitedEnd,
      nextR2TOffset: 0,
      r2ts: undefined,
      sn: 0,
    };
    if (cmd.write && cmd.expectedDataLength > this.limits.commandDataBytesMax) {
      // More than we will buffer: refused as the SCSI layer refuses an oversized transfer.
      task.failure = { status: ScsiStatus.CheckCondition, sense: fixedSense(senseIllegalRequest, 0x24, 0x00) };
    } else if (immediateBytes > 0 && this.budget.usedBytes + immediateBytes > this.budget.bytesMax) {
      // The portal's buffers are full: the data is dropped and the command answered TASK SET FULL
      // (SAM-5 5.3.1) in its turn, which initiators retry; R2Ts wait for space instead.
      task.failure = taskSetFull;
    }
    this.tasks.set(cmd.initiatorTaskTag, task);
    if (windowed) this.order.push(task);
    if (immediateBytes > 0) this.addPieces(task, 0, dataPartsOf(pdu), immediateBytes);
    this.afterData(task);
  }

  /** A reason to reject the command PDU, or undefined when it is well formed (§11.3). */
  private checkCommand(cmd: ScsiCommandPdu, immediateBytes: number, windowed: boolean): RejectReason | undefined {
    const p = this.params;
    if (cmd.initiatorTaskTag === tagNone) return RejectReason.InvalidPduField;
    if (this.tasks.has(cmd.initiatorTaskTag)) return RejectReason.TaskInProgress;
    if (!windowed && this.immediateOutstanding >= this.limits.immediateCommandsMax) return RejectReason.ImmediateCommandReject;
    if (!cmd.write && (immediateBytes > 0 || !cmd.final)) return RejectReason.ProtocolError;
    if (cmd.write && cmd.read && cmd.expectedReadLength === undefined) return RejectReason.ProtocolError;
    if (immediateBytes > 0 && !p.immediateData) return RejectReason.ProtocolError;
    if (immediateBytes > cmd.expectedDataLength || immediateBytes > p.firstBurstBytes) return RejectReason.ProtocolError;
    if (cmd.write && !cmd.final && (p.initialR2T || immediateBytes >= Math.min(p.firstBurstBytes, cmd.expectedDataLength))) {
      return RejectReason.ProtocolError; // unsolicited Data-Out announced where none may follow
    }
    return undefined;
  }

  private onDataOut(pdu: Pdu): void {
    const d = decodeDataOut(pdu);
    const task = this.tasks.get(d.initiatorTaskTag);
    if (task === undefined || task.state !== 'collecting') {
      // Unsolicited data for a task we already ended is dropped quietly; anything else is an error.
      if (d.targetTransferTag !== tagNone || task !== undefined) this.reject(RejectReason.InvalidPduField, pdu.bhs);
      return;
    }
    const end = d.bufferOffset + d.dataLength;
    if (d.targetTransferTag === tagNone) {
      const error = !task.unsolicitedOpen
        ? ascUnexpectedData
        : d.dataSN !== task.unsolicitedDataSN
          ? ascDataPhaseError
          : d.bufferOffset !== task.unsolicitedNext
            ? ascDataOffsetError
            : end > task.unsolicitedEnd
              ? ascTooMuchWriteData
              : undefined;
      if (error !== undefined) {
        this.abandon(task, RejectReason.ProtocolError, 0x4b, error, pdu.bhs);
        return;
      }
      task.unsolicitedNext = end;
      task.unsolicitedDataSN++;
      // The burst ends with F, or when it reaches FirstBurstLength (or EDTL) regardless.
      if (d.final || end === task.unsolicitedEnd) task.unsolicitedOpen = false;
    } else {
      const r2t = this.r2tByTag.get(d.targetTransferTag);
      if (r2t === undefined || r2t.task !== task) {
        this.reject(RejectReason.InvalidPduField, pdu.bhs);
        return;
      }
      // DataPDUInOrder=Yes: each PDU continues its sequence (§13.19), numbered from 0 (§11.7.5).
      const error = d.dataSN !== r2t.dataSN
        ? ascDataPhaseError
        : d.bufferOffset !== r2t.next
          ? ascDataOffsetError
          : end > r2t.offset + r2t.length
            ? ascTooMuchWriteData
            : undefined;
      if (error !== undefined) {
        this.abandon(task, RejectReason.ProtocolError, 0x4b, error, pdu.bhs);
        return;
      }
      r2t.dataSN++;
      r2t.next = end;
      this.solicitedBytes -= d.dataLength;
      if (r2t.next === r2t.offset + r2t.length) {
        this.r2tByTag.delete(d.targetTransferTag);
        task.r2ts?.delete(d.targetTransferTag);
      }
    }
    if (d.dataLength > 0) this.addPieces(task, d.bufferOffset, dataPartsOf(pdu), d.dataLength);
    this.afterData(task);
  }

  /** A Data-Out sequence error at ERL 0: the data cannot be recovered, so the command ends now with
   *  CHECK CONDITION (ABORTED COMMAND) and the offending PDU is rejected (§7.1.2, §11.17). */
  private abandon(task: Task, reason: RejectReason, asc: number, ascq: number, bhs: Buffer): void {
    this.reject(reason, bhs);
    this.retire(task);
    this.sendScsiResult(task, { status: ScsiStatus.CheckCondition, sense: fixedSense(senseAbortedCommand, asc, ascq) });
    this.pump();
    this.solicit();
  }

  /** A PDU's data, `bytes` long, at `offset` of the task's buffer: kept as the pieces it arrived in. */
  private addPieces(task: Task, offset: number, parts: readonly Buffer[], bytes: number): void {
    if (task.failure === undefined) {
      let at = offset;
      for (const data of parts) {
        task.pieces.push({ offset: at, data });
        at += data.length;
      }
    }
    task.received += bytes;
    this.bufferedBytes += bytes;
    this.budget.usedBytes += bytes;
  }

  /** After a command or Data-Out: is the data complete, or are R2Ts due? */
  private afterData(task: Task): void {
    const cmd = task.cmd;
    // A refused command solicits nothing more: it is answered once unsolicited data stops.
    const done = !cmd.write || task.received >= cmd.expectedDataLength || (task.failure !== undefined && !task.unsolicitedOpen);
    if (done) {
      task.state = 'ready';
      this.collecting.delete(task);
      if (cmd.immediate) this.start(task);
      else this.pump();
      return;
    }
    if (task.nextR2TOffset === 0 && !task.unsolicitedOpen) task.nextR2TOffset = task.received;
    this.collecting.add(task);
    this.solicit();
  }

  /** Issues R2Ts (§11.8) in task arrival order within MaxOutstandingR2T, MaxBurstLength and the
   *  connection's buffering budget; the oldest task may always have one R2T so it progresses. */
  private solicit(): void {
    let first = true;
    for (const task of this.collecting) {
      const edtl = task.cmd.expectedDataLength;
      while (!task.unsolicitedOpen && task.failure === undefined && task.nextR2TOffset < edtl && (task.r2ts?.size ?? 0) < this.params.maxOutstandingR2T) {
        const length = Math.min(this.params.maxBurstBytes, edtl - task.nextR2TOffset);
        const withinBudget = this.bufferedBytes + this.solicitedBytes + length <= this.limits.pendingDataBytesMax
          && this.budget.usedBytes + length <= this.budget.bytesMax;
        if (!withinBudget && !(first && (task.r2ts?.size ?? 0) === 0)) return;
        const ttt = this.newTag();
        const r2t: R2TState = { task, offset: task.nextR2TOffset, length, next: task.nextR2TOffset, dataSN: 0 };
        (task.r2ts ??= new Map()).set(ttt, r2t);
        this.r2tByTag.set(ttt, r2t);
        this.solicitedBytes += length;
        task.nextR2TOffset += length;
        this.emit(
          encodeR2T(this.sequenced(false, {
            lun: task.cmd.lun,
            initiatorTaskTag: task.cmd.initiatorTaskTag,
            targetTransferTag: ttt,
            r2tSN: task.sn++,
            bufferOffset: r2t.offset,
            desiredLength: length,
          })),
        );
      }
      first = false;
    }
  }

  /** Starts the non-immediate tasks whose turn has come, strictly in CmdSN order (immediate ones
   *  start as soon as their data is in). */
  private pump(): void {
    while (this.order.length > 0 && this.order[0].state === 'ready') this.start(this.order.shift()!);
  }

  private start(task: Task): void {
    task.state = 'executing';
    this.executing.set(task.serial, task);
    if (task.failure !== undefined) {
      this.retire(task);
      this.sendScsiResult(task, task.failure);
      return;
    }
    const cmd = task.cmd;
    // A plain flag, not an AbortController: this runs for every command, and nothing listens.
    const signal: TaskSignal = { aborted: false };
    task.signal = signal;
    const head: RequestHead = {
      nexus: this.nexus,
      lun: cmd.lun,
      cdb: cmd.cdb,
      taskTag: cmd.initiatorTaskTag,
      attribute: cmd.attribute,
      expectedDataLength: cmd.expectedDataLength,
      expectedReadLength: cmd.expectedReadLength,
      signal,
    };
    const parts = cmd.write ? orderedParts(task) : undefined;
    let req: ScsiRequest;
    if (parts === undefined) req = scsiRequest(head, cmd.write ? assemble(task) : undefined);
    else if (parts.length === 1) req = scsiRequest(head, parts[0]);
    else req = scsiRequestOfPieces(head, parts, cmd.expectedDataLength);
    this.io.execute(task.serial, req);
  }

  /** The task leaves every table and its window slot opens. */
  private retire(task: Task): void {
    this.tasks.delete(task.cmd.initiatorTaskTag);
    this.executing.delete(task.serial);
    this.collecting.delete(task);
    if (task.r2ts !== undefined) {
      for (const [ttt, r2t] of task.r2ts) {
        this.r2tByTag.delete(ttt);
        this.solicitedBytes -= r2t.offset + r2t.length - r2t.next;
      }
      task.r2ts.clear();
    }
    const at = this.order.indexOf(task);
    if (at >= 0) this.order.splice(at, 1);
    this.bufferedBytes -= task.received;
    if (!this.closed) this.budget.usedBytes -= task.received;
    if (task.cmd.immediate) this.immediateOutstanding--;
    else this.window.finish();
  }

  private sendScsiResult(task: Task, response: ScsiResponse): void {
    const cmd = task.cmd;
    const bidi = cmd.read && cmd.write;
    let residual: Residual = noResidual;
    let bidiResidual: Residual | undefined;
    let dataIn: Buffer = noData;
    if (cmd.read) {
      const expected = bidi ? (cmd.expectedReadLength ?? 0) : cmd.expectedDataLength;
      const returned = response.dataIn ?? noData;
      dataIn = returned.length > expected ? returned.subarray(0, expected) : returned;
      const r = readResidual(expected, returned.length, bidi ? undefined : response.commandTransferBytes);
      if (bidi) bidiResidual = r;
      else residual = r;
    }
    if (cmd.write) {
      residual = residualOf(cmd.expectedDataLength, response.commandTransferBytes ?? cmd.expectedDataLength);
    } else if (!cmd.read) {
      residual = residualOf(cmd.expectedDataLength, response.commandTransferBytes ?? cmd.expectedDataLength);
    }
    // §11.7.4: status rides on the last Data-In only when no sense is needed and it is not an exception.
    const collapse =
      dataIn.length > 0 &&
      response.sense === undefined &&
      !bidi &&
      (response.status === ScsiStatus.Good || response.status === ScsiStatus.ConditionMet);
    const segments = planDataIn(dataIn.length, this.params.initiatorMaxRecvDataSegmentBytes, this.params.maxBurstBytes);
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const last = i === segments.length - 1;
      const withStatus = last && collapse;
      const statSN = this.takeStatSN(withStatus);
      this.emit(
        encodeDataIn({
          final: seg.final,
          lun: cmd.lun,
          initiatorTaskTag: cmd.initiatorTaskTag,
          expCmdSN: this.window.expCmdSN,
          maxCmdSN: this.window.maxCmdSN,
          dataSN: task.sn++,
          bufferOffset: seg.offsetBytes,
          dataLength: seg.lengthBytes,
          status: withStatus ? { status: response.status, statSN, residual } : undefined,
        }),
        dataIn.subarray(seg.offsetBytes, seg.offsetBytes + seg.lengthBytes),
      );
    }
    if (collapse) return;
    const sense = response.sense !== undefined ? senseSegment(response.sense) : undefined;
    this.emit(
      encodeScsiResponse(this.sequenced(true, {
        response: ScsiResponseCode.CommandCompleted,
        status: response.status,
        initiatorTaskTag: cmd.initiatorTaskTag,
        expDataSN: task.sn,
        residual,
        bidiResidual,
        dataLength: sense?.length ?? 0,
      })),
      sense,
    );
  }

  private onDataDigestError(pdu: Pdu): void {
    // §7.8: the PDU is discarded and rejected. A Data-Out's task cannot be completed at ERL 0: it
    // ends with CHECK CONDITION (ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR). A command PDU is
    // not accepted at all (its CmdSN stays open for the initiator to retry).
    const task = opcodeOf(pdu.bhs) === InitiatorOpcode.DataOut ? this.tasks.get(pdu.bhs.readUInt32BE(16)) : undefined;
    if (task === undefined || task.state !== 'collecting') {
      this.reject(RejectReason.DataDigestError, pdu.bhs);
      return;
    }
    this.abandon(task, RejectReason.DataDigestError, 0x47, 0x05, pdu.bhs);
  }

  // ---- NOP ----

  private onPingAnswer(pdu: Pdu): void {
    const nop = decodeNopOut(pdu);
    if (this.ping !== undefined && nop.targetTransferTag === this.ping.ttt) this.ping = undefined;
  }

  private onNopOut(pdu: Pdu, windowed: boolean): void {
    const nop = decodeNopOut(pdu);
    if (windowed) this.window.finish();
    const data = nop.data.subarray(0, Math.min(nop.data.length, this.params.initiatorMaxRecvDataSegmentBytes));
    this.emit(
      encodeNopIn(this.sequenced(true, {
        lun: nop.lun,
        initiatorTaskTag: nop.initiatorTaskTag,
        targetTransferTag: tagNone,
        dataLength: data.length,
      })),
      data,
    );
  }

  // ---- Text (SendTargets and FFP negotiation) ----

  private onText(pdu: Pdu, windowed: boolean): void {
    const t = decodeTextRequest(pdu);
    if (windowed) this.window.finish();
    if (t.initiatorTaskTag === tagNone || (t.final && t.continue)) {
      this.reject(RejectReason.InvalidPduField, pdu.bhs);
      return;
    }
    let ex = this.text;
    if (t.targetTransferTag !== tagNone) {
      if (ex === undefined || ex.itt !== t.initiatorTaskTag || ex.ttt !== t.targetTransferTag) {
        this.reject(RejectReason.InvalidPduField, pdu.bhs);
        return;
      }
      if (ex.segments.length > 0) {
        if (t.data.length > 0) {
          this.reject(RejectReason.ProtocolError, pdu.bhs);
          return;
        }
        this.sendTextSegment(ex, t.lun);
        return;
      }
    } else if (ex === undefined || ex.itt !== t.initiatorTaskTag || ex.segments.length > 0 || ex.requestBytes === 0) {
      // TTT 0xffffffff starts a new exchange and resets any other (§11.10.4).
      ex = { itt: t.initiatorTaskTag, ttt: this.newTag(), request: [], requestBytes: 0, segments: [] };
      this.text = ex;
    }
    if (ex.requestBytes + t.data.length > textBytesMax) {
      this.text = undefined;
      this.reject(RejectReason.ProtocolError, pdu.bhs);
      return;
    }
    ex.request.push(Buffer.from(t.data));
    ex.requestBytes += t.data.length;
    if (t.continue) {
      // More of the request follows: an empty answer asks for it (§11.11.2).
      this.emit(
        encodeTextResponse(this.sequenced(true, {
          final: false,
          continue: false,
          lun: t.lun,
          initiatorTaskTag: ex.itt,
          targetTransferTag: ex.ttt,
          dataLength: 0,
        })),
      );
      return;
    }
    const decoded = decodeText(Buffer.concat(ex.request));
    if (!decoded.ok) {
      this.text = undefined;
      this.reject(RejectReason.ProtocolError, pdu.bhs);
      return;
    }
    const answer = this.answerText(decoded.pairs);
    ex.request = [];
    ex.segments = splitText(answer, this.params.initiatorMaxRecvDataSegmentBytes);
    this.sendTextSegment(ex, t.lun);
  }

  private answerText(pairs: readonly TextPair[]): Buffer {
    const out: TextPair[] = [];
    const sendTargets = pairs.find(([k]) => k === 'SendTargets');
    if (sendTargets !== undefined) out.push(...this.sendTargets(sendTargets[1]));
    const others = pairs.filter(([k]) => k !== 'SendTargets');
    const negotiated = negotiate(initialNegotiation(this.prefs, this.login.sessionType), others, this.prefs, 'ffp');
    if (negotiated.ok) {
      out.push(...negotiated.responses);
      const mrdsl = negotiated.state.params.initiatorMaxRecvDataSegmentBytes;
      if (others.some(([k]) => k === 'MaxRecvDataSegmentLength')) this.params = { ...this.params, initiatorMaxRecvDataSegmentBytes: mrdsl };
    }
    return encodeText(out);
  }

  /** SendTargets (RFC 7143 Appendix C): All in a discovery session, the session's own target in a
   *  normal one, or the one named. */
  private sendTargets(value: string): TextPair[] {
    const all = this.discovery();
    const own = this.login.targetName;
    let chosen;
    if (this.login.sessionType === 'Discovery') chosen = value === 'All' ? all : all.filter((t) => t.iqn === value);
    else chosen = all.filter((t) => t.iqn === (value === '' || value === 'All' ? own : value));
    const out: TextPair[] = [];
    for (const target of chosen) {
      out.push(['TargetName', target.iqn]);
      for (const p of target.portals) {
        const host = p.address.includes(':') ? `[${p.address}]` : p.address;
        out.push(['TargetAddress', `${host}:${p.port},${p.portalGroupTag}`]);
      }
    }
    return out;
  }

  private sendTextSegment(ex: TextExchange, lun: number): void {
    const segment = ex.segments.shift() ?? Buffer.alloc(0);
    const more = ex.segments.length > 0;
    if (!more) this.text = undefined;
    this.emit(
      encodeTextResponse(this.sequenced(true, {
        final: !more,
        continue: more,
        lun,
        initiatorTaskTag: ex.itt,
        targetTransferTag: more ? ex.ttt : tagNone,
        dataLength: segment.length,
      })),
      segment,
    );
  }

  // ---- Logout ----

  private onLogout(pdu: Pdu, windowed: boolean): void {
    const l = decodeLogoutRequest(pdu);
    if (windowed) this.window.finish();
    let response = LogoutResponseCode.Closed;
    if (l.reason === LogoutReason.RemoveConnectionForRecovery) response = LogoutResponseCode.RecoveryNotSupported;
    else if (l.reason === LogoutReason.CloseConnection && l.cid !== this.login.cid) response = LogoutResponseCode.CidNotFound;
    else if (l.reason !== LogoutReason.CloseSession && l.reason !== LogoutReason.CloseConnection) {
      this.reject(RejectReason.InvalidPduField, pdu.bhs);
      return;
    }
    if (response === LogoutResponseCode.Closed) this.abortTasks(() => true);
    this.emit(
      encodeLogoutResponse(this.sequenced(true, {
        response,
        initiatorTaskTag: l.initiatorTaskTag,
        time2WaitS: 0,
        time2RetainS: 0,
      })),
    );
    if (response === LogoutResponseCode.Closed) this.shutdown('logout');
  }

  // ---- Task management ----

  private onTaskManagement(pdu: Pdu, windowed: boolean): void {
    const m = decodeTaskManagement(pdu);
    const fn = tmfFunctions[m.function];
    if (fn === undefined) {
      this.answerTmf(m.initiatorTaskTag, tmfResponseCodes['function-rejected'], windowed);
      return;
    }
    switch (fn) {
      case 'abort-task': {
        const task = this.tasks.get(m.referencedTaskTag);
        if (task === undefined || task.cmd.lun !== m.lun) {
          if (this.window.notYetArrived(m.refCmdSN) && this.tombstones.size < this.limits.commandWindowMax) {
            this.tombstones.add(m.refCmdSN);
            this.answerTmf(m.initiatorTaskTag, tmfResponseCodes['function-complete'], windowed);
          } else {
            this.answerTmf(m.initiatorTaskTag, tmfResponseCodes['task-does-not-exist'], windowed);
          }
          return;
        }
        this.abortTasks((t) => t === task);
        break;
      }
      case 'abort-task-set':
      case 'clear-task-set':
      case 'logical-unit-reset':
        this.abortTasks((t) => t.cmd.lun === m.lun);
        break;
      case 'target-warm-reset':
      case 'target-cold-reset':
        this.abortTasks(() => true);
        break;
      case 'task-reassign':
        this.answerTmf(m.initiatorTaskTag, tmfResponseCodes['reassignment-not-supported'], windowed);
        return;
      case 'clear-aca':
        break;
    }
    const serial = ++this.serial;
    this.pendingTmf.set(serial, { itt: m.initiatorTaskTag, windowed, cold: fn === 'target-cold-reset' });
    this.io.taskManagement(serial, { fn, nexus: this.nexus, lun: m.lun });
  }

  /** Aborted tasks leave silently (TaskReporting=RFC3720): no response, now or later. */
  private abortTasks(match: (t: Task) => boolean): void {
    for (const task of [...this.tasks.values()]) {
      if (!match(task)) continue;
      if (task.signal) task.signal.aborted = true;
      this.retire(task);
    }
    this.solicit();
    this.pump();
  }

  private answerTmf(itt: number, code: number, windowed: boolean): void {
    if (windowed) this.window.finish();
    this.emit(encodeTaskManagementResponse(this.sequenced(true, { response: code, initiatorTaskTag: itt })));
  }

  // ---- Reject ----

  private reject(reason: RejectReason, bhs: Buffer): void {
    this.emit(encodeReject(this.sequenced(true, { reason, dataSN: 0 })), Buffer.from(bhs.subarray(0, 48)));
  }

  /** Rejecting a command still uses up its CmdSN, or the window would stall behind it. */
  private rejectCommand(reason: RejectReason, bhs: Buffer, windowed: boolean): void {
    if (windowed) this.window.finish();
    this.reject(reason, bhs);
  }

  // ---- output ----

  /** The StatSN of the next target PDU; one that carries status consumes it. */
  private takeStatSN(status: boolean): number {
    const statSN = this.statSN;
    if (status) this.statSN = snAdd(this.statSN, 1);
    return statSN;
  }

  /** The PDU's fields with StatSN, ExpCmdSN and MaxCmdSN added (StatSN consumed when it carries
   *  status). Added to the literal, not spread into it: `{ ...sequence, more }` costs about a
   *  microsecond per field after the spread in Node 20's V8, on every response. */
  private sequenced<T extends object>(status: boolean, f: T): T & Sequence {
    const s = f as T & { statSN: number; expCmdSN: number; maxCmdSN: number };
    s.statSN = this.takeStatSN(status);
    s.expCmdSN = this.window.expCmdSN;
    s.maxCmdSN = this.window.maxCmdSN;
    return s;
  }

  private emit(bhs: Buffer, data?: Buffer): void {
    assert(!this.closed, 'emit after close');
    const parts = framePdu(bhs, data, this.digests);
    for (const p of parts) this.out.push(p);
  }

  private flush(): void {
    if (this.out.length === 0) return;
    const parts = this.out;
    this.out = [];
    const written = this.outWritten;
    if (written.length === 0) return this.io.send(parts);
    this.outWritten = [];
    this.io.send(parts, () => { for (const w of written) w(); });
  }

  /** Releases of buffers the PDUs in `out` point into, run once they are written. */
  private outWritten: Array<() => void> = [];

  private newTag(): number {
    const tag = this.nextTag;
    this.nextTag = this.nextTag >= 0xfffffffe ? 1 : this.nextTag + 1;
    return tag;
  }
}

/** The Data-Out pieces in buffer-offset order when they cover the transfer exactly and back to
 *  back (no copy); undefined when they do not (assemble() then places them by offset). */
function orderedParts(task: Task): Buffer[] | undefined {
  if (task.pieces.length === 0) return undefined;
  // Pieces come in offset order unless R2T sequences interleave: sort only then.
  return backToBack(task.pieces, task.cmd.expectedDataLength) ?? backToBack([...task.pieces].sort((a, b) => a.offset - b.offset), task.cmd.expectedDataLength);
}

function backToBack(pieces: ReadonlyArray<{ offset: number; data: Buffer }>, edtl: number): Buffer[] | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (const piece of pieces) {
    if (piece.offset !== at) return undefined;
    if (piece.data.length > 0) parts.push(piece.data);
    at += piece.data.length;
  }
  return at === edtl && parts.length > 0 ? parts : undefined;
}

/** One buffer of every Data-Out byte, in offset order (one piece is passed through uncopied). */
function assemble(task: Task): Buffer {
  const edtl = task.cmd.expectedDataLength;
  if (task.pieces.length === 1 && task.pieces[0].offset === 0 && task.pieces[0].data.length === edtl) return task.pieces[0].data;
  const out = Buffer.allocUnsafe(edtl);
  let filled = 0;
  for (const piece of task.pieces) {
    piece.data.copy(out, piece.offset);
    filled += piece.data.length;
  }
  assert(filled === edtl, 'Data-Out pieces must cover the transfer exactly');
  return out;
}
