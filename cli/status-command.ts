// `metroctl status -f FILE [-o json]`: the cluster at a glance: each daemon's reachability and, per
// group, where it is served and with which LUNs. Exit 1 when a daemon is unreachable.
import Table from 'cli-table3';
import type { Command } from 'commander';
import { loadTopologyOrExit, EXIT_FAILED } from '../common/daemon.ts';
import { dial, call, type CallResult } from '../common/grpc-client.ts';

interface Health { role: string; cluster: string; site: string; version: string; uptime_ms: string; pid: number }
interface AgentStatus {
  cluster: string;
  site: string;
  portal: { address: string; port: number; portal_group_tag: number; sessions: number };
  groups: Array<{ name: string; iqn: string; preferred_site: string; role: string; epoch: string; volumes: Array<{ name: string; lun: number; size_bytes: string; naa: string }> }>;
}

export function registerStatusCommand(program: Command): void {
  program
    .command('status')
    .description('show sites, witness and groups of a running cluster')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('-o, --output <format>', 'text or json', 'text')
    .action(async (opts: { file: string; output: string }) => {
      const t = await loadTopologyOrExit(opts.file);
      const witness = dial('witness.proto', 'MetroWitness', t.witness.address, t.witness.port);
      const agents = t.sites.map((s) => dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port));
      const [wh, ...rest] = await Promise.all([
        call<Health>(witness, 'Health', {}),
        ...agents.flatMap((a) => [call<Health>(a, 'Health', {}), call<AgentStatus>(a, 'Status', {})]),
      ]);
      witness.close();
      agents.forEach((a) => a.close());
      const sites = t.sites.map((s, i) => ({
        name: s.name, health: rest[2 * i] as CallResult<Health>, status: rest[2 * i + 1] as CallResult<AgentStatus>,
      }));
      const report = {
        cluster: t.name,
        witness: { address: `${t.witness.address}:${t.witness.port}`, ...summarize(wh) },
        sites: sites.map((s) => ({ name: s.name, ...summarize(s.health), groups: s.status.ok ? s.status.value.groups : [] })),
      };
      if (opts.output === 'json') process.stdout.write(JSON.stringify(report, null, 2) + '\n');
      else printText(t.name, report);
      const allUp = wh.ok && sites.every((s) => s.health.ok);
      if (!allUp) process.exitCode = EXIT_FAILED;
    });
}

function summarize(h: CallResult<Health>): { up: boolean; pid?: number; uptimeMs?: number; version?: string; reason?: string } {
  return h.ok
    ? { up: true, pid: h.value.pid, uptimeMs: Number(h.value.uptime_ms), version: h.value.version }
    : { up: false, reason: h.reason };
}

function printText(cluster: string, r: {
  witness: ReturnType<typeof summarize> & { address: string };
  sites: Array<ReturnType<typeof summarize> & { name: string; groups: AgentStatus['groups'] }>;
}): void {
  // Colours only for a person at a terminal; scripts and logs get plain text.
  const style = process.stdout.isTTY ? {} : { style: { head: [], border: [] } };
  const daemons = new Table({ head: ['daemon', 'state', 'pid', 'uptime'], ...style });
  daemons.push(['witness', r.witness.up ? 'up' : `DOWN (${r.witness.reason})`, r.witness.pid ?? '', fmtUptime(r.witness.uptimeMs)]);
  for (const s of r.sites) daemons.push([`agent ${s.name}`, s.up ? 'up' : `DOWN (${s.reason})`, s.pid ?? '', fmtUptime(s.uptimeMs)]);
  const groups = new Table({ head: ['group', 'site', 'role', 'epoch', 'LUNs'], ...style });
  for (const s of r.sites) {
    for (const g of s.groups) {
      groups.push([g.name, s.name, g.role, g.epoch, g.volumes.map((v) => `${v.lun}:${v.name}`).join(' ')]);
    }
  }
  process.stdout.write(`cluster ${cluster}\n${daemons.toString()}\n${groups.toString()}\n`);
}

function fmtUptime(ms: number | undefined): string {
  if (ms === undefined) return '';
  const s = Math.floor(ms / 1000);
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : `${Math.floor(s / 3600)}h`;
}
