// `metroctl drill run|list|report`: the topology's drills, run by the witness (scheduled or now),
// and their reports from the witness's history. Reports print as Markdown, or JSON with -o json
// (fields: common/drills/report.ts). `drill run` exits 0 only when the drill passed.
import os from 'node:os';
import type { Command } from 'commander';
import type * as grpc from '@grpc/grpc-js';
import Table from 'cli-table3';
import { loadTopologyOrExit, DaemonError, EXIT_FAILED, EXIT_USAGE } from '../common/daemon.ts';
import { dial, call } from '../common/grpc-client.ts';
import { reportMarkdown, type DrillReport } from '../common/drills/report.ts';
import type { Topology } from '../common/topology/index.ts';
import { createProgress } from './progress.ts';
import type { DrillListWire } from './status-types.ts';
import { jsonOutput } from './arguments.ts';

const out = (s: string): void => { process.stdout.write(s.endsWith('\n') ? s : s + '\n'); };
const witnessOf = (t: Topology): grpc.Client => dial('drills.proto', 'MetroDrills', t.witness.address, t.witness.port);
export const drillRunDeadlineMs = 15 * 60_000;

export function registerDrillCommands(program: Command): void {
  const drill = program.command('drill').description('scheduled, measured switchover drills run by the witness')
    .addHelpText('after', `
Examples:
  metroctl drill list -f cluster.yaml
  metroctl drill run weekly-db -f cluster.yaml
  metroctl drill report -f cluster.yaml
  metroctl drill report weekly-db-20261129T030000-1a2b -f cluster.yaml -o json
`);

  drill.command('run').argument('<NAME>', 'a drill of the topology').description('run a drill now, through the witness, and print its report')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('-o, --output <format>', 'report as text (Markdown) or json', 'text')
    .addHelpText('after', `
The witness runs it: precheck (both sites healthy, group up-to-date, no other drill running),
switchover to the other site with a probe initiator measuring the I/O pause, online verify and a
write+read through the new primary, failback when the drill says so. A failed check returns the
group where it was. Exit 0 when the drill passed, 1 otherwise.

Examples:
  metroctl drill run weekly-db -f cluster.yaml
  metroctl drill run weekly-db -f cluster.yaml -o json > report.json
`)
    .action(async (name: string, o: { file: string; output: string }) => {
      jsonOutput(o.output);
      const t = await loadTopologyOrExit(o.file);
      const d = t.drills.find((x) => x.name === name);
      if (!d) throw new DaemonError(`no drill "${name}" in ${o.file} (its drills: ${t.drills.map((x) => x.name).join(', ') || 'none'})`, EXIT_USAGE);
      const phases = ['precheck', 'switchover', 'verify', ...(d.failback ? ['failback'] : [])];
      const progress = createProgress({ title: `drill ${name}`, stream: o.output === 'json' ? process.stderr : process.stdout });
      const client = witnessOf(t);
      const report = await new Promise<DrillReport>((resolve, reject) => {
        const stream = (client as unknown as { RunDrill(req: object, opts: object): grpc.ClientReadableStream<{ progress?: { phase: string; line: string }; report_json?: string; event: string }> })
          .RunDrill({ name, requested_by: `${os.userInfo().username}@${os.hostname()}` }, { deadline: Date.now() + drillRunDeadlineMs });
        let final: DrillReport | null = null;
        stream.on('data', (ev) => {
          if (ev.event === 'report_json' && ev.report_json) { final = JSON.parse(ev.report_json) as DrillReport; return; }
          if (ev.progress) {
            const i = phases.indexOf(ev.progress.phase);
            progress.note(ev.progress.line);
            if (i >= 0) progress.update(i + (ev.progress.line.endsWith('...') ? 0 : 1), phases.length, ev.progress.phase);
          }
        });
        stream.on('error', (err: grpc.ServiceError) => reject(new DaemonError(`the witness did not run the drill: ${err.code === 14 ? 'unreachable' : err.details || err.message}`, EXIT_FAILED)));
        stream.on('end', () => final ? resolve(final) : reject(new DaemonError('the witness ended the drill stream without a report', EXIT_FAILED)));
      }).finally(() => { progress.stop(); client.close(); });
      out(o.output === 'json' ? JSON.stringify(report, null, 2) : reportMarkdown(report));
      if (report.outcome !== 'passed') process.exitCode = EXIT_FAILED;
    });

  drill.command('list').description('the drills: schedules, next and last runs')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('-o, --output <format>', 'text or json', 'text')
    .addHelpText('after', '\nExamples:\n  metroctl drill list -f cluster.yaml\n  metroctl drill list -f cluster.yaml -o json\n')
    .action(async (o: { file: string; output: string }) => {
      jsonOutput(o.output);
      const t = await loadTopologyOrExit(o.file);
      const client = witnessOf(t);
      const r = await call<DrillListWire>(client, 'ListDrills', {}).finally(() => client.close());
      if (!r.ok) throw new DaemonError(`the witness did not answer: ${r.reason}`, EXIT_FAILED);
      if (o.output === 'json') {
        out(JSON.stringify({
          running: r.value.running_id || null,
          drills: r.value.drills.map((d) => ({ name: d.name, group: d.group, schedule: d.schedule, failback: d.failback, nextRun: d.next_run || null, lastRunId: d.last_run_id || null, lastOutcome: d.last_outcome || null, lastStartedAt: d.last_started_at || null, running: d.running })),
        }, null, 2));
        return;
      }
      if (r.value.drills.length === 0) { out(`cluster ${t.name} has no drills: add them under \`drills:\` in the topology`); return; }
      const style = process.stdout.isTTY ? {} : { style: { head: [], border: [] } };
      const table = new Table({ head: ['drill', 'group', 'schedule', 'failback', 'next run', 'last run', 'outcome'], ...style });
      for (const d of r.value.drills) table.push([d.name, d.group, d.schedule, d.failback ? 'yes' : 'no', d.next_run || '-', d.last_started_at || 'never', d.running ? 'RUNNING' : d.last_outcome || '-']);
      out(table.toString());
    });

  drill.command('report').argument('[ID]', 'one report (default: the newest)').description('print drill reports (Markdown, or JSON)')
    .requiredOption('-f, --file <topology>', 'topology YAML file')
    .option('-o, --output <format>', 'text (Markdown) or json', 'text')
    .option('--drill <name>', 'only this drill\'s reports')
    .option('--limit <n>', 'how many reports (newest first)', '1')
    .addHelpText('after', '\nExamples:\n  metroctl drill report -f cluster.yaml\n  metroctl drill report -f cluster.yaml --drill weekly-db --limit 10 -o json\n  metroctl drill report weekly-db-20261129T030000-1a2b -f cluster.yaml\n')
    .action(async (id: string | undefined, o: { file: string; output: string; drill?: string; limit: string }) => {
      jsonOutput(o.output);
      const limit = Number(o.limit);
      if (!Number.isSafeInteger(limit) || limit < 1) throw new DaemonError(`--limit ${o.limit}: expected a positive integer`, EXIT_USAGE);
      const t = await loadTopologyOrExit(o.file);
      const client = witnessOf(t);
      const r = await call<{ report_json: string[] }>(client, 'GetReports', { id: id ?? '', limit, drill: o.drill ?? '' }).finally(() => client.close());
      if (!r.ok) throw new DaemonError(r.reason === 'unreachable' ? 'the witness did not answer: unreachable' : r.reason, EXIT_FAILED);
      const reports = r.value.report_json.map((j) => JSON.parse(j) as DrillReport);
      if (o.output === 'json') { out(JSON.stringify(id ? reports[0] : reports, null, 2)); return; }
      if (reports.length === 0) { out('no drill has run on this cluster yet'); return; }
      out(reports.map(reportMarkdown).join('\n'));
    });
}
