// Reads the old primary's Status (agent.proto) for one group over one channel, one request at a
// time every `intervalMs`, while a drill's switchover runs: the samples rpo-measure.ts reads the
// mirror at the handover from. A request that fails or times out is no sample.
import type * as grpc from '@grpc/grpc-js';
import type { Topology } from '../../common/topology/index.ts';
import { call, dial } from '../../common/grpc-client.ts';
import type { HandoverSample } from './rpo-measure.ts';

/** Samples kept; past it the oldest half is dropped (the last ones are those that count). */
export const handoverSamplesMax = 4000;
const sampleDeadlineMs = 1000;

interface GroupWire {
  name: string;
  arbitration?: { primary?: string; epoch?: string; switchover?: boolean };
  mirror?: { mode?: string; secondary?: string; attached?: boolean; lag_bytes?: string; lag_ms?: number };
}

export class HandoverSampler {
  private samples: HandoverSample[] = [];
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private client: grpc.Client | null = null;

  constructor(private readonly o: { topology: Topology; site: string; group: string; epoch: number; intervalMs: number; now: () => number }) {}

  start(): void {
    const s = this.o.topology.sites.find((x) => x.name === this.o.site)!;
    this.client = dial('agent.proto', 'MetroAgent', s.agent.address, s.agent.port);
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the request in flight and returns the samples, oldest first. */
  async stop(): Promise<HandoverSample[]> {
    this.running = false;
    await this.loop;
    this.client?.close();
    this.client = null;
    return this.samples;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const sentAtMs = this.o.now();
      const r = await call<{ groups?: GroupWire[] }>(this.client!, 'Status', {}, sampleDeadlineMs);
      const g = r.ok ? r.value.groups?.find((x) => x.name === this.o.group) : undefined;
      if (g) this.add(sampleOf(g, this.o.site, this.o.epoch, sentAtMs));
      const waitMs = sentAtMs + this.o.intervalMs - this.o.now();
      if (waitMs > 0) await new Promise((res) => setTimeout(res, waitMs));
    }
  }

  private add(x: HandoverSample): void {
    this.samples.push(x);
    if (this.samples.length > handoverSamplesMax) this.samples = this.samples.slice(handoverSamplesMax / 2);
  }
}

function sampleOf(g: GroupWire, site: string, epoch: number, sentAtMs: number): HandoverSample {
  const a = g.arbitration;
  const m = g.mirror;
  return {
    sentAtMs,
    primary: a?.primary === site && Number(a.epoch) === epoch,
    handingOver: a?.switchover === true,
    mode: m?.mode ?? '',
    secondary: m?.secondary ?? '',
    attached: m?.attached ?? false,
    lagBytes: Number(m?.lag_bytes ?? 0),
    lagMs: Number(m?.lag_ms ?? 0),
  };
}
