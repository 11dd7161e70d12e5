// Pure mapping between the SCSI layer's request/response types and forward.proto messages (as
// proto-loader decodes them: keepCase, 64-bit values as strings, enums as names). No I/O here.
import { assert } from '../../common/assert.ts';
import type { ScsiRequest, ScsiResponse, ScsiStatus, TaskAttribute, TaskManagementFunction, TaskManagementResult, TaskSignal } from '../scsi/types.ts';
import { scsiRequest, scsiRequestOfPieces, type RequestHead } from '../scsi/request.ts';

const attributeNames: Readonly<Record<TaskAttribute, string>> = {
  untagged: 'TASK_ATTRIBUTE_UNTAGGED',
  simple: 'TASK_ATTRIBUTE_SIMPLE',
  ordered: 'TASK_ATTRIBUTE_ORDERED',
  'head-of-queue': 'TASK_ATTRIBUTE_HEAD_OF_QUEUE',
  aca: 'TASK_ATTRIBUTE_ACA',
};
const attributeByName = new Map(Object.entries(attributeNames).map(([k, v]) => [v, k as TaskAttribute]));

const tmfNames: Readonly<Record<Exclude<TaskManagementFunction, 'task-reassign'>, string>> = {
  'abort-task': 'TMF_ABORT_TASK',
  'abort-task-set': 'TMF_ABORT_TASK_SET',
  'clear-aca': 'TMF_CLEAR_ACA',
  'clear-task-set': 'TMF_CLEAR_TASK_SET',
  'logical-unit-reset': 'TMF_LOGICAL_UNIT_RESET',
  'target-warm-reset': 'TMF_TARGET_WARM_RESET',
  'target-cold-reset': 'TMF_TARGET_COLD_RESET',
};
const tmfByName = new Map(Object.entries(tmfNames).map(([k, v]) => [v, k as TaskManagementFunction]));

const tmfResultNames: Readonly<Record<TaskManagementResult, string>> = {
  'function-complete': 'TMF_RESULT_FUNCTION_COMPLETE',
  'task-does-not-exist': 'TMF_RESULT_TASK_DOES_NOT_EXIST',
  'lun-does-not-exist': 'TMF_RESULT_LUN_DOES_NOT_EXIST',
  'task-still-allegiant': 'TMF_RESULT_TASK_STILL_ALLEGIANT',
  'reassignment-not-supported': 'TMF_RESULT_REASSIGNMENT_NOT_SUPPORTED',
  'function-not-supported': 'TMF_RESULT_FUNCTION_NOT_SUPPORTED',
  'authorization-failed': 'TMF_RESULT_AUTHORIZATION_FAILED',
  'function-rejected': 'TMF_RESULT_FUNCTION_REJECTED',
};
const tmfResultByName = new Map(Object.entries(tmfResultNames).map(([k, v]) => [v, k as TaskManagementResult]));

/**
 * Wire form of one command without its Data-Out (forward-pieces.ts pieceEvents adds it, in pieces);
 * `nexus` is the stream's handle for the request's nexus.
 */
export function commandMessage(id: number, nexus: number, req: ScsiRequest): Record<string, unknown> {
  return {
    id: String(id),
    nexus,
    lun: req.lun,
    cdb: req.cdb,
    task_tag: req.taskTag >>> 0,
    attribute: attributeNames[req.attribute],
    expected_data_length: req.expectedDataLength,
    expected_read_length: req.expectedReadLength ?? 0,
    has_expected_read_length: req.expectedReadLength !== undefined,
    // Parts first: a multi-PDU request's dataOut is a getter that joins them.
    has_data_out: req.dataOutParts !== undefined || req.dataOut !== undefined,
  };
}

/** A command's Data-Out as the transport received it: a multi-PDU write's parts are not joined. */
export function dataOutOf(req: ScsiRequest): readonly Buffer[] {
  if (req.dataOutParts !== undefined) return req.dataOutParts;
  return req.dataOut !== undefined ? [req.dataOut] : [];
}

/** The request a forwarded command stands for, at the primary (the nexus already resolved). */
export function requestOf(m: Record<string, any>, nexus: ScsiRequest['nexus'], signal: TaskSignal, dataOutParts?: Buffer[]): ScsiRequest {
  const head: RequestHead = {
    nexus,
    lun: m.lun,
    cdb: m.cdb,
    taskTag: m.task_tag,
    attribute: attributeByName.get(m.attribute) ?? 'simple',
    expectedDataLength: m.expected_data_length,
    expectedReadLength: m.has_expected_read_length ? m.expected_read_length : undefined,
    signal,
  };
  if (!dataOutParts || dataOutParts.length <= 1) return scsiRequest(head, m.has_data_out ? m.data_out : undefined);
  // Several pieces: WRITE stores them as they are; any other command joins them on first access.
  return scsiRequestOfPieces(head, dataOutParts);
}

export function resultMessage(id: string, r: ScsiResponse): Record<string, unknown> {
  return {
    id,
    status: r.status,
    sense: r.sense,
    data_in: r.dataIn,
    has_data_in: r.dataIn !== undefined,
    command_transfer_bytes: r.commandTransferBytes === undefined ? '0' : String(r.commandTransferBytes),
    has_command_transfer_bytes: r.commandTransferBytes !== undefined,
  };
}

export function responseOf(m: Record<string, any>): ScsiResponse {
  return {
    status: m.status as ScsiStatus,
    sense: m.sense && m.sense.length > 0 ? m.sense : undefined,
    dataIn: m.has_data_in ? m.data_in : undefined,
    commandTransferBytes: m.has_command_transfer_bytes ? Number(m.command_transfer_bytes) : undefined,
  };
}

export function tmfName(fn: TaskManagementFunction): string {
  assert(fn !== 'task-reassign', 'TASK REASSIGN is answered by the transport, never forwarded');
  return tmfNames[fn];
}

export function tmfOf(name: string): TaskManagementFunction | undefined {
  return tmfByName.get(name);
}

export function tmfResultName(r: TaskManagementResult): string {
  return tmfResultNames[r];
}

export function tmfResultOf(name: string): TaskManagementResult {
  return tmfResultByName.get(name) ?? 'function-rejected';
}

/** Bytes a command holds in flight: what it sends plus what it may bring back (and its CDB). */
export function commandBytes(c: { readonly expectedDataLength: number; readonly expectedReadLength?: number; readonly cdb: { readonly length: number } }): number {
  return c.expectedDataLength + (c.expectedReadLength ?? 0) + c.cdb.length;
}

/**
 * Whether one more command of `bytes` stays within the welcome's limits, given what is outstanding:
 * the secondary admits by it, the primary refuses a stream that breaks it. One command larger than
 * the byte bound still goes alone.
 */
export function withinBounds(outstanding: { commands: number; bytes: number }, bytes: number, limits: { commandsMax: number; bytesMax: number }): boolean {
  return outstanding.commands < limits.commandsMax && (outstanding.commands === 0 || outstanding.bytes + bytes <= limits.bytesMax);
}
