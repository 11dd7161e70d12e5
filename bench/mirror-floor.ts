// The mirror's transport floor on this machine: the least CPU a mirrored 4 KiB write costs when
// nothing but the mirror's own wire travels. Two processes, as the agents run: the secondary dials
// the primary with the agents' mutual TLS (the bench topology's automatic PKI) and the receive
// window the applier sets; the primary streams MetroMirror batches (protos/mirror.proto through the
// shared proto-loader options) of 4 KiB writes with their CRC32C, with as many batches in flight as
// the mirror window allows; the secondary checks each CRC32C, pwrites the data at a spread offset of
// a sparse file and acknowledges each batch. No iSCSI, no dirty map, no ack policy, no heartbeats:
// whatever the agents spend beyond these figures is theirs, and no agent can spend less.
//
// `npm run bench` runs it after the mirror comparison and derives from it the highest
// mirrored/unmirrored ratio this machine allows (report in main.ts). Run alone:
//   node --import=tsx bench/mirror-floor.ts [--batch 16] [--seconds 5]
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';
import { Command, InvalidArgumentError, Option } from 'commander';
import type * as grpc from '@grpc/grpc-js';
import { crc32c } from '@node-rs/crc32';
import { channelFor } from '../common/grpc-client.ts';
import { startGrpcServer } from '../common/grpc-server.ts';
import { createLogger } from '../common/log.ts';
import { serviceOf } from '../common/proto.ts';
import { ensurePkiAt, autoPkiDir } from '../common/tls/pki.ts';
import { loadGrpcSecurity, useGrpcSecurity } from '../common/tls/grpc-security.ts';
import type { Identity } from '../common/tls/identity.ts';
import { loadTopology, type Topology } from '../common/topology/index.ts';
import { applierFlowControlWindowBytes } from '../node-agent/mirror/mirror-applier.ts';
import { mirrorWindowDefaults } from '../node-agent/mirror/mirror-window.ts';
import { benchTopology } from './agent-target.ts';
import { cpuMs } from './proc-stats.ts';

export interface FloorFigures {
  /** Writes per batch message (the QD32 case's depth over the batches the window keeps in flight). */
  readonly batchEntries: number;
  readonly batchesInFlight: number;
  readonly writesPerSec: number;
  /** CPU (user + system, every thread) per mirrored write, each side. */
  readonly primaryCpuUsPerWrite: number;
  readonly secondaryCpuUsPerWrite: number;
}

export interface FloorOptions {
  readonly dir: string;
  /** Loopback hosts for the two sites and the (never started) witness of the bench topology. */
  readonly hosts: readonly [string, string, string];
  readonly batchEntries: number;
  readonly seconds: number;
  readonly signal: AbortSignal;
}

const writeBytes = 4096;
const fileBytes = 1024 ** 3;
const warmupMs = 2000;
const readyTimeoutMs = 60_000;
const selfFile = fileURLToPath(import.meta.url);

/** The batch a host's writes at `depth` make: what queues while the window's other batches are in flight. */
export function floorBatchEntries(depth: number): number {
  return Math.max(1, Math.round(depth / mirrorWindowDefaults.inflightBatchesMax));
}

/** Lines a floor process prints on stdout, one JSON object each. */
type FloorLine = { ready: true } | { mark: 'start' | 'end'; writes: number };

/** Measures the floor once: both processes started here, timed over `seconds` after a warm-up. */
export async function runMirrorFloor(o: FloorOptions): Promise<FloorFigures> {
  fs.mkdirSync(o.dir, { recursive: true });
  const topologyFile = path.join(o.dir, 'topology.yaml');
  fs.writeFileSync(topologyFile, benchTopology(o.hosts, fileBytes, 'sync'));
  const t = await topologyOf(topologyFile);
  await ensurePkiAt(t, autoPkiDir(t));
  const children: ChildProcess[] = [];
  const stop = (): void => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); };
  o.signal.addEventListener('abort', stop, { once: true });
  try {
    const changed = new EventEmitter();
    const primary = startSide('primary', topologyFile, o, children, changed);
    await nextLine(primary, [primary], changed, readyTimeoutMs, (l) => 'ready' in l);
    const secondary = startSide('secondary', topologyFile, o, children, changed);
    const both = [primary, secondary];
    const start = await nextLine(primary, both, changed, readyTimeoutMs + warmupMs, (l) => 'mark' in l && l.mark === 'start');
    const cpuStart = [cpuMs(primary.pid), cpuMs(secondary.pid)];
    const t0 = performance.now();
    const end = await nextLine(primary, both, changed, o.seconds * 1000 + readyTimeoutMs, (l) => 'mark' in l && l.mark === 'end');
    const cpuEnd = [cpuMs(primary.pid), cpuMs(secondary.pid)];
    const seconds = (performance.now() - t0) / 1000;
    if (cpuStart.includes(undefined) || cpuEnd.includes(undefined)) throw new Error('a mirror floor process exited while it was timed');
    const writes = (end as { writes: number }).writes - (start as { writes: number }).writes;
    if (writes <= 0) throw new Error('the mirror floor made no writes while it was timed');
    return {
      batchEntries: o.batchEntries,
      batchesInFlight: mirrorWindowDefaults.inflightBatchesMax,
      writesPerSec: writes / seconds,
      primaryCpuUsPerWrite: ((cpuEnd[0]! - cpuStart[0]!) * 1000) / writes,
      secondaryCpuUsPerWrite: ((cpuEnd[1]! - cpuStart[1]!) * 1000) / writes,
    };
  } finally {
    o.signal.removeEventListener('abort', stop);
    stop();
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
  }
}

async function topologyOf(file: string): Promise<Topology> {
  const r = await loadTopology(file);
  if (!r.ok) throw new Error(`bench topology ${file}: ${r.errors.map((e) => e.message).join('; ')}`);
  return r.topology;
}

interface Side {
  readonly pid: number;
  /** Why the process ended, once it has (its last words on stderr). */
  ended(): string | undefined;
  /** Takes the lines up to the first that satisfies `wanted`, if one came. */
  take(wanted: (l: FloorLine) => boolean): FloorLine | undefined;
}

/**
 * The next line of `side` that satisfies `wanted`; fails as soon as either process ends or the time
 * is up. Every line and exit of both processes wakes it (`changed`).
 */
async function nextLine(side: Side, sides: readonly Side[], changed: EventEmitter, timeoutMs: number, wanted: (l: FloorLine) => boolean): Promise<FloorLine> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const line = side.take(wanted);
    if (line !== undefined) return line;
    for (const s of sides) {
      const why = s.ended();
      if (why !== undefined) throw new Error(why);
    }
    const left = deadline - performance.now();
    if (left <= 0) throw new Error(`the mirror floor did not get on within ${timeoutMs} ms`);
    await new Promise<void>((resolve) => {
      const done = (): void => { clearTimeout(timer); changed.off('change', done); resolve(); };
      const timer = setTimeout(done, left);
      changed.on('change', done);
    });
  }
}

function startSide(role: 'primary' | 'secondary', topologyFile: string, o: FloorOptions, children: ChildProcess[], changed: EventEmitter): Side {
  const args = [...process.execArgv, selfFile, '--role', role, '--topology', topologyFile, '--batch', String(o.batchEntries), '--seconds', String(o.seconds)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
  const lines: FloorLine[] = [];
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    try { lines.push(JSON.parse(l) as FloorLine); } catch { /* not ours: a library's line */ }
    changed.emit('change');
  });
  child.once('exit', () => changed.emit('change'));
  return {
    pid: child.pid!,
    ended: () => (child.exitCode !== null || child.signalCode !== null
      ? `the mirror floor's ${role} exited (${child.exitCode ?? child.signalCode}): ${stderr.trim() || 'no message'}`
      : undefined),
    take(wanted) {
      const i = lines.findIndex(wanted);
      return i < 0 ? undefined : lines.splice(0, i + 1)[i];
    },
  };
}

function say(l: FloorLine): void {
  process.stdout.write(JSON.stringify(l) + '\n');
}

const agentOf = (t: Topology, site: string): Identity => ({ kind: 'agent', cluster: t.name, site });

/** The primary's side: serves Attach with the agents' security, streams batches, counts acknowledged writes. */
async function servePrimary(t: Topology, batchEntries: number, seconds: number): Promise<void> {
  const site = t.sites[0];
  useGrpcSecurity(loadGrpcSecurity(t, agentOf(t, site.name)));
  // Distinct buffers, as a host's writes are; the CRC32C is computed per write as the agent does.
  const pool = Array.from({ length: 64 }, (_, i) => Buffer.alloc(writeBytes, i + 1));
  const Mirror = serviceOf('mirror.proto', 'MetroMirror');
  const attach = (call: grpc.ServerDuplexStream<Record<string, any>, Record<string, unknown>>): void => {
    let seq = 1;
    let inflight = 0;
    let acked = 0;
    const fill = (): void => {
      while (inflight < mirrorWindowDefaults.inflightBatchesMax) {
        const entries = [];
        for (let i = 0; i < batchEntries; i++, seq++) {
          const data = pool[seq % pool.length];
          // 7919 is coprime with the slot count: offsets spread over the whole file.
          const offset = ((seq * 7919) % (fileBytes / writeBytes)) * writeBytes;
          entries.push({ seq: String(seq), write: { volume: 0, offset_bytes: String(offset), data, crc32c: crc32c(data), fua: false } });
        }
        call.write({ batch: { epoch: '1', entries } });
        inflight++;
      }
    };
    call.on('data', (m: Record<string, any>) => {
      if (m.kind === 'hello') {
        fill();
        setTimeout(() => {
          say({ mark: 'start', writes: acked });
          // Streaming goes on until the bench stops both processes: the secondary is still working when its CPU time is read.
          setTimeout(() => say({ mark: 'end', writes: acked }), seconds * 1000);
        }, warmupMs);
      } else if (m.kind === 'ack') {
        inflight--;
        acked += batchEntries;
        fill();
      }
    });
    call.on('error', () => undefined);
  };
  await startGrpcServer({
    address: site.agent.address, port: site.agent.port, log: createLogger({ component: 'mirror-floor', level: 'error' }),
    services: [{ definition: Mirror.service, implementation: { Attach: attach }, access: { Attach: 'peer-agent' } }],
  });
  say({ ready: true });
}

/** The secondary's side: dials the primary, checks and pwrites every write, acknowledges each batch. */
function runSecondary(t: Topology, dir: string): void {
  const [primarySite, own] = t.sites;
  useGrpcSecurity(loadGrpcSecurity(t, agentOf(t, own.name)));
  const file = path.join(dir, 'floor-secondary.img');
  const fd = fs.openSync(file, 'w+');
  fs.ftruncateSync(fd, fileBytes);
  const Mirror = serviceOf('mirror.proto', 'MetroMirror');
  const channel = channelFor(primarySite.agent.address, primarySite.agent.port, {
    expect: agentOf(t, primarySite.name), channel: { 'grpc-node.flow_control_window': applierFlowControlWindowBytes },
  });
  const client = new Mirror(channel.target, channel.credentials, channel.options);
  const call = client.Attach() as grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>>;
  call.on('data', (m: Record<string, any>) => {
    if (m.kind !== 'batch') return;
    const entries = m.batch.entries as Array<{ seq: string; write: { offset_bytes: string; data: Buffer; crc32c: number } }>;
    for (const e of entries) {
      if (crc32c(e.write.data) !== e.write.crc32c) throw new Error(`entry ${e.seq}: CRC32C does not match`);
      fs.writeSync(fd, e.write.data, 0, e.write.data.length, Number(e.write.offset_bytes));
    }
    call.write({ ack: { epoch: '1', applied_seq: entries[entries.length - 1].seq, durable_seq: '0' } });
  });
  const close = (): void => { fs.closeSync(fd); fs.rmSync(file, { force: true }); client.close(); };
  call.on('error', close);
  call.on('end', close);
  call.write({ hello: { cluster: t.name, group: t.groups[0].name, site: own.name, epoch: '1' } });
}

function positive(v: string): number {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError('expected a positive number');
  return n;
}

async function cli(): Promise<void> {
  const program = new Command('mirror-floor')
    .description("the mirror's transport floor on this machine: CPU per mirrored 4 KiB write on each side, the mirror's wire alone")
    .option('--batch <n>', 'writes per batch message', (v) => { const n = positive(v); if (!Number.isInteger(n)) throw new InvalidArgumentError('expected a whole number'); return n; }, floorBatchEntries(32))
    .option('--seconds <s>', 'timed seconds after the warm-up', positive, 5)
    .addOption(new Option('--role <role>', 'one side of a pair this program started').choices(['primary', 'secondary']).hideHelp())
    .addOption(new Option('--topology <file>', "the pair's topology").hideHelp())
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  program.parse();
  const o = program.opts<{ batch: number; seconds: number; role?: 'primary' | 'secondary'; topology?: string }>();
  if (o.role !== undefined) {
    const file = o.topology;
    if (file === undefined) throw new Error('--role needs --topology');
    const t = await topologyOf(file);
    if (o.role === 'primary') await servePrimary(t, o.batch, o.seconds);
    else runSecondary(t, path.dirname(file));
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metro-floor-'));
  const octet = 100 + (process.pid % 150);
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  try {
    const f = await runMirrorFloor({ dir, hosts: [`127.0.${octet}.8`, `127.0.${octet}.9`, `127.0.${octet}.10`], batchEntries: o.batch, seconds: o.seconds, signal: ac.signal });
    process.stdout.write(`mirror floor: ${f.batchEntries}-write batches, ${f.batchesInFlight} in flight: ${Math.round(f.writesPerSec)} writes/s; CPU per write: primary ${f.primaryCpuUsPerWrite.toFixed(1)} us, secondary ${f.secondaryCpuUsPerWrite.toFixed(1)} us\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && fs.realpathSync(process.argv[1]) === selfFile) {
  cli().catch((err: Error) => {
    process.stderr.write(`mirror floor: ${err.message}\n`);
    process.exit(1);
  });
}
