// `metroctl verify --group G -f FILE [--repair] [--rate-mbps N]`: online compare of both copies of a
// group while host I/O goes on, run by the group's primary (MetroAgent.Verify). Prints progress (a
// bar on a terminal, lines otherwise), then every mismatching region. Exit 0: the copies match (or
// every mismatch was repaired); 1: mismatches, or the verify could not run; 2: bad usage.
import * as grpc from '@grpc/grpc-js';
import type { Command } from 'commander';
import { loadTopologyOrExit, DaemonError, EXIT_FAILED, EXIT_USAGE } from '../common/daemon.ts';
import { dial, call } from '../common/grpc-client.ts';
import { createProgress } from './progress.ts';
import { groupOrExit, jsonOutput } from './arguments.ts';
import { primaryOf, readCluster } from '../common/ops/cluster-ops.ts';
import type { Topology } from '../common/topology/index.ts';

interface Mismatch { volume: string; lun: number; region: string; offset_bytes: string; length_bytes: string }
interface Progress {
  done: boolean; bytes_total: string; bytes_checked: string; rate_bytes_per_sec: number; mismatch_count: string;
  mismatches: Mismatch[]; unsettled: Mismatch[]; repaired: boolean; repair_bytes_sent: string;
}

/** Finding the primary and setting a rate: a busy agent (or a first TLS handshake) may take seconds. */
const callDeadlineMs = 15_000;

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description('compare the per-region checksums of both copies of a group while I/O runs')
    .requiredOption('--group <name>', 'the group to verify')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('--repair', 'resync the regions found differing from the primary')
    .option('--rate-mbps <n>', 'bandwidth bound in megabits per second (default: replication.resyncMbps)')
    .option('-o, --output <format>', 'text or json', 'text')
    .addHelpText('after', '\nExamples:\n  metroctl verify --group db -f cluster.yaml\n  metroctl verify --group db --repair -f cluster.yaml\n  metroctl verify --group db --rate-mbps 200 -o json -f cluster.yaml\n')
    .action(async (opts: { group: string; file: string; repair?: boolean; rateMbps?: string; output: string }) => {
      const t = await loadTopologyOrExit(opts.file);
      const g = groupOrExit(t, opts.group);
      const rateMbps = opts.rateMbps === undefined ? 0 : Number(opts.rateMbps);
      if (!Number.isFinite(rateMbps) || rateMbps < 0 || (opts.rateMbps !== undefined && rateMbps === 0)) {
        throw new DaemonError(`--rate-mbps: found "${opts.rateMbps}", expected a positive number of megabits per second`, EXIT_USAGE);
      }
      jsonOutput(opts.output);
      const primary = await findPrimary(t, g.name, 'verify');
      const client = dial('agent.proto', 'MetroAgent', primary.agent.address, primary.agent.port);
      try {
        const final = await streamVerify(client, { group: g.name, repair: opts.repair ?? false, rate_bytes_per_sec: String(Math.round(rateMbps * 125_000)) }, opts.output === 'text');
        report(final, g.name, primary.name, opts.output, opts.repair ?? false);
        const clean = Number(final.mismatch_count) === 0 || final.repaired;
        process.exitCode = clean ? 0 : EXIT_FAILED;
      } finally {
        client.close();
      }
    });
}

/** `metroctl resync-rate --group G --mbps N -f FILE`: the bandwidth bound of G's resyncs, now. */
export function registerResyncRateCommand(program: Command): void {
  program
    .command('resync-rate')
    .description("set a group's resync and verify bandwidth at its primary now (until the agent restarts)")
    .requiredOption('--group <name>', 'the group')
    .requiredOption('--mbps <n>', 'megabits per second')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .addHelpText('after', '\nExamples:\n  metroctl resync-rate --group db --mbps 400 -f cluster.yaml   # until the agent restarts\n')
    .action(async (opts: { group: string; mbps: string; file: string }) => {
      const t = await loadTopologyOrExit(opts.file);
      const g = groupOrExit(t, opts.group);
      const mbps = Number(opts.mbps);
      if (!Number.isFinite(mbps) || mbps <= 0) throw new DaemonError(`--mbps: found "${opts.mbps}", expected a positive number of megabits per second`, EXIT_USAGE);
      const primary = await findPrimary(t, g.name, 'set the resync rate of');
      const client = dial('agent.proto', 'MetroAgent', primary.agent.address, primary.agent.port);
      try {
        const r = await call<{ previous_rate_bytes_per_sec: string }>(client, 'SetResyncRate', { group: g.name, rate_bytes_per_sec: String(Math.max(1, Math.round(mbps * 125_000))) }, callDeadlineMs);
        if (!r.ok) throw new DaemonError(`cannot set the resync rate of group ${g.name}: ${r.reason}`, EXIT_FAILED);
        process.stdout.write(`group ${g.name}: resync rate ${mbps} Mbps at ${primary.name} (was ${(Number(r.value.previous_rate_bytes_per_sec) / 125_000).toFixed(1)} Mbps)\n`);
      } finally {
        client.close();
      }
    });
}

/** The site serving the group as primary now, as the reachable agents report it (common/ops). */
async function findPrimary(t: Topology, group: string, verb: string): Promise<Topology['sites'][number]> {
  const view = await readCluster(t, callDeadlineMs);
  const p = primaryOf(view, group);
  if (p) return t.sites.find((s) => s.name === p.site)!;
  const why = view.sites.map((s) => `${s.name}: ${s.up ? 'not primary' : s.reason}`).join('; ');
  throw new DaemonError(`cannot ${verb} group ${group}: no reachable primary (${why})`, EXIT_FAILED);
}

function streamVerify(client: grpc.Client, request: object, showProgress: boolean): Promise<Progress> {
  return new Promise((resolve, reject) => {
    const stream = (client as unknown as { Verify(r: object): grpc.ClientReadableStream<Progress> }).Verify(request);
    // On stderr: stdout carries the result (JSON with -o json).
    const progress = showProgress ? createProgress({ title: 'verify (MiB)', stream: process.stderr }) : undefined;
    let final: Progress | undefined;
    stream.on('data', (p: Progress) => {
      progress?.update(Math.floor(Number(p.bytes_checked) / 2 ** 20), Math.ceil(Number(p.bytes_total) / 2 ** 20), `at ${mib(p.rate_bytes_per_sec)} MiB/s, mismatches ${p.mismatch_count}`);
      if (p.done) final = p;
    });
    stream.on('error', (err: grpc.ServiceError) => {
      progress?.stop();
      const reason = err.code === grpc.status.UNAVAILABLE && !err.details ? 'unreachable' : err.details || err.message;
      reject(new DaemonError(`verify failed: ${reason}`, EXIT_FAILED));
    });
    stream.on('end', () => {
      progress?.stop();
      if (final) resolve(final);
      else reject(new DaemonError('verify failed: the primary ended the verify without a result', EXIT_FAILED));
    });
  });
}

function report(p: Progress, group: string, primary: string, output: string, repair: boolean): void {
  const region = (m: Mismatch) => ({ volume: m.volume, lun: m.lun, region: Number(m.region), offsetBytes: Number(m.offset_bytes), lengthBytes: Number(m.length_bytes) });
  if (output === 'json') {
    process.stdout.write(JSON.stringify({
      group, primary, bytesChecked: Number(p.bytes_checked), mismatchCount: Number(p.mismatch_count),
      mismatches: p.mismatches.map(region), unsettled: p.unsettled.map(region),
      repaired: p.repaired, repairBytesSent: Number(p.repair_bytes_sent),
    }, null, 2) + '\n');
    return;
  }
  const n = Number(p.mismatch_count);
  for (const m of p.mismatches) {
    process.stdout.write(`mismatch: volume ${m.volume} (LUN ${m.lun}) region ${m.region}: bytes ${m.offset_bytes}..${Number(m.offset_bytes) + Number(m.length_bytes) - 1}\n`);
  }
  if (n > p.mismatches.length) process.stdout.write(`... and ${n - p.mismatches.length} more\n`);
  for (const m of p.unsettled) process.stdout.write(`unsettled: volume ${m.volume} region ${m.region} kept changing under the verify\n`);
  const summary = n === 0
    ? `group ${group}: both copies match (${mib(Number(p.bytes_checked))} MiB compared at ${primary} and its secondary)`
    : p.repaired
      ? `group ${group}: ${n} mismatching region${n === 1 ? '' : 's'} repaired (${mib(Number(p.repair_bytes_sent))} MiB resent from ${primary})`
      : `group ${group}: ${n} mismatching region${n === 1 ? '' : 's'}${repair ? '' : '; run again with --repair to resync them from the primary'}`;
  process.stdout.write(`${summary}\n`);
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
