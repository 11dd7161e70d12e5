// The primary's side of command forwarding (protos/forward.proto, MetroForward.Forward): executes a
// secondary's forwarded commands on the group's local SCSI target, as coming in through the
// secondary's target port (the nexus's portal group tag is the secondary's relative target port).
// Keeps each secondary's nexuses across a short link loss (unit attentions wait for them), forgets
// them (I_T nexus loss) when the secondary says so, restarts, or stays away past the hold time.
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/log.ts';
import { nexusId } from '../iscsi/portal.ts';
import { Asc, SenseKey, checkCondition } from '../scsi/sense.ts';
import type { Nexus, ScsiTarget, TaskSignal } from '../scsi/types.ts';
import { commandBytes, requestOf, resultMessage, tmfOf, tmfResultName, withinBounds } from './forward-wire.ts';
import { Assembly, EventBatcher, pieceEvents, resultPieces, sized, type SizedEvent } from './forward-pieces.ts';

export const forwardServiceDefaults = {
  /** Commands a secondary may have outstanding on one group's stream. */
  commandsMax: 256,
  /** Data-Out plus expected Data-In bytes a secondary may have outstanding on one stream. */
  bytesMax: 64 * 1024 * 1024,
  /** Nexuses of a stream that ended are kept this long for the secondary to come back. */
  nexusHoldMs: 10_000,
  heartbeatIntervalMs: 1000,
  /** No message from the secondary for this long: the stream is ended. */
  silenceMaxMs: 5000,
  /** Nexuses one secondary may name for one group. */
  nexusesMax: 1024,
};

type Call = grpc.ServerDuplexStream<Record<string, any>, Record<string, unknown>>;

export type PrimaryLookup =
  | { kind: 'primary'; target: ScsiTarget; epoch: number }
  | { kind: 'refused'; reason: 'NOT_PRIMARY' | 'UNKNOWN_GROUP'; message: string };

export interface ForwardServiceOptions {
  cluster: string;
  site: string;
  /** The group's local target while this site is its primary (and not fenced). */
  lookup: (group: string) => PrimaryLookup;
  /** A site's relative target port (its index in the topology), or undefined for a stranger. */
  portOf: (site: string) => number | undefined;
  /** A secondary's stream for a group was welcomed (true) or ended (false), for status. */
  onAttached: (group: string, site: string, attached: boolean) => void;
  /** The site the caller's certificate names (mutual TLS), or undefined without one. */
  callerSite?: (call: Call) => string | undefined;
  log: Logger;
  limits?: Partial<typeof forwardServiceDefaults>;
}

/** The nexuses one secondary has named for one group, across its streams. */
interface RemoteSite {
  incarnation: string;
  target: ScsiTarget;
  readonly nexuses: Map<string, Nexus>;
  stream: ForwardStream | undefined;
  holdTimer: NodeJS.Timeout | undefined;
}

export class ForwardService {
  private readonly limits: typeof forwardServiceDefaults;
  private readonly remotes = new Map<string, RemoteSite>();

  constructor(private readonly o: ForwardServiceOptions) {
    this.limits = { ...forwardServiceDefaults, ...o.limits };
  }

  /** The MetroForward service implementation for the agent's gRPC server. */
  implementation(): grpc.UntypedServiceImplementation {
    return { Forward: (call: Call) => this.accept(call) };
  }

  /** This site stopped being the group's primary (or is fenced): every stream of it ends. */
  dropGroup(group: string, reason: string): void {
    for (const [key, r] of this.remotes) {
      if (!key.startsWith(`${group}\n`)) continue;
      r.stream?.refuse('NOT_PRIMARY', reason);
      this.forget(key, r);
    }
  }

  close(): void {
    for (const [key, r] of this.remotes) {
      r.stream?.end();
      clearTimeout(r.holdTimer);
      this.remotes.delete(key);
    }
  }

  private accept(call: Call): void {
    call.on('error', () => undefined);
    call.once('data', (m: Record<string, any>) => {
      const refuse = (reason: string, message: string): void => {
        this.o.log.warn('forward stream refused', { reason, message });
        call.write({ refusal: { reason, message } });
        call.end();
      };
      if (m.kind !== 'hello') return refuse('PROTOCOL', 'the first message of a forward stream must be a hello');
      const h = m.hello;
      if (h.cluster !== this.o.cluster) return refuse('WRONG_CLUSTER', `this agent serves cluster ${this.o.cluster}, not ${h.cluster}`);
      const port = this.o.portOf(h.site);
      if (port === undefined || h.site === this.o.site) return refuse('UNKNOWN_SITE', `site ${h.site} is not a peer site of cluster ${this.o.cluster}`);
      const certified = this.o.callerSite?.(call);
      if (certified !== undefined && certified !== h.site) return refuse('UNKNOWN_SITE', `the caller's certificate names site ${certified}, not ${h.site}`);
      const found = this.o.lookup(h.group);
      if (found.kind === 'refused') return refuse(found.reason, found.message);
      if (Number(h.epoch) > found.epoch) return refuse('NEWER_EPOCH', `site ${h.site} knows epoch ${h.epoch} of group ${h.group}, newer than this primary's ${found.epoch}`);
      if ((h.open_nexuses ?? []).length > this.limits.nexusesMax) return refuse('PROTOCOL', `more than ${this.limits.nexusesMax} nexuses`);
      this.attach(call, h, port, found);
    });
  }

  private attach(call: Call, h: Record<string, any>, port: number, found: { target: ScsiTarget; epoch: number }): void {
    const target = found.target;
    const key = `${h.group}\n${h.site}`;
    let remote = this.remotes.get(key);
    if (remote && (remote.incarnation !== h.incarnation || remote.target !== target)) {
      // The secondary restarted (or this site's target changed): none of its nexuses survived.
      this.endStream(remote);
      this.forget(key, remote);
      remote = undefined;
    }
    if (!remote) {
      remote = { incarnation: h.incarnation, target, nexuses: new Map(), stream: undefined, holdTimer: undefined };
      this.remotes.set(key, remote);
    }
    // A stream not yet seen to end is replaced (after it, so its end starts no hold timer).
    this.endStream(remote);
    clearTimeout(remote.holdTimer);
    remote.holdTimer = undefined;
    const listed = new Map<number, Nexus>();
    for (const n of h.open_nexuses ?? []) listed.set(n.handle, nexusOf(n, port));
    const keep = new Set([...listed.values()].map((n) => n.id));
    for (const [id, n] of remote.nexuses) {
      if (keep.has(id)) continue;
      remote.nexuses.delete(id);
      target.nexusClosed(n);
    }
    for (const n of listed.values()) {
      if (remote.nexuses.has(n.id)) continue;
      remote.nexuses.set(n.id, n);
      target.nexusOpened(n);
    }
    const r = remote;
    const stream = new ForwardStream({
      call, target, port, handles: listed, limits: this.limits, log: this.o.log.child({ group: h.group, secondary: h.site }),
      nexusOpened: (n) => {
        if (r.nexuses.size >= this.limits.nexusesMax && !r.nexuses.has(n.id)) return false;
        if (!r.nexuses.has(n.id)) { r.nexuses.set(n.id, n); target.nexusOpened(n); }
        return true;
      },
      nexusClosed: (n) => { if (r.nexuses.delete(n.id)) target.nexusClosed(n); },
      ended: () => {
        if (r.stream !== stream) return;
        r.stream = undefined;
        this.o.onAttached(h.group, h.site, false);
        // The hosts' sessions at the secondary may still be there: hold their nexuses for a while.
        r.holdTimer = setTimeout(() => this.forget(key, r), this.limits.nexusHoldMs);
        r.holdTimer.unref();
      },
    });
    remote.stream = stream;
    call.write({ welcome: { site: this.o.site, epoch: String(found.epoch), commands_max: this.limits.commandsMax, bytes_max: String(this.limits.bytesMax) } });
    this.o.log.info('secondary forwards commands', { group: h.group, secondary: h.site, nexuses: listed.size });
    this.o.onAttached(h.group, h.site, true);
  }

  /** Ends a remote's stream as replaced: detached first, so its end is not a departure. */
  private endStream(r: RemoteSite): void {
    const old = r.stream;
    r.stream = undefined;
    old?.end();
  }

  /** I_T nexus loss of every nexus the secondary named (SAM-5 6.3.4: the target forgets them). */
  private forget(key: string, r: RemoteSite): void {
    clearTimeout(r.holdTimer);
    if (this.remotes.get(key) === r) this.remotes.delete(key);
    for (const n of r.nexuses.values()) r.target.nexusClosed(n);
    r.nexuses.clear();
  }
}

/** A nexus a secondary names (hello or nexus_opened), as seen through its relative target port. */
function nexusOf(n: Record<string, any>, port: number): Nexus {
  const isidHex = String(n.isid_hex).toLowerCase();
  return { id: nexusId(n.initiator_name, isidHex, port), initiatorName: n.initiator_name, isidHex, portalGroupTag: port };
}

/** One attached stream: commands in, results out, batched both ways, bounded by the welcome's limits. */
class ForwardStream {
  private readonly inflight = new Map<string, { signal: TaskSignal; bytes: number }>();
  private inflightBytes = 0;
  private readonly out = new EventBatcher({ ready: () => !this.over, write: (m) => this.s.call.write(m) });
  /** Commands whose Data-Out is still arriving in pieces, by id. */
  private readonly arriving = new Map<string, { command: Record<string, any>; nexus: Nexus; data: Assembly }>();
  private over = false;
  private lastHeardMs = performance.now();
  private readonly beat: NodeJS.Timeout;

  constructor(private readonly s: {
    call: Call;
    target: ScsiTarget;
    port: number;
    handles: Map<number, Nexus>;
    limits: typeof forwardServiceDefaults;
    log: Logger;
    nexusOpened: (n: Nexus) => boolean;
    nexusClosed: (n: Nexus) => void;
    ended: () => void;
  }) {
    const call = s.call;
    call.on('data', (m: Record<string, any>) => this.receive(m));
    call.on('drain', () => this.out.drained());
    call.on('end', () => { this.finish('the secondary ended the stream'); try { call.end(); } catch { /* gone */ } });
    call.on('error', (err: Error) => this.finish(err.message));
    call.on('cancelled', () => this.finish('cancelled'));
    this.beat = setInterval(() => this.tick(), s.limits.heartbeatIntervalMs);
    this.beat.unref();
  }

  refuse(reason: string, message: string): void {
    if (this.over) return;
    try { this.s.call.write({ refusal: { reason, message } }); } catch { /* gone */ }
    this.end();
  }

  end(): void {
    this.finish('ended by the primary');
    try { this.s.call.end(); } catch { /* gone */ }
  }

  private finish(why: string): void {
    if (this.over) return;
    this.over = true;
    clearInterval(this.beat);
    // Commands still running finish on the target; their answers have nowhere to go.
    for (const t of this.inflight.values()) t.signal.aborted = true;
    this.s.log.warn('forward stream ended', { why, inflight: this.inflight.size });
    this.s.ended();
  }

  private tick(): void {
    if (this.over) return;
    if (performance.now() - this.lastHeardMs > this.s.limits.silenceMaxMs) {
      this.s.log.warn('secondary silent: ending its forward stream');
      this.end();
      return;
    }
    if (!this.out.blocked) this.s.call.write({ heartbeat: { sent_at_us: String(Math.round(performance.now() * 1000)) } });
  }

  private receive(m: Record<string, any>): void {
    if (this.over) return;
    this.lastHeardMs = performance.now();
    if (m.kind !== 'batch') return;
    for (const e of m.batch.events as Array<Record<string, any>>) {
      const fault = this.event(e);
      if (fault) {
        this.s.log.error('forward protocol fault', { fault });
        this.refuse('PROTOCOL', fault);
        return;
      }
    }
  }

  private event(e: Record<string, any>): string | undefined {
    switch (e.kind) {
      case 'nexus_opened': {
        const n = e.nexus_opened;
        const nexus = nexusOf(n, this.s.port);
        if (!this.s.nexusOpened(nexus)) return 'too many nexuses';
        this.s.handles.set(n.handle, nexus);
        return undefined;
      }
      case 'nexus_closed': {
        const n = this.s.handles.get(e.nexus_closed.handle);
        this.s.handles.delete(e.nexus_closed.handle);
        if (n) this.s.nexusClosed(n);
        return undefined;
      }
      case 'command':
        return this.command(e.command);
      case 'command_data':
        return this.commandData(e.command_data);
      case 'abort':
        { const t = this.inflight.get(e.abort.id); if (t) t.signal.aborted = true; }
        return undefined;
      case 'task_management':
        return this.taskManagement(e.task_management);
      default:
        return `unknown event ${String(e.kind)}`;
    }
  }

  private command(c: Record<string, any>): string | undefined {
    const nexus = this.s.handles.get(c.nexus);
    if (!nexus) return `command ${c.id} names nexus ${c.nexus}, never opened`;
    if (this.inflight.has(c.id)) return `command ${c.id} is already outstanding`;
    const bytes = commandBytes({ expectedDataLength: c.expected_data_length, expectedReadLength: c.expected_read_length, cdb: c.cdb });
    if (!withinBounds({ commands: this.inflight.size, bytes: this.inflightBytes }, bytes, this.s.limits)) {
      return `more than ${this.s.limits.commandsMax} commands or ${this.s.limits.bytesMax} bytes outstanding`;
    }
    const signal: TaskSignal = { aborted: false };
    this.inflight.set(c.id, { signal, bytes });
    this.inflightBytes += bytes;
    if (c.data_out_total > c.data_out.length) {
      if (c.data_out_total > c.expected_data_length) return `command ${c.id}: ${c.data_out_total} Data-Out bytes, more than the ${c.expected_data_length} expected`;
      this.arriving.set(c.id, { command: c, nexus, data: new Assembly(c.data_out, c.data_out_total) });
      return undefined;
    }
    this.run(c, nexus, signal, bytes, undefined);
    return undefined;
  }

  private commandData(d: Record<string, any>): string | undefined {
    const a = this.arriving.get(d.id);
    if (!a) return `data for command ${d.id}, which expects none`;
    const whole = a.data.add(d.data);
    if (whole === undefined) return undefined;
    if (typeof whole === 'string') return `command ${d.id}: ${whole}`;
    this.arriving.delete(d.id);
    const t = this.inflight.get(d.id)!;
    this.run(a.command, a.nexus, t.signal, t.bytes, whole);
    return undefined;
  }

  private run(c: Record<string, any>, nexus: Nexus, signal: TaskSignal, bytes: number, parts: Buffer[] | undefined): void {
    const id: string = c.id;
    const done = (r: Parameters<typeof resultMessage>[1]): void => {
      this.inflight.delete(id);
      this.inflightBytes -= bytes;
      this.answer(id, r);
    };
    this.s.target.execute(requestOf(c, nexus, signal, parts)).then(done, (err: unknown) => {
      this.s.log.error('forwarded command failed', { error: err instanceof Error ? err.message : String(err) });
      done(checkCondition({ key: SenseKey.HardwareError, code: Asc.InternalTargetFailure }));
    });
  }

  /** The result, its Data-In in pieces when it is large. */
  private answer(id: string, r: Parameters<typeof resultMessage>[1]): void {
    for (const e of pieceEvents(resultPieces, id, resultMessage(id, r), r.dataIn ? [r.dataIn] : [])) this.push(e);
  }

  private taskManagement(t: Record<string, any>): string | undefined {
    const nexus = this.s.handles.get(t.nexus);
    const fn = tmfOf(t.function);
    if (!nexus) return `task management ${t.id} names nexus ${t.nexus}, never opened`;
    const answer = (r: Parameters<typeof tmfResultName>[0]): void => this.push(sized({ task_management_result: { id: t.id, result: tmfResultName(r) } }));
    if (!fn) {
      answer('function-rejected');
      return undefined;
    }
    this.s.target.taskManagement({ fn, nexus, lun: t.lun }).then(answer, (err: unknown) => {
      this.s.log.error('forwarded task management failed', { error: err instanceof Error ? err.message : String(err) });
      answer('function-rejected');
    });
    return undefined;
  }

  /** Answers of a stream that is over have nowhere to go. */
  private push(e: SizedEvent): void {
    if (!this.over) this.out.push(e);
  }
}
