// The MetroReach service (protos/reach.proto) as the witness and the agents serve it: dials the
// named site's agent Health from this daemon, with a bounded deadline, and says what it saw.
// Unknown sites are refused: the daemon dials only the sites of its own topology.
import * as grpc from '@grpc/grpc-js';
import type { Topology } from '../topology/index.ts';
import { dial, call } from '../grpc-client.ts';
import { serviceOf } from '../proto.ts';
import { refusalStatus } from '../grpc-validate.ts';
import type { ServiceEntry } from '../grpc-server.ts';

export const reachDeadlineDefaultMs = 1000;
export const reachDeadlineMaxMs = 10_000;

type Callback = (err: grpc.ServiceError | null, reply?: object) => void;

export function reachService(t: Topology, from: string): ServiceEntry {
  return {
    definition: serviceOf('reach.proto', 'MetroReach').service,
    // Read-only, and it dials only the topology's agents.
    access: { Reach: 'viewer' },
    implementation: {
      Reach: (c: grpc.ServerUnaryCall<{ site?: string; deadline_ms?: number }, object>, cb: Callback) => {
        const name = String(c.request.site ?? '');
        const site = t.sites.find((s) => s.name === name);
        if (!site) {
          const details = `site "${name}" is not in this topology (its sites: ${t.sites.map((s) => s.name).join(', ')})`;
          cb(refusalStatus(grpc.status.INVALID_ARGUMENT, details));
          return;
        }
        const asked = Number(c.request.deadline_ms ?? 0);
        const deadlineMs = Math.min(reachDeadlineMaxMs, asked > 0 ? asked : reachDeadlineDefaultMs);
        const client = dial('agent.proto', 'MetroAgent', site.agent.address, site.agent.port);
        const started = performance.now();
        void call<{ site: string }>(client, 'Health', {}, deadlineMs).then((r) => {
          client.close();
          const rttMs = Math.max(1, Math.round(performance.now() - started));
          const wrong = r.ok && r.value.site !== site.name;
          cb(null, {
            from, site: site.name, reachable: r.ok && !wrong, rtt_ms: r.ok && !wrong ? rttMs : 0,
            reason: !r.ok ? r.reason : wrong ? `another agent answers there (site "${r.value.site}")` : '',
          });
        });
      },
    },
  };
}
