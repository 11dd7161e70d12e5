// Field checks of MetroMirror messages (protos/mirror.proto) as proto-loader decodes them, run before a
// message reaches a MirrorSession or a MirrorApplier: a refused message changes no state and no volume
// data. Pure; returns the reason as one sentence, or undefined when the message is acceptable.
import { crc32c } from '@node-rs/crc32';
import {
  checkBytes, checkCrc, checkList, checkName, checkU32, checkU64, checkVolumeRange, firstRefusal, safeU64,
} from '../../common/grpc-validate.ts';
import { volumesPerGroupMax } from '../../common/topology/checks.ts';

type Msg = Record<string, any>;

/** The stream's refusal reason for a message that fails these checks (MirrorRefusal.reason). */
export const invalidMessageReason = 'INVALID_MESSAGE';
/** A mirror stream that has not sent its hello by then is refused. */
export const helloTimeoutMs = 10_000;
/** Largest MirrorWrite / ResyncData payload: the channels' message size limit bounds it anyway. */
export const mirrorDataBytesMax = 8 * 1024 * 1024;
/** Refusal sentences from the peer are logged: keep them short. */
const refusalTextBytesMax = 1024;

const seqPair = (where: string, m: Msg): string | undefined =>
  (
    checkU64(`${where}.applied_seq`, m.applied_seq) ??
    checkU64(`${where}.durable_seq`, m.durable_seq) ??
    (safeU64(m.durable_seq)! > safeU64(m.applied_seq)! ? `${where}.durable_seq ${m.durable_seq} is past applied_seq ${m.applied_seq}` : undefined)
  );

function checkHeartbeat(h: Msg): string | undefined {
  for (const f of ['epoch', 'sent_at_us', 'echo_sent_at_us', 'echo_held_us', 'last_seq', 'lag_bytes', 'lag_ms']) {
    const r = checkU64(`heartbeat.${f}`, h[f]);
    if (r) return r;
  }
  return undefined;
}

function checkRefusal(r: Msg): string | undefined {
  return (
    checkU64('refusal.epoch_seen', r.epoch_seen) ??
    checkU64('refusal.epoch_current', r.epoch_current) ??
    checkName('refusal.reason', r.reason) ??
    (typeof r.message === 'string' && Buffer.byteLength(r.message) <= refusalTextBytesMax ? undefined : `refusal.message is missing or longer than ${refusalTextBytesMax} bytes`)
  );
}

/** The first message of a stream, at the primary (geometry is compared by the session). */
export function checkHello(h: Msg | undefined): string | undefined {
  if (h === undefined || h === null) return 'the first message of a mirror stream must be a hello';
  const volumes = checkList('hello.volumes', h.volumes, volumesPerGroupMax);
  if (volumes) return volumes;
  for (const [i, v] of (h.volumes as Msg[]).entries()) {
    const r = (
      (v.volume === i ? undefined : `hello.volumes[${i}].volume ${v.volume} is not ${i} (volumes are listed in LUN order)`) ??
      checkU64(`hello.volumes[${i}].size_bytes`, v.size_bytes) ??
      checkU32(`hello.volumes[${i}].region_size_bytes`, v.region_size_bytes, 0xffffffff, 512)
    );
    if (r) return r;
  }
  return (
    checkName('hello.cluster', h.cluster) ??
    checkName('hello.group', h.group) ??
    checkName('hello.site', h.site) ??
    checkU64('hello.epoch', h.epoch) ??
    seqPair('hello', h)
  );
}

/** Every later message of the secondary, at the primary. volumeSizesNow gives the group's sizes in
 *  LUN order; only messages naming a volume ask for them (acks and heartbeats, the steady traffic, never). */
export function checkSecondaryMessage(m: Msg, volumeSizesNow: () => readonly number[]): string | undefined {
  switch (m.kind) {
    case 'ack':
      return (checkU64('ack.epoch', m.ack.epoch) ?? seqPair('ack', m.ack));
    case 'heartbeat':
      return checkHeartbeat(m.heartbeat);
    case 'refusal':
      return checkRefusal(m.refusal);
    case 'resync_request': {
      const q = m.resync_request;
      const r = (checkU64('resync_request.epoch', q.epoch) ?? checkU32('resync_request.region_size_bytes', q.region_size_bytes, 0xffffffff, 512));
      if (r) return r;
      const volumeSizes = volumeSizesNow();
      if (!Number.isInteger(q.volume) || q.volume < 0 || q.volume >= volumeSizes.length) return `resync_request.volume ${q.volume} does not exist`;
      const regions = Math.ceil(volumeSizes[q.volume] / q.region_size_bytes);
      return checkBytes('resync_request.dirty_bitmap', q.dirty_bitmap, Math.ceil(regions / 8));
    }
    case 'checksums': {
      const c = m.checksums;
      const r = (
        checkU64('checksums.epoch', c.epoch) ??
        checkU64('checksums.request_id', c.request_id) ??
        checkU64('checksums.first_region', c.first_region) ??
        checkU64('checksums.at_seq', c.at_seq) ??
        checkU32('checksums.region_size_bytes', c.region_size_bytes, 0xffffffff, 512)
      );
      if (r) return r;
      const volumeSizes = volumeSizesNow();
      if (!Number.isInteger(c.volume) || c.volume < 0 || c.volume >= volumeSizes.length) return `checksums.volume ${c.volume} does not exist`;
      const regions = Math.ceil(volumeSizes[c.volume] / c.region_size_bytes);
      return checkList('checksums.crc32c', c.crc32c, Math.max(0, regions - safeU64(c.first_region)!));
    }
    case 'hello':
      return 'a second hello on one stream';
    default:
      return `a message of no known kind (${String(m.kind)})`;
  }
}

/** The primary's welcome, at the secondary (the epoch is judged by the applier). */
export function checkWelcome(w: Msg): string | undefined {
  const sizes: unknown[] = Array.isArray(w.volume_size_bytes) ? w.volume_size_bytes : [];
  if (sizes.length > volumesPerGroupMax) return `welcome.volume_size_bytes lists ${sizes.length} volumes, more than ${volumesPerGroupMax}`;
  return firstRefusal(
    checkU64('welcome.resume_seq', w.resume_seq, Number.MAX_SAFE_INTEGER, 1), checkName('welcome.site', w.site),
    ...sizes.map((x, i) => checkU64(`welcome.volume_size_bytes[${i}]`, x, Number.MAX_SAFE_INTEGER, 512)),
  );
}

/** A state record's payload (a LUN's persistent reservations: 64 registrations are a few KiB). */
export const stateRecordBytesMax = 256 * 1024;

/** One entry of a batch, at the secondary, before anything of its batch is applied. */
export function checkEntry(e: Msg, volumeSizes: readonly number[]): string | undefined {
  switch (e.kind) {
    case 'write': {
      const w = e.write;
      return (
        checkBytes('write.data', w.data, mirrorDataBytesMax, 1) ??
        (checkVolumeRange('write', { volumeSizes, volume: w.volume, offsetBytes: w.offset_bytes, lengthBytes: Buffer.isBuffer(w.data) ? w.data.length : undefined, lengthBytesMax: mirrorDataBytesMax })) ??
        checkCrc('write.crc32c', w.crc32c)
      );
    }
    case 'deallocate': {
      const d = e.deallocate;
      return checkVolumeRange('deallocate', { volumeSizes, volume: d.volume, offsetBytes: d.offset_bytes, lengthBytes: d.length_bytes, lengthBytesMax: Number.MAX_SAFE_INTEGER });
    }
    case 'flush': {
      const f = e.flush;
      if (f.all_volumes) return undefined;
      return Number.isInteger(f.volume) && f.volume >= 0 && f.volume < volumeSizes.length ? undefined : `flush.volume ${f.volume} does not exist`;
    }
    case 'state': {
      const r = e.state;
      return (
        checkName('state.kind', r.kind) ??
        (Number.isInteger(r.volume) && r.volume >= 0 && r.volume < volumeSizes.length ? undefined : `state.volume ${r.volume} does not exist`) ??
        checkBytes('state.payload', r.payload, stateRecordBytesMax, 1) ??
        (checkCrc('state.crc32c', r.crc32c, Buffer.isBuffer(r.payload) ? crc32c(r.payload) : undefined))
      );
    }
    default:
      return undefined; // other kinds are judged by the applier's own table
  }
}

/** The primary's heartbeats and refusals, at the secondary. */
export function checkPrimaryControl(m: Msg): string | undefined {
  if (m.kind === 'heartbeat') return checkHeartbeat(m.heartbeat);
  if (m.kind === 'refusal') return checkRefusal(m.refusal);
  return undefined;
}
