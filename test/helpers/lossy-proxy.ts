/**
 * A lossy TCP proxy for tests: listens on 127.0.0.1 (a free port) in front of a target port and
 * makes the link between them behave like a bad satellite or radio link. node:net only.
 *
 *   latencyMs        every chunk is delivered this much later, in each direction (one-way delay)
 *   bytesPerSecond   bandwidth of each direction of each connection (0: unlimited); chunks queue
 *                    behind each other as on a real serial link
 *   cutAfterBytes    a connection is reset once this many bytes passed it (in `cutDirection`),
 *                    for the next `times` connections that reach it (then the rule clears itself)
 *   cutProbability   each delivered chunk may reset its connection with this probability
 *   down             the link is down: open connections are reset, new ones reset on accept
 *
 * Everything can be changed at runtime (setters below); a change applies to open connections too.
 * Data is delivered in order, in slices of at most `sliceBytes` so cuts and bandwidth are fine-
 * grained; "cut" means a TCP reset on both sides (the client sees ECONNRESET or a closed socket,
 * as when a link drops mid-transfer). Counters (`stats`) count what was actually delivered.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export type Direction = 'up' | 'down' | 'both';

export interface LossyProxyOptions {
  /** The port on 127.0.0.1 to forward to. */
  targetPort: number;
  latencyMs?: number;
  /** Bytes per second per direction; 0 or undefined: unlimited. */
  bytesPerSecond?: number;
  /** Probability per delivered slice that the connection is cut. */
  cutProbability?: number;
  /** Random source for `cutProbability` (inject a seeded one for reproducible runs). */
  random?: () => number;
  /** Largest slice delivered at once (default 16 KiB). */
  sliceBytes?: number;
}

/** What passed the proxy. `up` is client → target, `down` target → client. */
export interface ProxyStats {
  bytesUp: number;
  bytesDown: number;
  /** Connections accepted (including those reset at once because the link was down). */
  connections: number;
  /** Connections the proxy cut mid-transfer (cutAfterBytes, cutProbability, going down). */
  cuts: number;
  /** Connections refused (reset on accept) while down. */
  refused: number;
  /** Connections open now. */
  open: number;
}

interface Slice { at: number; data: Buffer | null /* null: end of stream */ }

/** One direction of one connection: a timed queue that delivers in order. */
interface Lane {
  dir: 'up' | 'down';
  from: Socket;
  to: Socket;
  queue: Slice[];
  queuedBytes: number;
  /** When the link is free to start sending the next slice (bandwidth). */
  freeAt: number;
  /** When the last slice is delivered (keeps order when latency changes). */
  lastAt: number;
  timer: NodeJS.Timeout | undefined;
}

interface Conn { client: Socket; upstream: Socket; up: Lane; down: Lane; dead: boolean }

/** A cut-after-bytes rule; bytes count per connection from when the rule was set. */
interface CutRule { bytes: number; direction: Direction; times: number; passed: WeakMap<Conn, number> }

const HIGH_WATER = 64 * 1024;

export class LossyProxy {
  private readonly server: Server;
  private readonly conns = new Set<Conn>();
  private readonly random: () => number;
  private readonly sliceBytes: number;
  private latencyMs: number;
  private bytesPerSecond: number;
  private cutProbability: number;
  private cutRule: CutRule | undefined;
  private down = false;
  private downTimer: NodeJS.Timeout | undefined;
  private boundPort = 0;
  readonly stats: ProxyStats = { bytesUp: 0, bytesDown: 0, connections: 0, cuts: 0, refused: 0, open: 0 };

  private constructor(private readonly opts: LossyProxyOptions) {
    this.latencyMs = opts.latencyMs ?? 0;
    this.bytesPerSecond = opts.bytesPerSecond ?? 0;
    this.cutProbability = opts.cutProbability ?? 0;
    this.random = opts.random ?? Math.random;
    this.sliceBytes = opts.sliceBytes ?? 16 * 1024;
    this.server = createServer({ allowHalfOpen: true }, (client) => this.accept(client));
  }

  /** Starts a proxy on 127.0.0.1 (a free port) in front of `opts.targetPort`. */
  static async start(opts: LossyProxyOptions): Promise<LossyProxy> {
    const p = new LossyProxy(opts);
    await new Promise<void>((res, rej) => {
      p.server.once('error', rej);
      p.server.listen(0, '127.0.0.1', () => res());
    });
    p.boundPort = (p.server.address() as AddressInfo).port;
    return p;
  }

  get port(): number { return this.boundPort; }
  get url(): string { return `http://127.0.0.1:${this.boundPort}`; }
  get isDown(): boolean { return this.down; }

  setLatency(ms: number): void { this.latencyMs = ms; }
  setBandwidth(bytesPerSecond: number): void { this.bytesPerSecond = bytesPerSecond; }
  setCutProbability(p: number): void { this.cutProbability = p; }

  /**
   * Cuts each of the next `times` connections (default: every one) once `bytes` bytes passed it in
   * `direction` ('both': summed), counted from now (a kept-alive connection starts at 0). `null`
   * clears the rule. A connection that carries fewer bytes is not cut and does not count.
   */
  setCutAfterBytes(bytes: number | null, o: { direction?: Direction; times?: number } = {}): void {
    this.cutRule = bytes === null ? undefined
      : { bytes, direction: o.direction ?? 'both', times: o.times ?? Number.POSITIVE_INFINITY, passed: new WeakMap() };
  }

  /** Takes the link down (resets every open connection, refuses new ones) or brings it back up. */
  setDown(down: boolean): void {
    if (this.downTimer) { clearTimeout(this.downTimer); this.downTimer = undefined; }
    this.down = down;
    if (down) for (const c of [...this.conns]) this.cut(c);
  }

  /** "Cut everything for the next `ms` milliseconds": down now, up again by itself. */
  downFor(ms: number): void {
    this.setDown(true);
    this.downTimer = setTimeout(() => { this.downTimer = undefined; this.down = false; }, ms);
    this.downTimer.unref();
  }

  /** Resets every open connection now (the link blips), without going down. */
  cutAll(): void {
    for (const c of [...this.conns]) this.cut(c);
  }

  /** Stops listening and resets every connection. */
  async close(): Promise<void> {
    if (this.downTimer) clearTimeout(this.downTimer);
    for (const c of [...this.conns]) this.cut(c, false);
    await new Promise<void>((res) => this.server.close(() => res()));
  }

  private accept(client: Socket): void {
    this.stats.connections++;
    if (this.down) {
      this.stats.refused++;
      reset(client);
      return;
    }
    const upstream = connect({ port: this.opts.targetPort, host: '127.0.0.1', allowHalfOpen: true });
    const lane = (dir: 'up' | 'down', from: Socket, to: Socket): Lane => ({ dir, from, to, queue: [], queuedBytes: 0, freeAt: 0, lastAt: 0, timer: undefined });
    const c: Conn = { client, upstream, up: lane('up', client, upstream), down: lane('down', upstream, client), dead: false };
    this.conns.add(c);
    this.stats.open = this.conns.size;
    for (const l of [c.up, c.down]) {
      l.from.on('data', (d: Buffer) => this.enqueue(c, l, d));
      l.from.on('end', () => this.push(c, l, { at: 0, data: null }));
    }
    // Either side failing ends the pair at once; clean closes unwind through the end markers.
    const failed = () => this.drop(c);
    const closed = (hadError: boolean) => {
      if (hadError) this.drop(c);
      else if (client.destroyed && upstream.destroyed) this.forget(c);
    };
    client.on('error', failed);
    upstream.on('error', failed);
    client.on('close', closed);
    upstream.on('close', closed);
  }

  /** Queues data read from one side, sliced, timed by bandwidth and latency. */
  private enqueue(c: Conn, l: Lane, d: Buffer): void {
    for (let i = 0; i < d.length; i += this.sliceBytes) this.push(c, l, { at: 0, data: d.subarray(i, i + this.sliceBytes) });
    if (l.queuedBytes > HIGH_WATER) l.from.pause();
  }

  private push(c: Conn, l: Lane, s: Slice): void {
    if (c.dead) return;
    const now = Date.now();
    const len = s.data?.length ?? 0;
    const start = Math.max(now, l.freeAt);
    l.freeAt = start + (this.bytesPerSecond > 0 ? (1000 * len) / this.bytesPerSecond : 0);
    s.at = Math.max(l.freeAt + this.latencyMs, l.lastAt);
    l.lastAt = s.at;
    l.queue.push(s);
    l.queuedBytes += len;
    this.schedule(c, l);
  }

  private schedule(c: Conn, l: Lane): void {
    if (l.timer || c.dead) return;
    const head = l.queue[0];
    if (!head) return;
    l.timer = setTimeout(() => { l.timer = undefined; this.deliver(c, l); }, Math.max(0, head.at - Date.now()));
  }

  /** Delivers every slice that is due, applying the cut rules. */
  private deliver(c: Conn, l: Lane): void {
    const now = Date.now();
    while (!c.dead && l.queue.length > 0 && l.queue[0]!.at <= now) {
      const s = l.queue.shift()!;
      if (s.data === null) { l.to.end(); continue; }
      l.queuedBytes -= s.data.length;
      const rule = this.cutRule;
      let data = s.data;
      let cutNow = false;
      if (rule && (rule.direction === 'both' || rule.direction === l.dir)) {
        const passed = rule.passed.get(c) ?? 0;
        const room = rule.bytes - passed;
        if (room < data.length) {
          data = data.subarray(0, Math.max(0, room));
          cutNow = true;
          if (--rule.times <= 0) this.cutRule = undefined;
        } else rule.passed.set(c, passed + data.length);
      }
      if (!cutNow && this.cutProbability > 0 && this.random() < this.cutProbability) {
        data = data.subarray(0, Math.floor(this.random() * data.length));
        cutNow = true;
      }
      if (data.length > 0) {
        l.to.write(data);
        if (l.dir === 'up') this.stats.bytesUp += data.length; else this.stats.bytesDown += data.length;
      }
      if (cutNow) { this.cut(c); return; }
    }
    if (l.queuedBytes <= HIGH_WATER && l.from.isPaused()) l.from.resume();
    this.schedule(c, l);
  }

  /** Resets both sides of a connection (counted as a cut unless the proxy is closing). */
  private cut(c: Conn, count = true): void {
    if (c.dead) return;
    if (count) this.stats.cuts++;
    this.drop(c);
  }

  /** Resets both sides of a connection and forgets it. */
  private drop(c: Conn): void {
    if (c.dead) return;
    this.forget(c);
    reset(c.client);
    reset(c.upstream);
  }

  private forget(c: Conn): void {
    c.dead = true;
    for (const l of [c.up, c.down]) { if (l.timer) clearTimeout(l.timer); l.queue.length = 0; l.queuedBytes = 0; }
    this.conns.delete(c);
    this.stats.open = this.conns.size;
  }
}

/** Aborts a socket with a TCP RST where possible (an abrupt link loss), else destroys it. */
function reset(s: Socket): void {
  try {
    if (!s.destroyed && typeof s.resetAndDestroy === 'function' && s.readyState !== 'opening') s.resetAndDestroy();
    else s.destroy();
  } catch {
    s.destroy();
  }
}
