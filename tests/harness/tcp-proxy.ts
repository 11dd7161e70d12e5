// A real TCP proxy for process tests: listens on a loopback address, forwards every connection to
// a target, and injects the faults of a metro link: a delay in each direction (changed at runtime,
// or flapping), and a cut (every connection dropped, new ones blackholed) until restore().
// startTcpProxy runs it in the test's own process; startTcpProxyProcess in a child process of its
// own, so the test's work (status polls, spawning clients, garbage collection) never holds up the
// link: a real link does not stall while the machine that watches it is busy.
import { fork, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

export interface TcpProxyOptions {
  /** Where the proxy listens (127.x.y.z); port 0 picks a free one. */
  listen: { address: string; port?: number };
  target: { address: string; port: number };
  /** Added to every chunk, in each direction, before it is forwarded. */
  delayMs?: number;
}

export interface TcpProxy {
  readonly address: string;
  readonly port: number;
  delayMs: number;
  /** Connections accepted so far (including blackholed ones). */
  readonly accepted: number;
  /** Bytes forwarded client -> target and target -> client. */
  readonly bytes: { up: number; down: number };
  /** Drops every connection; new ones are accepted and then ignored (a link that lost its route). */
  cut(): void;
  restore(): void;
  /** Alternates the delay between highMs and lowMs every periodMs until stopFlap() or close(). */
  flap(opts: { highMs: number; lowMs: number; periodMs: number }): void;
  stopFlap(delayMs?: number): void;
  /** Resolves once every change made so far is in force and bytes/accepted are current. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/** Data waiting for its release time, per direction, in order. */
class DelayedPipe {
  private readonly queue: Array<{ at: number; chunk: Buffer }> = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly out: net.Socket, private readonly delay: () => number, private readonly count: (n: number) => void) {}

  push(chunk: Buffer): void {
    if (this.closed) return;
    const delayMs = this.delay();
    // No delay and nothing queued: forward at once (a timer, even of 0 ms, adds a millisecond or
    // more per hop, which a 5 ms round-trip bound notices).
    if (delayMs <= 0 && this.queue.length === 0) return this.forward(chunk);
    this.queue.push({ at: performance.now() + delayMs, chunk });
    this.schedule();
  }

  private forward(chunk: Buffer): void {
    if (chunk.length === 0) this.out.end();
    else if (!this.out.destroyed) {
      this.count(chunk.length);
      this.out.write(chunk);
    }
  }

  /** The source ended: end the destination once everything queued before has gone. */
  end(): void {
    this.push(Buffer.alloc(0));
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.timer || this.queue.length === 0) return;
    const wait = Math.max(0, this.queue[0].at - performance.now());
    this.timer = setTimeout(() => { this.timer = undefined; this.flush(); }, wait);
  }

  private flush(): void {
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0].at <= now) this.forward(this.queue.shift()!.chunk);
    this.schedule();
  }
}

export async function startTcpProxy(opts: TcpProxyOptions): Promise<TcpProxy> {
  const live = new Set<net.Socket>();
  const blackholed = new Set<net.Socket>();
  let cut = false;
  let accepted = 0;
  let flapTimer: NodeJS.Timeout | undefined;
  const bytes = { up: 0, down: 0 };
  const state = { delayMs: opts.delayMs ?? 0 };

  const server = net.createServer({ noDelay: true }, (client) => {
    accepted++;
    client.on('error', () => undefined);
    if (cut) {
      // Accepted and never answered: the dialer sees a silent link, as with a dropped route.
      blackholed.add(client);
      client.pause();
      client.on('close', () => blackholed.delete(client));
      return;
    }
    const upstream = net.connect({ host: opts.target.address, port: opts.target.port, noDelay: true });
    upstream.on('error', () => undefined);
    live.add(client);
    live.add(upstream);
    const up = new DelayedPipe(upstream, () => state.delayMs, (n) => { bytes.up += n; });
    const down = new DelayedPipe(client, () => state.delayMs, (n) => { bytes.down += n; });
    client.on('data', (d: Buffer) => up.push(d));
    upstream.on('data', (d: Buffer) => down.push(d));
    client.on('end', () => up.end());
    upstream.on('end', () => down.end());
    const teardown = (): void => {
      up.close();
      down.close();
      client.destroy();
      upstream.destroy();
      live.delete(client);
      live.delete(upstream);
    };
    client.on('close', teardown);
    upstream.on('close', teardown);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listen.port ?? 0, opts.listen.address, () => resolve());
  });
  const addr = server.address() as net.AddressInfo;

  const dropAll = (): void => {
    for (const s of [...live, ...blackholed]) s.destroy();
  };
  return {
    address: addr.address,
    port: addr.port,
    get delayMs() { return state.delayMs; },
    set delayMs(v: number) { state.delayMs = v; },
    get accepted() { return accepted; },
    bytes,
    cut() {
      cut = true;
      for (const s of live) s.destroy();
    },
    restore() {
      cut = false;
      // Connections made during the cut never worked; the dialer reconnects through the live path.
      for (const s of blackholed) s.destroy();
    },
    flap({ highMs, lowMs, periodMs }) {
      if (flapTimer) clearInterval(flapTimer);
      state.delayMs = highMs;
      flapTimer = setInterval(() => { state.delayMs = state.delayMs === highMs ? lowMs : highMs; }, periodMs);
    },
    stopFlap(delayMs = 0) {
      if (flapTimer) clearInterval(flapTimer);
      flapTimer = undefined;
      state.delayMs = delayMs;
    },
    sync: () => Promise.resolve(),
    async close() {
      if (flapTimer) clearInterval(flapTimer);
      dropAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type ProxyCommand = { op: 'delay'; ms: number } | { op: 'cut' } | { op: 'restore' } | { op: 'sync' } | { op: 'close' };
export type ProxyChildMessage =
  | { kind: 'ready'; address: string; port: number }
  | { kind: 'ack'; id: number; accepted: number; bytes: { up: number; down: number } }
  | { kind: 'failed'; message: string };

/** The same proxy in a child process (tests/harness/tcp-proxy-child.ts), driven over IPC. Changes
 *  take effect within an IPC hop; `await proxy.sync()` where a test needs them in force at once. */
export async function startTcpProxyProcess(opts: TcpProxyOptions): Promise<TcpProxy> {
  const entry = fileURLToPath(new URL('./tcp-proxy-child.ts', import.meta.url));
  const child: ChildProcess = fork(entry, [JSON.stringify(opts)], { execArgv: ['--import=tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = await new Promise<{ address: string; port: number }>((resolve, reject) => {
    child.once('message', (m: ProxyChildMessage) => (m.kind === 'ready' ? resolve(m) : reject(new Error(`test proxy: ${m.kind === 'failed' ? m.message : 'no ready message'}`))));
    child.once('exit', (code) => reject(new Error(`test proxy exited with ${code} before it listened`)));
  });
  let nextId = 0;
  let accepted = 0;
  const bytes = { up: 0, down: 0 };
  const waiting = new Map<number, () => void>();
  child.on('message', (m: ProxyChildMessage) => {
    if (m.kind !== 'ack') return;
    accepted = m.accepted;
    Object.assign(bytes, m.bytes);
    waiting.get(m.id)?.();
    waiting.delete(m.id);
  });
  const send = (c: ProxyCommand): Promise<void> => {
    if (!child.connected) return Promise.resolve();
    const id = nextId++;
    return new Promise<void>((resolve) => {
      waiting.set(id, resolve);
      child.send({ ...c, id });
      void exited.then(resolve);
    });
  };
  let delayMs = opts.delayMs ?? 0;
  let flapTimer: NodeJS.Timeout | undefined;
  const setDelay = (ms: number): void => { delayMs = ms; void send({ op: 'delay', ms }); };
  const stopFlapTimer = (): void => { if (flapTimer) clearInterval(flapTimer); flapTimer = undefined; };
  return {
    address: ready.address,
    port: ready.port,
    get delayMs() { return delayMs; },
    set delayMs(v: number) { setDelay(v); },
    get accepted() { return accepted; },
    bytes,
    cut() { void send({ op: 'cut' }); },
    restore() { void send({ op: 'restore' }); },
    flap({ highMs, lowMs, periodMs }) {
      stopFlapTimer();
      setDelay(highMs);
      flapTimer = setInterval(() => setDelay(delayMs === highMs ? lowMs : highMs), periodMs);
    },
    stopFlap(ms = 0) {
      stopFlapTimer();
      setDelay(ms);
    },
    sync: () => send({ op: 'sync' }),
    async close() {
      stopFlapTimer();
      await send({ op: 'close' });
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
