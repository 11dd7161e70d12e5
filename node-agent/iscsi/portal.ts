// The iSCSI portal: the only part of the transport with sockets, timers and a clock. It accepts TCP
// connections, runs each through login.ts and then connection.ts, keeps the session table (TSIH,
// reinstatement by ISID, per-initiator limits) and hands commands to the SCSI targets.
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import {
  commandDataBytesMax,
  commandWindowMax,
  InitiatorOpcode,
  LoginStatus,
  pendingDataBytesMax,
  targetDefaultTime2RetainS,
  targetDefaultTime2WaitS,
  targetFirstBurstBytes,
  targetMaxBurstBytes,
  targetMaxOutstandingR2T,
  targetMaxRecvDataSegmentBytes,
} from './constants.ts';
import type { ChapCredentials } from './chap.ts';
import { FullFeatureConnection, type ConnectionLimits, type SharedDataBudget } from './connection.ts';
import {
  finishLogin, initialLoginState, loginSegmentBytesMax, loginStep, refuseLogin, refuseLoginRequest,
  type LoginConfig, type LoginState, type LoginStep,
} from './login.ts';
import type { TargetPreferences } from './negotiation.ts';
import { PduParser } from './pdu-parser.ts';
import { dataSegmentLengthOf, framePdu, noDigests, opcodeOf, type Pdu } from './pdu.ts';
import { LogLimiter } from '../../common/log-limiter.ts';
import type { Nexus, ScsiTarget, TargetRegistry } from '../scsi/types.ts';

export interface PortalLogger {
  info(msg: string, meta?: object): void;
  warn(msg: string, meta?: object): void;
  error(msg: string, meta?: object): void;
  debug(msg: string, meta?: object): void;
}

export interface PortalLimits extends ConnectionLimits {
  /** TCP connections at once (logged in or logging in). Past it a connection's login is refused with
   *  "out of resources" (RFC 7143 §11.13.5); a few more are accepted only to say so. */
  readonly connectionsMax: number;
  /** Connections still in the login phase; past it a new one closes the oldest login of the address
   *  holding the most, so slow, abandoned or flooding logins cannot crowd out a prompt initiator. */
  readonly loginsInProgressMax: number;
  /** Data-Out bytes all connections together may buffer; past it commands carrying data are
   *  answered TASK SET FULL and R2Ts wait (each connection is bounded by pendingDataBytesMax too). */
  readonly bufferedDataBytesMax: number;
  /** Sessions one initiator name may hold at once. */
  readonly sessionsPerInitiatorMax: number;
  /** A login not finished in this time is dropped. */
  readonly loginTimeoutMs: number;
  /** Bytes queued for the socket beyond which reading pauses until it drains. */
  readonly writeBufferBytesMax: number;
  /** How long a reinstating login waits for the replaced session's commands to finish before it
   *  is refused with "service unavailable" (the initiator retries). */
  readonly reinstatementDrainMs: number;
}

export const defaultPortalLimits: PortalLimits = {
  connectionsMax: 1024,
  loginsInProgressMax: 64,
  bufferedDataBytesMax: 512 * 1024 * 1024,
  sessionsPerInitiatorMax: 64,
  loginTimeoutMs: 15_000,
  writeBufferBytesMax: 32 * 1024 * 1024,
  reinstatementDrainMs: 10_000,
  commandWindowMax,
  immediateCommandsMax: 16,
  commandDataBytesMax,
  pendingDataBytesMax,
  nopInIntervalMs: 15_000,
  nopInTimeoutMs: 30_000,
};

export interface PortalOptions {
  readonly address: string;
  /** 0 picks a free port (tests). */
  readonly port: number;
  readonly portalGroupTag: number;
  readonly registry: TargetRegistry;
  readonly auth: {
    /** Initiator names allowed to log in; empty = any. */
    readonly initiators: readonly string[];
    readonly chap?: ChapCredentials;
  };
  readonly logger: PortalLogger;
  readonly limits?: Partial<PortalLimits>;
  /** Whether header/data digests may be negotiated (default both: CRC32C and None). */
  readonly digests?: boolean;
}

export interface SessionInfo {
  readonly tsih: number;
  readonly initiatorName: string;
  readonly isidHex: string;
  readonly targetName?: string;
  readonly sessionType: 'Normal' | 'Discovery';
  readonly remoteAddress: string;
  readonly outstandingCommands: number;
}

export interface Portal {
  readonly address: { address: string; port: number };
  /** Logged-in sessions (discovery included). */
  sessionCount(): number;
  sessions(): SessionInfo[];
  /** Stops listening and ends every connection (asking initiators to log out first when graceMs > 0). */
  close(opts?: { graceMs?: number }): Promise<void>;
}

export class PortalError extends Error {
  override name = 'PortalError';
}

const tickMs = 1000;
/** Connections past connectionsMax accepted to be told "out of resources"; beyond, the kernel's
 *  accept is answered by a close. */
const overLimitConnectionsMax = 64;
/** An over-limit connection that sends no login header by then is closed unanswered. */
const overLimitLoginMs = 2000;
const closeLingerMs = 5000;

interface Session {
  readonly tsih: number;
  readonly initiatorName: string;
  readonly isidHex: string;
  readonly targetName?: string;
  readonly sessionType: 'Normal' | 'Discovery';
  readonly target?: ScsiTarget;
  readonly nexus: Nexus;
  client: Client;
}

export function nexusId(initiatorName: string, isidHex: string, portalGroupTag: number): string {
  return `${initiatorName},i,0x${isidHex},t,0x${portalGroupTag.toString(16).padStart(4, '0')}`;
}

export async function startPortal(opts: PortalOptions): Promise<Portal> {
  const limits: PortalLimits = { ...defaultPortalLimits, ...opts.limits };
  const prefs: TargetPreferences = {
    digests: opts.digests === false ? ['None'] : ['CRC32C', 'None'],
    maxRecvDataSegmentBytes: targetMaxRecvDataSegmentBytes,
    maxBurstBytes: targetMaxBurstBytes,
    firstBurstBytes: targetFirstBurstBytes,
    initialR2T: false,
    immediateData: true,
    maxOutstandingR2T: targetMaxOutstandingR2T,
    defaultTime2WaitS: targetDefaultTime2WaitS,
    defaultTime2RetainS: targetDefaultTime2RetainS,
  };
  const state = new PortalState(opts, limits, prefs);
  const server = net.createServer({ noDelay: true }, (socket) => state.accept(socket));
  server.maxConnections = limits.connectionsMax + overLimitConnectionsMax;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new PortalError(`cannot listen on ${opts.address}:${opts.port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen({ host: opts.address, port: opts.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => opts.logger.error('iSCSI portal error', { error: err.message }));
  const timer = setInterval(() => state.tick(), tickMs);
  timer.unref();
  const bound = server.address() as net.AddressInfo;
  opts.logger.info('iSCSI portal listening', { address: bound.address, port: bound.port, portalGroupTag: opts.portalGroupTag });
  return {
    address: { address: bound.address, port: bound.port },
    sessionCount: () => state.sessions.size,
    sessions: () => state.sessionInfo(),
    close: async (closeOpts) => {
      clearInterval(timer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await state.closeAll(closeOpts?.graceMs ?? 0);
      await closed;
    },
  };
}

class PortalState {
  readonly sessions = new Map<number, Session>();
  readonly clients = new Set<Client>();
  /** Connections in the login phase, oldest first (a Set keeps insertion order). */
  private readonly loggingIn = new Set<Client>();
  /** Connections accepted past connectionsMax, only to refuse their login. */
  private overLimit = 0;
  readonly refusals: LogLimiter;
  readonly dataBudget: SharedDataBudget;
  /** TSIHs between admission and registration, with the initiator name of a new session (it counts
   *  as held by that name); undefined for a reinstated connection of an existing session. */
  private readonly reserved = new Map<number, string | undefined>();
  /** Dropped connections whose commands have not left the SCSI layer yet. */
  private readonly draining = new Set<Client>();
  private nextTsih = 1;
  readonly loginConfig: LoginConfig;

  constructor(
    readonly opts: PortalOptions,
    readonly limits: PortalLimits,
    readonly prefs: TargetPreferences,
  ) {
    this.refusals = new LogLimiter(opts.logger);
    this.dataBudget = { usedBytes: 0, bytesMax: limits.bufferedDataBytesMax };
    this.loginConfig = {
      prefs,
      portalGroupTag: opts.portalGroupTag,
      targetExists: (iqn) => opts.registry.lookup(iqn) !== undefined,
      initiatorsAllowed: opts.auth.initiators,
      chap: opts.auth.chap,
      random: (n) => randomBytes(n),
      sessionExists: (name, isid, tsih) => {
        const s = this.sessions.get(tsih);
        return s !== undefined && s.initiatorName === name && s.isidHex === isid;
      },
    };
  }

  accept(socket: net.Socket): void {
    const overLimit = this.clients.size - this.overLimit >= this.limits.connectionsMax;
    const client = new Client(this, socket, overLimit);
    this.clients.add(client);
    if (overLimit) {
      this.overLimit++;
      return;
    }
    this.loggingIn.add(client);
    if (this.loggingIn.size > this.limits.loginsInProgressMax) {
      const victim = this.loginToClose();
      this.refusals.warn('iSCSI login closed to make room for a newer one', { remote: victim.remote, loginsInProgressMax: this.limits.loginsInProgressMax });
      victim.drop('logins in progress at their limit', true);
    }
  }

  /** The oldest login of the address holding the most logins in progress: a host that floods the
   *  portal with connections displaces its own, not another host's prompt login. */
  private loginToClose(): Client {
    const perAddress = new Map<string | undefined, number>();
    let busiest: string | undefined;
    let most = 0;
    for (const c of this.loggingIn) {
      const n = (perAddress.get(c.remoteAddress) ?? 0) + 1;
      perAddress.set(c.remoteAddress, n);
      if (n > most) {
        most = n;
        busiest = c.remoteAddress;
      }
    }
    for (const c of this.loggingIn) if (c.remoteAddress === busiest) return c;
    return this.loggingIn.values().next().value!;
  }

  /** The connection left the login phase (full feature phase, or closed). */
  loginOver(client: Client): void {
    this.loggingIn.delete(client);
  }

  tick(): void {
    const now = performance.now();
    for (const c of this.clients) c.tick(now);
  }

  sessionInfo(): SessionInfo[] {
    return [...this.sessions.values()].map((s) => ({
      tsih: s.tsih,
      initiatorName: s.initiatorName,
      isidHex: s.isidHex,
      targetName: s.targetName,
      sessionType: s.sessionType,
      remoteAddress: s.client.remote,
      outstandingCommands: s.client.conn?.outstandingCommands ?? 0,
    }));
  }

  /** Admission of a login that reached full feature phase: reinstatement, limits, TSIH. */
  /** Admission of a login that reached full feature phase: reinstatement, limits, TSIH. The
   *  connections it replaces are dropped now; their commands still in the SCSI layer must finish
   *  before the new session starts (see Client.admit). */
  admit(login: LoginState): { tsih: number; replaced: Client[] } | { refuse: LoginStatus; reason: string } {
    const target = login.sessionType === 'Normal' ? this.opts.registry.lookup(login.targetName ?? '') : undefined;
    if (login.sessionType === 'Normal' && target === undefined) return { refuse: LoginStatus.TargetRemoved, reason: 'target gone' };
    if (login.tsih !== 0) {
      // Connection reinstatement (§6.3.4): the old connection of this session goes first.
      const old = this.sessions.get(login.tsih);
      if (old === undefined) return { refuse: LoginStatus.SessionDoesNotExist, reason: `TSIH ${login.tsih} gone` };
      old.client.drop('connection reinstated');
      this.reserved.set(login.tsih, undefined);
      return { tsih: login.tsih, replaced: [old.client] };
    }
    // Session reinstatement (§6.3.5): same initiator port and target, TSIH 0: the old session ends.
    const replaced: Client[] = [...this.draining].filter((c) => {
      const s = c.session;
      return s !== undefined && s.initiatorName === login.initiatorName && s.isidHex === login.isidHex && s.targetName === login.targetName;
    });
    for (const s of [...this.sessions.values()]) {
      if (s.initiatorName === login.initiatorName && s.isidHex === login.isidHex && s.targetName === login.targetName) {
        this.opts.logger.info('iSCSI session reinstated', { initiator: s.initiatorName, isid: s.isidHex, tsih: s.tsih });
        s.client.drop('session reinstated');
        replaced.push(s.client);
      }
    }
    const held = [...this.sessions.values()].filter((s) => s.initiatorName === login.initiatorName).length
      + [...this.reserved.values()].filter((name) => name === login.initiatorName).length;
    if (held >= this.limits.sessionsPerInitiatorMax) {
      return { refuse: LoginStatus.OutOfResources, reason: `${held} sessions already` };
    }
    for (let i = 0; i < 0xffff; i++) {
      const tsih = this.nextTsih;
      this.nextTsih = this.nextTsih >= 0xffff ? 1 : this.nextTsih + 1;
      if (!this.sessions.has(tsih) && !this.reserved.has(tsih)) {
        this.reserved.set(tsih, login.initiatorName);
        return { tsih, replaced };
      }
    }
    return { refuse: LoginStatus.OutOfResources, reason: 'no free TSIH' };
  }

  /** A TSIH handed out by admit() is released by register() or by a refusal. */
  release(tsih: number): void {
    this.reserved.delete(tsih);
  }

  register(session: Session): void {
    this.reserved.delete(session.tsih);
    this.sessions.set(session.tsih, session);
    session.target?.nexusOpened(session.nexus);
  }

  unregister(client: Client): void {
    if (this.clients.delete(client) && client.overLimit) this.overLimit--;
    this.loggingIn.delete(client);
    const session = client.session;
    if (session === undefined || this.sessions.get(session.tsih) !== session) return;
    this.sessions.delete(session.tsih);
    session.target?.nexusClosed(session.nexus);
    if (client.inflight > 0) {
      // Its commands are still in the SCSI layer: a new login of the same initiator port waits.
      this.draining.add(client);
      client.onIdle(() => this.draining.delete(client));
    }
  }

  async closeAll(graceMs: number): Promise<void> {
    if (graceMs > 0) {
      for (const c of this.clients) c.conn?.requestLogout(Math.ceil(graceMs / 1000));
      const deadline = performance.now() + graceMs;
      while (this.clients.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    }
    const gone = [...this.clients].map((c) => c.closedPromise);
    for (const c of this.clients) c.drop('portal closing', true);
    await Promise.all(gone);
  }
}

/** One TCP connection: login phase, then full feature phase. */
class Client {
  readonly remote: string;
  readonly remoteAddress: string | undefined;
  private readonly parser: PduParser;
  private login: LoginState;
  private loginDeadlineMs: number;
  conn?: FullFeatureConnection;
  session?: Session;
  private corked = false;
  private ended = false;
  private paused = false;
  private admitting = false;
  /** Commands and task management functions in the SCSI layer. */
  inflight = 0;
  private idleWaiters: Array<() => void> = [];
  readonly closedPromise: Promise<void>;

  constructor(
    private readonly portal: PortalState,
    private readonly socket: net.Socket,
    /** Accepted past connectionsMax: its login is refused with "out of resources". */
    readonly overLimit: boolean,
  ) {
    this.remoteAddress = socket.remoteAddress;
    this.remote = `${socket.remoteAddress}:${socket.remotePort}`;
    // Login PDUs carry at most 8 KiB of data (§13.12): a longer one is refused from its header.
    this.parser = new PduParser({ headerDigest: false, dataDigest: false, dataSegmentBytesMax: loginSegmentBytesMax });
    this.login = initialLoginState(portal.prefs, randomBytes(4).readUInt32BE(0));
    this.loginDeadlineMs = performance.now() + (overLimit ? Math.min(overLimitLoginMs, portal.limits.loginTimeoutMs) : portal.limits.loginTimeoutMs);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.portal.opts.logger.debug('iSCSI connection error', { remote: this.remote, error: err.message }));
    socket.on('close', () => this.onClose());
    socket.on('drain', () => {
      if (this.paused && !this.ended) {
        this.paused = false;
        socket.resume();
      }
    });
  }

  private get log(): PortalLogger {
    return this.portal.opts.logger;
  }

  tick(nowMs: number): void {
    if (this.ended) return;
    if (this.conn === undefined) {
      if (nowMs > this.loginDeadlineMs) {
        this.portal.refusals.warn('iSCSI login timed out', { remote: this.remote, initiator: this.login.initiatorName || undefined, loginTimeoutMs: this.portal.limits.loginTimeoutMs });
        this.drop('login timeout', true);
      }
      return;
    }
    this.guard(() => this.conn!.tick(nowMs));
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    this.parser.push(chunk);
    this.process();
  }

  /** Handles every complete PDU buffered; stops while an admission waits for old commands. */
  private process(): void {
    try {
      for (let r = this.parser.next(); r !== undefined && !this.ended; r = this.admitting ? undefined : this.parser.next()) {
        if (this.conn !== undefined) {
          if (r.kind === 'fatal') this.portal.refusals.warn('iSCSI protocol error, closing', { remote: this.remote, reason: r.reason });
          this.conn.receive(r, performance.now());
          continue;
        }
        if (r.kind === 'fatal' && r.reason === 'data-segment-too-long' && opcodeOf(r.bhs) === InitiatorOpcode.LoginRequest) {
          // Refused from its header: the oversized data segment is never read, let alone buffered.
          this.refuseHeader(r.bhs, LoginStatus.InitiatorError, `login data segment of ${dataSegmentLengthOf(r.bhs)} bytes, over ${loginSegmentBytesMax}`);
          return;
        }
        if (r.kind !== 'pdu') {
          this.portal.refusals.warn('iSCSI protocol error during login, closing', { remote: this.remote, reason: r.kind === 'fatal' ? r.reason : r.kind });
          this.drop('bad login PDU', true);
          return;
        }
        if (this.overLimit && opcodeOf(r.pdu.bhs) === InitiatorOpcode.LoginRequest) {
          this.refuseHeader(r.pdu.bhs, LoginStatus.OutOfResources, `${this.portal.limits.connectionsMax} connections already`);
          return;
        }
        this.onLoginPdu(r.pdu);
      }
    } catch (err) {
      this.fault(err);
    }
  }

  /** Runs a step of the core; a throw is a bug in the transport: this connection ends, the portal
   *  and its other sessions go on, and the log says where. */
  private guard(step: () => void): void {
    try {
      step();
    } catch (err) {
      this.fault(err);
    }
  }

  private fault(err: unknown): void {
    this.log.error('iSCSI transport fault, dropping connection', { remote: this.remote, error: describe(err, true) });
    this.drop('transport fault', true);
  }

  private onLoginPdu(pdu: Pdu): void {
    const step = loginStep(this.login, pdu, this.portal.loginConfig);
    this.login = step.state;
    if (step.kind === 'continue') {
      this.write(framePdu(step.response.bhs, step.response.data, noDigests));
      return;
    }
    if (step.kind === 'fail') {
      this.portal.refusals.warn('iSCSI login refused', {
        remote: this.remote,
        initiator: step.state.initiatorName || undefined,
        target: step.state.targetName,
        status: `0x${step.status.toString(16).padStart(4, '0')}`,
        reason: step.reason,
      });
      this.write(framePdu(step.response.bhs, step.response.data, noDigests));
      this.drop('login refused');
      return;
    }
    const admitted = this.portal.admit(step.state);
    if ('refuse' in admitted) {
      this.refuse(step.state, step.itt, admitted.refuse, admitted.reason);
      return;
    }
    const busy = admitted.replaced.filter((c) => c.inflight > 0);
    if (busy.length === 0) {
      this.enterFullFeature(step, admitted.tsih);
      return;
    }
    // §6.3.5: the replaced session's tasks end before the new one starts, so a write the old
    // connection left in flight cannot land after the new session's writes. Reading pauses.
    this.admitting = true;
    this.socket.pause();
    const limitMs = this.portal.limits.reinstatementDrainMs;
    void Promise.all(busy.map((c) => c.whenIdle(limitMs))).then((done) => {
      this.admitting = false;
      if (this.ended) {
        this.portal.release(admitted.tsih);
        return;
      }
      if (done.every(Boolean)) {
        this.guard(() => this.enterFullFeature(step, admitted.tsih));
      } else {
        this.portal.release(admitted.tsih);
        this.refuse(step.state, step.itt, LoginStatus.ServiceUnavailable, 'commands of the replaced session still running');
      }
      if (!this.paused) this.socket.resume();
      this.process();
    });
  }

  /** Refuses a login request from its header alone and closes the connection. */
  private refuseHeader(bhs: Buffer, status: LoginStatus, reason: string): void {
    this.portal.refusals.warn('iSCSI login refused', { remote: this.remote, status: `0x${status.toString(16).padStart(4, '0')}`, reason });
    const r = refuseLoginRequest(this.login, bhs, status);
    this.write(framePdu(r.bhs, r.data, noDigests));
    this.drop('login refused');
  }

  private refuse(state: LoginState, itt: number, status: LoginStatus, reason: string): void {
    this.portal.refusals.warn('iSCSI login refused', { remote: this.remote, initiator: state.initiatorName, status: `0x${status.toString(16).padStart(4, '0')}`, reason });
    const r = refuseLogin(state, itt, status);
    this.write(framePdu(r.bhs, r.data, noDigests));
    this.drop('login refused');
  }

  private enterFullFeature(step: Extract<LoginStep, { kind: 'admit' }>, tsih: number): void {
    const { response, result } = finishLogin(step.state, step, tsih, this.portal.limits.commandWindowMax);
    this.write(framePdu(response.bhs, response.data, noDigests));
    const opts = this.portal.opts;
    const target = result.sessionType === 'Normal' ? opts.registry.lookup(result.targetName ?? '') : undefined;
    const nexus: Nexus = {
      id: nexusId(result.initiatorName, result.isidHex, opts.portalGroupTag),
      initiatorName: result.initiatorName,
      isidHex: result.isidHex,
      portalGroupTag: opts.portalGroupTag,
    };
    this.conn = new FullFeatureConnection(
      {
        login: result,
        nexus,
        prefs: this.portal.prefs,
        limits: this.portal.limits,
        dataBudget: this.portal.dataBudget,
        discovery: () => opts.registry.discovery(),
        nowMs: performance.now(),
      },
      {
        send: (parts, written) => this.write(parts, written),
        execute: (serial, req) => {
          // The READ/WRITE path: one pair of callbacks per command, no promise chained onto it.
          const conn = this.conn!;
          this.inflight++;
          target!.execute(req).then(
            (res) => {
              this.settled();
              try {
                conn.complete(serial, res);
              } catch (err) {
                this.fault(err);
              }
            },
            (err: unknown) => {
              this.settled();
              this.log.error('SCSI command failed', { remote: this.remote, error: describe(err) });
              this.guard(() => conn.fail(serial));
            },
          );
        },
        taskManagement: (serial, req) => {
          const conn = this.conn!;
          const run = target !== undefined ? target.taskManagement(req) : Promise.resolve('function-rejected' as const);
          this.track(run).then(
            (res) => this.guard(() => conn.completeTaskManagement(serial, res)),
            (err: unknown) => {
              this.log.error('task management failed', { remote: this.remote, error: describe(err) });
              this.guard(() => conn.completeTaskManagement(serial, 'function-rejected'));
            },
          );
        },
        close: (reason) => this.drop(reason),
      },
    );
    this.portal.loginOver(this);
    this.parser.setOptions({
      headerDigest: result.params.headerDigest,
      dataDigest: result.params.dataDigest,
      dataSegmentBytesMax: result.params.targetMaxRecvDataSegmentBytes,
    });
    this.session = {
      tsih: result.tsih,
      initiatorName: result.initiatorName,
      isidHex: result.isidHex,
      targetName: result.targetName,
      sessionType: result.sessionType,
      target,
      nexus,
      client: this,
    };
    this.portal.register(this.session);
    this.log.info('iSCSI login', {
      remote: this.remote,
      initiator: result.initiatorName,
      target: result.targetName,
      type: result.sessionType,
      tsih: result.tsih,
      headerDigest: result.params.headerDigest,
      dataDigest: result.params.dataDigest,
      maxRecvDataSegmentBytes: result.params.initiatorMaxRecvDataSegmentBytes,
      maxBurstBytes: result.params.maxBurstBytes,
      firstBurstBytes: result.params.firstBurstBytes,
      immediateData: result.params.immediateData,
      initialR2T: result.params.initialR2T,
    });
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight++;
    const settle = () => this.settled();
    p.then(settle, settle);
    return p;
  }

  /** One command or task management function left the SCSI layer. */
  private settled(): void {
    if (--this.inflight === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Calls back once nothing of this connection is in the SCSI layer. */
  onIdle(callback: () => void): void {
    if (this.inflight === 0) callback();
    else this.idleWaiters.push(callback);
  }

  /** Resolves true once nothing of this connection is in the SCSI layer, false after limitMs. */
  whenIdle(limitMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), limitMs);
      this.onIdle(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  /** Writes PDUs. What is written while one batch of callbacks runs goes out in one writev: the
   *  socket stays corked until the process.nextTick queue runs, which is after the microtasks that
   *  complete commands inline (a socket read of 15 WRITEs answers them in one system call, not 15),
   *  and before the loop moves on to the next socket read, so the initiator has those answers while
   *  we parse its next commands. Held to the check phase instead, every answer of a turn waited for
   *  the turn's last read: initiator and target then took turns instead of working in parallel. */
  private write(parts: Buffer[], written?: () => void): void {
    if (this.ended || this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    const last = parts.length - 1;
    for (let i = 0; i < last; i++) this.socket.write(parts[i]);
    // The callback of the last part: the socket has taken every part by then (writes complete in order).
    if (last >= 0) this.socket.write(parts[last], written && ((err) => { if (!err) written(); }));
    if (!this.paused && this.socket.writableLength > this.portal.limits.writeBufferBytesMax) {
      // The initiator reads slower than we answer: stop taking new commands until it catches up.
      this.paused = true;
      this.socket.pause();
    }
  }

  /** Ends the connection: gracefully (flush, FIN) unless `now`. */
  drop(reason: string, now = false): void {
    if (this.ended) return;
    this.ended = true;
    this.log.debug('iSCSI connection closing', { remote: this.remote, reason });
    this.conn?.shutdown(reason);
    this.portal.unregister(this);
    if (now) {
      this.socket.destroy();
      return;
    }
    this.socket.end();
    setTimeout(() => this.socket.destroy(), closeLingerMs).unref();
  }

  private onClose(): void {
    if (!this.ended) {
      this.ended = true;
      this.conn?.shutdown('connection lost');
    }
    this.portal.unregister(this);
  }
}

function describe(err: unknown, stack = false): string {
  if (!(err instanceof Error)) return String(err);
  return stack ? `${err.name}: ${err.message}\n${err.stack}` : `${err.name}: ${err.message}`;
}
