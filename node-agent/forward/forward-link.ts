// The secondary's side of one group's command forwarding (protos/forward.proto): a stream to the
// primary's agent that carries the group's commands, aborts, task management and nexus events, and
// brings back the primary's answers. Bounded: commands and bytes outstanding (the welcome's limits),
// a bounded admission queue behind them (past it: TASK SET FULL), write() honoured. A broken link
// answers every command it held with NOT READY (ALUA transition) at once; it reconnects with backoff.
// Aborts: the transport raises a task's signal flag; the link passes raised flags on before any task
// management function or nexus loss it forwards (and at every heartbeat tick).
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../common/log.ts';
import { Asc, SenseKey, checkCondition } from '../scsi/sense.ts';
import { ScsiStatus, type Nexus, type ScsiRequest, type ScsiResponse, type TaskManagementFunction, type TaskManagementResult, type TaskSignal } from '../scsi/types.ts';
import { commandBytes, commandMessage, dataOutOf, responseOf, tmfName, tmfResultOf, withinBounds } from './forward-wire.ts';
import { Assembly, EventBatcher, commandPieces, pieceEvents, sized } from './forward-pieces.ts';

export const forwardLinkDefaults = {
  /** Commands waiting for room behind the outstanding ones; past it a command gets TASK SET FULL. */
  queuedCommandsMax: 1024,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
  heartbeatIntervalMs: 1000,
  /** No message from the primary for this long while the stream is open: the link is broken. */
  silenceMaxMs: 5000,
  /** A hello not welcomed within this long: the attempt failed. */
  welcomeTimeoutMs: 5000,
};

export type LinkState =
  | { kind: 'connecting'; since: number }
  | { kind: 'attached'; primarySite: string }
  | { kind: 'refused'; reason: string; message: string }
  | { kind: 'closed' };

type Call = grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>>;

export interface ForwardLinkOptions {
  cluster: string;
  group: string;
  site: string;
  incarnation: string;
  epoch: () => number;
  /** Opens the stream on the primary's agent (a channel made by common/grpc-client.ts). */
  open: () => Call;
  log: Logger;
  onState: (s: LinkState) => void;
  now?: () => number;
  limits?: Partial<typeof forwardLinkDefaults>;
}

interface Outstanding {
  readonly resolve: (r: ScsiResponse) => void;
  readonly bytes: number;
  readonly signal: TaskSignal | undefined;
  /** The abort was passed on to the primary. */
  abortSent: boolean;
}

interface Waiting {
  readonly req: ScsiRequest;
  readonly resolve: (r: ScsiResponse) => void;
}

/** NOT READY, LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION (SPC-4 5.15.2.6). */
export const linkTransitioning: ScsiResponse = Object.freeze(checkCondition({ key: SenseKey.NotReady, code: Asc.LogicalUnitNotAccessibleTransitioning }));
const taskSetFull: ScsiResponse = Object.freeze({ status: ScsiStatus.TaskSetFull });
const taskAborted: ScsiResponse = Object.freeze({ status: ScsiStatus.TaskAborted });

export class ForwardLink {
  private readonly limits: typeof forwardLinkDefaults;
  private state: LinkState;
  private call: Call | undefined;
  private welcome: { commandsMax: number; bytesMax: number } | undefined;
  private readonly nexusHandles = new Map<string, { handle: number; nexus: Nexus }>();
  private nextHandle = 1;
  private nextId = 1;
  private readonly outstanding = new Map<number, Outstanding>();
  private outstandingBytes = 0;
  private readonly waiting: Waiting[] = [];
  private readonly tmfs = new Map<number, (r: TaskManagementResult) => void>();
  private readonly out = new EventBatcher({ ready: () => this.call !== undefined && this.welcome !== undefined, write: (m) => this.call!.write(m) });
  /** Results whose Data-In is still arriving in pieces, by command id. */
  private readonly arriving = new Map<number, { head: Record<string, any>; data: Assembly }>();
  private lastHeardMs = 0;
  private delayMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly beat: NodeJS.Timeout;
  private closed = false;

  /** `nexuses`: those open now, announced in the first hello. */
  constructor(private readonly o: ForwardLinkOptions, nexuses: Iterable<Nexus> = []) {
    this.limits = { ...forwardLinkDefaults, ...o.limits };
    for (const n of nexuses) this.nexusHandles.set(n.id, { handle: this.nextHandle++, nexus: n });
    this.delayMs = this.limits.reconnectMinMs;
    this.state = { kind: 'connecting', since: this.now() };
    this.beat = setInterval(() => this.tick(), this.limits.heartbeatIntervalMs);
    this.beat.unref();
    this.connect();
  }

  get linkState(): LinkState {
    return this.state;
  }

  get attached(): boolean {
    return this.state.kind === 'attached';
  }

  private now(): number {
    return this.o.now ? this.o.now() : performance.now();
  }

  // ------------------------------------------------------------ what the group's path calls

  nexusOpened(nexus: Nexus): void {
    if (this.nexusHandles.has(nexus.id)) return;
    const handle = this.nextHandle++;
    this.nexusHandles.set(nexus.id, { handle, nexus });
    if (this.call) this.send({ nexus_opened: { handle, initiator_name: nexus.initiatorName, isid_hex: nexus.isidHex } });
  }

  nexusClosed(nexus: Nexus): void {
    const h = this.nexusHandles.get(nexus.id);
    if (!h) return;
    this.sendAborts(); // the nexus's tasks were aborted as it ended
    this.nexusHandles.delete(nexus.id);
    if (this.call) this.send({ nexus_closed: { handle: h.handle } });
  }

  execute(req: ScsiRequest): Promise<ScsiResponse> {
    if (!this.welcome) return Promise.resolve(linkTransitioning);
    return new Promise((resolve) => {
      if (this.waiting.length > 0 || !this.hasRoom(commandBytes(req))) {
        if (this.waiting.length >= this.limits.queuedCommandsMax) {
          resolve(taskSetFull);
          return;
        }
        this.waiting.push({ req, resolve });
        return;
      }
      this.dispatch(req, resolve);
    });
  }

  taskManagement(req: { fn: TaskManagementFunction; nexus: Nexus; lun: number }): Promise<TaskManagementResult> {
    if (!this.welcome) return Promise.resolve('function-rejected');
    this.nexusOpened(req.nexus);
    // The tasks the transport aborted for this function are aborted at the primary first.
    this.sendAborts();
    const id = this.nextId++;
    // Commands still waiting here for room are in the task set but never started: those the
    // function aborts for every nexus end now (the nexus's own were aborted by its connection).
    if (req.fn === 'clear-task-set' || req.fn === 'logical-unit-reset') this.abortWaiting((w) => w.req.lun === req.lun);
    else if (req.fn === 'target-warm-reset' || req.fn === 'target-cold-reset') this.abortWaiting(() => true);
    return new Promise((resolve) => {
      this.tmfs.set(id, resolve);
      this.send({ task_management: { id: String(id), nexus: this.nexusHandles.get(req.nexus.id)!.handle, lun: req.lun, function: tmfName(req.fn) } });
    });
  }

  /** The link is no longer wanted (the primary moved, this site was fenced): what it held is answered. */
  close(): void {
    this.closed = true;
    clearInterval(this.beat);
    clearTimeout(this.retryTimer);
    this.end();
    this.answerHeld();
    this.setState({ kind: 'closed' });
  }

  /** Every command and function the link holds is answered now: the primary's answer will not come. */
  private answerHeld(): void {
    for (const id of [...this.outstanding.keys()]) this.settle(id, linkTransitioning);
    for (const w of this.waiting.splice(0)) w.resolve(linkTransitioning);
    for (const done of this.tmfs.values()) done('function-rejected');
    this.tmfs.clear();
  }

  // ------------------------------------------------------------ commands

  private hasRoom(bytes: number): boolean {
    return withinBounds({ commands: this.outstanding.size, bytes: this.outstandingBytes }, bytes, this.welcome!);
  }

  private dispatch(req: ScsiRequest, resolve: (r: ScsiResponse) => void): void {
    if (req.signal?.aborted) {
      resolve(taskAborted);
      return;
    }
    this.nexusOpened(req.nexus);
    const id = this.nextId++;
    const bytes = commandBytes(req);
    this.outstanding.set(id, { resolve, bytes, signal: req.signal, abortSent: false });
    this.outstandingBytes += bytes;
    const m = commandMessage(id, this.nexusHandles.get(req.nexus.id)!.handle, req);
    for (const e of pieceEvents(commandPieces, String(id), m, dataOutOf(req))) this.out.push(e);
  }

  /** Starts waiting commands, in arrival order, while there is room. */
  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.welcome && this.hasRoom(commandBytes(this.waiting[0].req))) {
      const w = this.waiting.shift()!;
      this.dispatch(w.req, w.resolve);
    }
  }

  private abortWaiting(match: (w: Waiting) => boolean): void {
    const keep: Waiting[] = [];
    for (const w of this.waiting) {
      if (match(w)) w.resolve(taskAborted);
      else keep.push(w);
    }
    this.waiting.splice(0, this.waiting.length, ...keep);
  }

  private settle(id: number, r: ScsiResponse): void {
    const o = this.outstanding.get(id);
    if (!o) return;
    this.outstanding.delete(id);
    this.outstandingBytes -= o.bytes;
    o.resolve(r);
  }

  /** Passes every newly raised abort flag of an outstanding command on to the primary. */
  private sendAborts(): void {
    if (!this.call) return;
    for (const [id, o] of this.outstanding) {
      if (o.abortSent || !o.signal?.aborted) continue;
      o.abortSent = true;
      this.send({ abort: { id: String(id) } });
    }
  }

  // ------------------------------------------------------------ the stream

  private send(event: Record<string, unknown>): void {
    this.out.push(sized(event));
  }

  private connect(): void {
    if (this.closed) return;
    const call = this.o.open();
    this.call = call;
    this.lastHeardMs = this.now();
    const open = [...this.nexusHandles.values()].map(({ handle, nexus }) => ({ handle, initiator_name: nexus.initiatorName, isid_hex: nexus.isidHex }));
    call.on('data', (m: Record<string, any>) => { if (this.call === call) this.receive(m); });
    call.on('drain', () => { if (this.call === call) this.out.drained(); });
    call.on('error', (err: Error) => { if (this.call === call) this.lost(err.message); });
    call.on('end', () => { if (this.call === call) this.lost('the primary ended the stream'); });
    call.write({ hello: { cluster: this.o.cluster, group: this.o.group, site: this.o.site, epoch: String(this.o.epoch()), incarnation: this.o.incarnation, open_nexuses: open } });
  }

  private receive(m: Record<string, any>): void {
    this.lastHeardMs = this.now();
    switch (m.kind) {
      case 'welcome':
        this.welcome = { commandsMax: m.welcome.commands_max, bytesMax: Number(m.welcome.bytes_max) };
        this.delayMs = this.limits.reconnectMinMs;
        this.o.log.info('forwarding to the primary', { group: this.o.group, primary: m.welcome.site, commandsMax: this.welcome.commandsMax, bytesMax: this.welcome.bytesMax });
        this.setState({ kind: 'attached', primarySite: m.welcome.site });
        this.out.flush();
        return;
      case 'refusal':
        this.o.log.warn('the primary refused command forwarding', { group: this.o.group, reason: m.refusal.reason, message: m.refusal.message });
        this.lost(`refused: ${m.refusal.reason}`, { kind: 'refused', reason: m.refusal.reason, message: m.refusal.message });
        return;
      case 'batch':
        for (const e of m.batch.events as Array<Record<string, any>>) {
          if (e.kind === 'result') this.result(e.result);
          else if (e.kind === 'result_data') this.resultData(e.result_data);
          else if (e.kind === 'task_management_result') {
            const id = Number(e.task_management_result.id);
            const done = this.tmfs.get(id);
            this.tmfs.delete(id);
            done?.(tmfResultOf(e.task_management_result.result));
          }
        }
        this.admitWaiting();
        return;
      default:
        return; // heartbeat: lastHeardMs is all it is for
    }
  }

  private result(r: Record<string, any>): void {
    const id = Number(r.id);
    if (r.data_in_total > r.data_in.length) this.arriving.set(id, { head: r, data: new Assembly(r.data_in, r.data_in_total) });
    else this.settle(id, responseOf(r));
  }

  private resultData(d: Record<string, any>): void {
    const id = Number(d.id);
    const a = this.arriving.get(id);
    if (!a) return;
    const whole = a.data.add(d.data);
    if (whole === undefined) return;
    this.arriving.delete(id);
    if (typeof whole === 'string') {
      this.lost(`result ${id}: ${whole}`);
      return;
    }
    this.settle(id, responseOf({ ...a.head, data_in: Buffer.concat(whole) }));
  }

  private tick(): void {
    const call = this.call;
    if (!call || this.closed) return;
    if (this.now() - this.lastHeardMs > (this.welcome ? this.limits.silenceMaxMs : this.limits.welcomeTimeoutMs)) {
      this.lost(`no message from the primary for ${Math.round(this.now() - this.lastHeardMs)} ms`);
      return;
    }
    this.sendAborts();
    if (this.welcome && !this.out.blocked) call.write({ heartbeat: { sent_at_us: String(Math.round(this.now() * 1000)) } });
  }

  /** The stream is gone: every command it held is answered now (never a hang); then reconnect. */
  private lost(why: string, next?: LinkState): void {
    this.end();
    this.answerHeld();
    if (this.closed) return;
    if (this.state.kind === 'attached') this.o.log.warn('command forwarding to the primary lost; reconnecting', { group: this.o.group, why, delayMs: this.delayMs });
    this.setState(next ?? (this.state.kind === 'connecting' ? this.state : { kind: 'connecting', since: this.now() }));
    this.retryTimer = setTimeout(() => this.connect(), this.delayMs);
    this.delayMs = Math.min(this.limits.reconnectMaxMs, this.delayMs * 2);
  }

  private end(): void {
    const call = this.call;
    this.call = undefined;
    this.welcome = undefined;
    this.out.reset();
    this.arriving.clear();
    if (!call) return;
    try { call.cancel(); } catch { /* already gone */ }
  }

  private setState(s: LinkState): void {
    const before = this.state;
    this.state = s;
    if (before.kind !== s.kind || (before.kind === 'refused' && s.kind === 'refused' && before.reason !== s.reason)) this.o.onState(s);
  }
}
