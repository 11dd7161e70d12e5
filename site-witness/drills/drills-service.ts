// Drills at the witness: the topology's schedules (croner, the witness's local time), one drill at
// a time per cluster (a drill due or asked for while another runs is recorded as skipped), and the
// MetroDrills gRPC service (RunDrill streams progress then the report; ListDrills; GetReports;
// GroupRecords, the witness's records read-only for runbooks).
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Cron } from 'croner';
import type { Drill, Topology } from '../../common/topology/index.ts';
import type { Logger } from '../../common/log.ts';
import { newDrillReport, type DrillReport } from '../../common/drills/report.ts';
import { serviceOf } from '../../common/proto.ts';
import { endStreamWith, refusalStatus } from '../../common/grpc-validate.ts';
import type { ServiceEntry } from '../../common/grpc-server.ts';
import type { DurableRecord } from '../arbiter.ts';
import type { DrillStore } from './drill-store.ts';
import { runDrill } from './drill-runner.ts';

export const reportsListDefault = 20;
export const reportsListMax = 200;

type Listener = (phase: string, line: string) => void;

export class DrillCoordinator {
  private running: { id: string; drill: string; listeners: Set<Listener> } | null = null;
  private jobs = new Map<string, Cron>();

  constructor(private readonly o: {
    topology: Topology; store: DrillStore; records: () => DurableRecord[]; log: Logger; operationTimeoutMs: number;
  }) {}

  /** Starts the topology's schedules. */
  schedule(): void {
    for (const d of this.o.topology.drills) {
      const job = new Cron(d.schedule, { name: d.name, catch: (err: unknown) => this.o.log.error('scheduled drill failed', { drill: d.name, error: String(err) }) }, async () => {
        this.o.log.info('scheduled drill due', { drill: d.name });
        await this.run(d, { trigger: 'schedule', requestedBy: 'schedule' });
      });
      this.jobs.set(d.name, job);
    }
  }

  stop(): void {
    for (const j of this.jobs.values()) j.stop();
    this.jobs.clear();
  }

  runningId(): string | null {
    return this.running?.id ?? null;
  }

  /** The topology's drills, the ones this coordinator runs. */
  drills(): readonly Drill[] {
    return this.o.topology.drills;
  }

  /** The witness's records of this cluster's groups (read-only, for runbooks). */
  groupRecords(): DurableRecord[] {
    return this.o.records().filter((r) => r.key.cluster === this.o.topology.name);
  }

  /** Runs a drill now, or records it as skipped when another one runs. */
  async run(d: Drill, o: { trigger: 'schedule' | 'manual'; requestedBy: string; onProgress?: Listener }): Promise<DrillReport> {
    const now = new Date();
    const id = `${d.name}-${now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomBytes(2).toString('hex')}`;
    if (this.running) {
      const r: DrillReport = {
        ...newDrillReport({ id, drill: d, cluster: this.o.topology.name, trigger: o.trigger, requestedBy: o.requestedBy, startedAt: now.toISOString() }),
        endedAt: now.toISOString(), outcome: 'skipped',
        reason: `drill ${this.running.drill} (${this.running.id}) is running: one drill at a time per cluster`,
      };
      await this.o.store.save(r);
      this.o.log.warn('drill skipped', { drill: d.name, reason: r.reason });
      return r;
    }
    const listeners = new Set<Listener>(o.onProgress ? [o.onProgress] : []);
    this.running = { id, drill: d.name, listeners };
    try {
      const report = await runDrill({
        topology: this.o.topology, records: this.o.records, save: (r) => this.o.store.save(r),
        progress: (phase, line) => { this.o.log.info('drill', { drill: d.name, phase, line }); for (const l of listeners) l(phase, line); },
        nowIso: () => new Date().toISOString(), nowMs: () => performance.now(), operationTimeoutMs: this.o.operationTimeoutMs,
      }, d, { id, trigger: o.trigger, requestedBy: o.requestedBy });
      this.o.log.info('drill finished', { drill: d.name, id, outcome: report.outcome, rtoMs: report.rtoMs, reason: report.reason });
      return report;
    } finally {
      this.running = null;
    }
  }

  list(): object {
    const newestFirst = [...this.o.store.reports()].reverse();
    const timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    return {
      running_id: this.running?.id ?? '',
      drills: this.o.topology.drills.map((d) => {
        const last = newestFirst.find((r) => r.drill === d.name);
        // A skipped run never started: the schedule is still owed a drill (metroctl status: overdue).
        const attempt = newestFirst.find((r) => r.drill === d.name && r.outcome !== 'skipped');
        const next = this.jobs.get(d.name)?.nextRun() ?? new Cron(d.schedule, { paused: true }).nextRun();
        return {
          name: d.name, group: d.group, schedule: d.schedule, failback: d.failback,
          next_run: next ? next.toISOString() : '', last_run_id: last?.id ?? '', last_outcome: last?.outcome ?? '',
          last_started_at: last?.startedAt ?? '', running: this.running?.drill === d.name,
          last_ended_at: last?.endedAt ?? '', last_reason: last?.reason ?? '', last_rto_ms: String(Math.round(last?.rtoMs ?? -1)),
          last_rpo_ms: String(Math.round(last?.rpoMs ?? -1)), last_rpo_at_risk: last?.rpoEvidence?.atRisk ?? false,
          last_attempt_outcome: attempt?.outcome ?? '', last_attempt_started_at: attempt?.startedAt ?? '', last_attempt_reason: attempt?.reason ?? '',
          timezone,
        };
      }),
    };
  }

  reports(q: { id?: string; limit?: number; drill?: string }): DrillReport[] {
    const all = [...this.o.store.reports()].reverse();
    if (q.id) return all.filter((r) => r.id === q.id);
    const limit = Math.min(reportsListMax, q.limit && q.limit > 0 ? q.limit : reportsListDefault);
    return all.filter((r) => !q.drill || r.drill === q.drill).slice(0, limit);
  }
}

type Unary = (call: grpc.ServerUnaryCall<Record<string, any>, object>, cb: (err: grpc.ServiceError | null, reply?: object) => void) => void;

export function drillsService(c: DrillCoordinator): ServiceEntry {
  const listDrills: Unary = (_call, cb) => cb(null, c.list());
  const getReports: Unary = (call, cb) => {
    const q = call.request;
    const id = String(q.id ?? '');
    const found = c.reports({ id, limit: Number(q.limit ?? 0), drill: String(q.drill ?? '') });
    if (id && found.length === 0) return cb(refusalStatus(grpc.status.NOT_FOUND, `no drill report ${id}`));
    cb(null, { report_json: found.map((r) => JSON.stringify(r)) });
  };
  const groupRecords: Unary = (_call, cb) => cb(null, {
    records: c.groupRecords().map((r) => ({
      group: r.key.group, epoch: String(r.epoch), primary: r.primary, secondary_up_to_date: r.secondaryUpToDate,
      lag_bounded: r.lagMs !== null, lag_ms: String(r.lagMs ?? 0), forced: r.forced,
      forced_without_witness: r.forcedWithoutWitness, operator_hold: r.operatorHold,
    })),
  });
  const runDrillRpc = (call: grpc.ServerWritableStream<Record<string, any>, object>): void => {
    const name = String(call.request.name ?? '');
    const drills = c.drills();
    const d = drills.find((x) => x.name === name);
    if (!d) {
      // emit('error') sends the status; destroy(err) ends the stream without one (the client waits for its deadline).
      endStreamWith(call, grpc.status.NOT_FOUND, `no drill "${name}" in the topology (its drills: ${drills.map((x) => x.name).join(', ') || 'none'})`);
      return;
    }
    let open = true;
    call.on('cancelled', () => { open = false; });
    const requestedBy = String(call.request.requested_by ?? '').slice(0, 200);
    void c.run(d, {
      trigger: 'manual', requestedBy,
      onProgress: (phase, line) => { if (open) call.write({ progress: { phase, line } }); },
    }).then(
      (report) => { if (open) { call.write({ report_json: JSON.stringify(report) }); call.end(); } },
      (err: unknown) => { if (open) endStreamWith(call, grpc.status.INTERNAL, `the drill failed: ${err instanceof Error ? err.message : String(err)}`); },
    );
  };
  return {
    definition: serviceOf('drills.proto', 'MetroDrills').service,
    // Running a drill moves a group: an admin operation. Reading is for every identity of the cluster.
    access: { RunDrill: 'admin', ListDrills: 'viewer', GetReports: 'viewer', GroupRecords: 'viewer' },
    implementation: { RunDrill: runDrillRpc, ListDrills: listDrills, GetReports: getReports, GroupRecords: groupRecords },
  };
}
