/**
 * The Raspberry Pi scanner bridge, as a command:
 *
 *   tsx firmware-bridge/bridge/main.ts --url mqtt://192.168.8.10:1883 --post KKR-KBG \
 *     --device <id> --token <token> --buffer /var/lib/posko-bridge/<id>.jsonl \
 *     (--evdev /dev/input/by-id/…-event-kbd | --serial /dev/ttyUSB0 [--baud 9600] | --stdin) \
 *     [--action receive]
 *
 * Every option also reads from the environment (`POSKO_BRIDGE_URL`, `POSKO_BRIDGE_TOKEN`, …;
 * flags win), validated with zod. Scanner → assembler → durable buffer → MQTT publisher. SIGTERM
 * or SIGINT: stop reading, end the scan in progress, wait briefly for outstanding acks, publish
 * the offline status, close the buffer. `--dry-run` only prints what the scanner sends (to check
 * its GS/FNC1 and terminator setup) without connecting anywhere.
 */
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { DeviceScanSchema } from '../../src/domain/device-protocol.ts';
import { DEVICE_ID_RE, POST_ID_RE } from '../../src/domain/ids.ts';
import { ScanAssembler } from './assembler.ts';
import { BufferFullError, ScanBuffer, type ScanFields } from './buffer.ts';
import { EvdevSource, functionKey } from './evdev.ts';
import { createBridgeLogger, LOG_LEVELS, printable, type BridgeLogger } from './log.ts';
import { Publisher, BRIDGE_FW } from './publisher.ts';
import { SerialDecoder, SerialSource } from './serial.ts';

/** Command-line flags and their environment variables. */
const FLAGS = {
  url: { env: 'POSKO_BRIDGE_URL', type: 'string' },
  post: { env: 'POSKO_BRIDGE_POST', type: 'string' },
  device: { env: 'POSKO_BRIDGE_DEVICE', type: 'string' },
  token: { env: 'POSKO_BRIDGE_TOKEN', type: 'string' },
  'token-file': { env: 'POSKO_BRIDGE_TOKEN_FILE', type: 'string' },
  buffer: { env: 'POSKO_BRIDGE_BUFFER', type: 'string' },
  evdev: { env: 'POSKO_BRIDGE_EVDEV', type: 'string' },
  serial: { env: 'POSKO_BRIDGE_SERIAL', type: 'string' },
  stdin: { env: 'POSKO_BRIDGE_STDIN', type: 'boolean' },
  baud: { env: 'POSKO_BRIDGE_BAUD', type: 'string' },
  encoding: { env: 'POSKO_BRIDGE_ENCODING', type: 'string' },
  action: { env: 'POSKO_BRIDGE_ACTION', type: 'string' },
  qty: { env: 'POSKO_BRIDGE_QTY', type: 'string' },
  unit: { env: 'POSKO_BRIDGE_UNIT', type: 'string' },
  item: { env: 'POSKO_BRIDGE_ITEM', type: 'string' },
  to: { env: 'POSKO_BRIDGE_TO', type: 'string' },
  org: { env: 'POSKO_BRIDGE_ORG', type: 'string' },
  operator: { env: 'POSKO_BRIDGE_OPERATOR', type: 'string' },
  'gap-ms': { env: 'POSKO_BRIDGE_GAP_MS', type: 'string' },
  'gs-key': { env: 'POSKO_BRIDGE_GS_KEY', type: 'string' },
  'no-ctrl-chars': { env: 'POSKO_BRIDGE_NO_CTRL_CHARS', type: 'boolean' },
  'event-size': { env: 'POSKO_BRIDGE_EVENT_SIZE', type: 'string' },
  evgrab: { env: 'POSKO_BRIDGE_EVGRAB', type: 'string' },
  capacity: { env: 'POSKO_BRIDGE_CAPACITY', type: 'string' },
  'send-time': { env: 'POSKO_BRIDGE_SEND_TIME', type: 'string' },
  'log-level': { env: 'POSKO_BRIDGE_LOG_LEVEL', type: 'string' },
  'dry-run': { env: 'POSKO_BRIDGE_DRY_RUN', type: 'boolean' },
  help: { env: '', type: 'boolean' },
} as const;

type FlagName = keyof typeof FLAGS;

export const USAGE = `posko scanner bridge: USB keyboard-wedge or serial scanner → posko gateway (MQTT)

usage: tsx firmware-bridge/bridge/main.ts --url mqtt://HOST:1883 --post POST --device ID
         (--token TOKEN | --token-file FILE) --buffer /var/lib/posko-bridge/ID.jsonl
         (--evdev /dev/input/by-id/…-event-kbd | --serial /dev/ttyUSB0 [--baud 9600] | --stdin)
         [--action receive] [--qty N --unit U --item I --to POST --org ORG --operator NAME]
         [--gap-ms 50] [--gs-key F8|none] [--no-ctrl-chars] [--event-size 16|24] [--evgrab PATH]
         [--encoding utf8|latin1] [--capacity 100000] [--send-time auto|always|never]
         [--log-level debug|info|warn|error] [--dry-run]

Every flag can also be set as POSKO_BRIDGE_<FLAG> (e.g. POSKO_BRIDGE_TOKEN_FILE); flags win.
--dry-run prints each scan as JSON on stdout and connects nowhere (to check a scanner's setup).`;

const bool = z.union([z.boolean(), z.enum(['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off', ''])]).transform((v) => v === true || ['1', 'true', 'yes', 'on'].includes(v as string));
const int = (min: number, max: number) => z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(min).max(max);
const scanField = DeviceScanSchema.shape;

/** The bridge's validated configuration. */
export const BridgeConfigSchema = z
  .strictObject({
    url: z.string().regex(/^mqtts?:\/\/[^/\s]+/, 'must look like mqtt://host:1883 or mqtts://host:8883').optional(),
    post: z.string().regex(POST_ID_RE, 'post id: 1-16 of A-Z, 0-9 and -').optional(),
    device: z.string().regex(DEVICE_ID_RE, 'device id: 1-64 of A-Z, a-z, 0-9, _ . -').optional(),
    token: z.string().min(8, 'the device token from `posko devices add`').optional(),
    buffer: z.string().min(1).optional(),
    evdev: z.string().min(1).optional(),
    serial: z.string().min(1).optional(),
    stdin: bool.default(false),
    baud: int(50, 4_000_000).default(9600),
    encoding: z.enum(['utf8', 'latin1']).default('utf8'),
    action: scanField.action,
    qty: z.coerce.number().pipe(scanField.qty.unwrap()).optional(),
    unit: scanField.unit,
    item: scanField.item,
    to: scanField.to,
    org: scanField.org,
    operator: scanField.operator,
    gapMs: int(5, 10_000).default(50),
    gsKey: z.string().refine((s) => s.toLowerCase() === 'none' || functionKey(s) !== undefined, 'a function key F1…F24, or none').default('F8'),
    noCtrlChars: bool.default(false),
    eventSize: z.coerce.number().pipe(z.union([z.literal(16), z.literal(24)])).optional(),
    evgrab: z.string().min(1).optional(),
    capacity: int(1, 10_000_000).default(100_000),
    sendTime: z.enum(['auto', 'always', 'never']).default('auto'),
    logLevel: z.enum(LOG_LEVELS).default('info'),
    dryRun: bool.default(false),
  })
  .superRefine((c, ctx) => {
    const sources = [c.evdev, c.serial, c.stdin ? 'stdin' : undefined].filter(Boolean).length;
    if (sources !== 1) ctx.addIssue({ code: 'custom', path: ['evdev'], message: 'give exactly one scanner: --evdev, --serial or --stdin' });
    if (!c.dryRun) {
      for (const k of ['url', 'post', 'device', 'token', 'buffer'] as const) {
        if (!c[k]) ctx.addIssue({ code: 'custom', path: [k], message: 'required' });
      }
    }
    if (c.action === 'dispatch' && !c.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'a dispatch needs a destination (--to)' });
  });
export type BridgeConfig = z.infer<typeof BridgeConfigSchema>;

/** A configuration error, with every problem on its own line. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const flagOf = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/**
 * Reads the configuration from flags and environment variables (flags win). Throws `ConfigError`
 * listing each problem by its flag; returns `'help'` for `--help`.
 */
export function parseBridgeConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): BridgeConfig | 'help' {
  let values: Record<string, string | boolean | undefined>;
  try {
    const options = Object.fromEntries(Object.entries(FLAGS).map(([k, f]) => [k, { type: f.type }])) as Record<FlagName, { type: 'string' | 'boolean' }>;
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }) as { values: Record<string, string | boolean | undefined> });
  } catch (e) {
    throw new ConfigError([(e as Error).message]);
  }
  if (values['help']) return 'help';
  const raw: Record<string, unknown> = {};
  for (const [flag, f] of Object.entries(FLAGS) as [FlagName, (typeof FLAGS)[FlagName]][]) {
    if (flag === 'help' || flag === 'token-file') continue;
    const v = values[flag] ?? (f.env ? env[f.env] : undefined);
    if (v !== undefined && v !== '') raw[camel(flag)] = v;
  }
  const tokenFile = (values['token-file'] as string | undefined) ?? env['POSKO_BRIDGE_TOKEN_FILE'];
  if (raw['token'] === undefined && tokenFile) {
    try {
      raw['token'] = readFileSync(tokenFile, 'utf8').trim();
    } catch (e) {
      throw new ConfigError([`--token-file: cannot read ${tokenFile}: ${(e as Error).message}`]);
    }
  }
  const r = BridgeConfigSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(r.error.issues.map((i) => `${i.path.length ? flagOf(String(i.path[0])) : '(config)'}: ${i.message}`));
  return r.data;
}

/** An ISO 8601 timestamp with the local UTC offset, as the protocol's `at` wants. */
export function isoWithOffset(d: Date = new Date()): string {
  const off = -d.getTimezoneOffset();
  const p = (n: number, w = 2) => String(Math.trunc(Math.abs(n))).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}${off >= 0 ? '+' : '-'}${p(off / 60)}:${p(off % 60)}`;
}

/** True when systemd-timesyncd says the clock is synchronised (the Pi has no RTC). */
export function clockSynchronised(): boolean {
  return existsSync('/run/systemd/timesync/synchronized');
}

/** A running bridge. */
export interface RunningBridge {
  buffer: ScanBuffer | undefined;
  publisher: Publisher | undefined;
  assembler: ScanAssembler;
  /** Stops reading, ends the scan in progress, waits up to `graceMs` for acks, closes everything. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves when a --stdin source reached its end and everything was delivered. */
  finished: Promise<void>;
}

/** Starts the bridge with a validated configuration. */
export function runBridge(config: BridgeConfig, log: BridgeLogger = createBridgeLogger(config.logLevel), out: (line: string) => void = (l) => process.stdout.write(l)): RunningBridge {
  let buffer: ScanBuffer | undefined;
  let publisher: Publisher | undefined;
  if (!config.dryRun) {
    buffer = ScanBuffer.open(config.buffer!, { capacity: config.capacity, firstSeq: randomFirstSeq(), log });
    log.info('buffer opened', { path: config.buffer, nextSeq: buffer.nextSeq, ...buffer.recovery });
    publisher = new Publisher({ url: config.url!, post: config.post!, device: config.device!, token: config.token!, buffer, fw: BRIDGE_FW, log });
    publisher.start();
  }
  const fields: ScanFields = {};
  for (const k of ['action', 'qty', 'unit', 'item', 'to', 'org', 'operator'] as const) if (config[k] !== undefined) (fields as Record<string, unknown>)[k] = config[k];
  const sendTime = () => config.sendTime === 'always' || (config.sendTime === 'auto' && clockSynchronised());

  const onScan = (code: string) => {
    if (config.dryRun) {
      out(JSON.stringify({ code, printable: printable(code), length: code.length }) + '\n');
      return;
    }
    try {
      const s = buffer!.append(code, sendTime() ? { ...fields, at: isoWithOffset() } : fields);
      log.info('scan buffered', { seq: s.seq, code: printable(code), pending: buffer!.pendingCount });
      publisher!.kick();
    } catch (e) {
      if (e instanceof BufferFullError) log.error('SCAN REFUSED: the offline buffer is full; the gateway has been unreachable too long', { code: printable(code), capacity: e.capacity });
      else log.error('SCAN NOT SAVED: cannot write the offline buffer (disk full or failing?)', { code: printable(code), error: (e as Error).message });
    }
  };
  const assembler = new ScanAssembler(onScan, { gapMs: config.gapMs, log });

  let stopped = false;
  let stopSource: () => Promise<void> | void = () => {};
  let resolveFinished!: () => void;
  const finished = new Promise<void>((r) => { resolveFinished = r; });
  if (config.evdev) {
    const src = new EvdevSource({
      path: config.evdev, log,
      gsKey: config.gsKey.toLowerCase() === 'none' ? null : functionKey(config.gsKey)!,
      ctrlChars: !config.noCtrlChars,
      ...(config.eventSize ? { eventSize: config.eventSize } : {}),
      ...(config.evgrab ? { grabHelper: config.evgrab } : {}),
      onUnmapped: (code) => log.debug('unmapped key', { code }),
    }, { char: (c) => assembler.push(c), enter: () => assembler.terminate(), dropped: () => assembler.abort() });
    src.start();
    stopSource = () => src.stop();
  } else if (config.serial) {
    const src = new SerialSource({ path: config.serial, baudRate: config.baud, encoding: config.encoding, log }, (t) => assembler.push(t));
    src.start();
    stopSource = () => src.stop();
  } else {
    const dec = new SerialDecoder((t) => assembler.push(t), config.encoding);
    const onData = (b: Buffer) => dec.push(b);
    process.stdin.on('data', onData);
    process.stdin.once('end', () => {
      assembler.flush();
      log.info('stdin closed: delivering what is buffered, then exiting', { pending: buffer?.pendingCount ?? 0 });
      void (async () => {
        while (publisher && !(await publisher.drained(1000))) { /* keep waiting; scans are safe on disk */ if (stopped) return; }
        resolveFinished();
      })();
    });
    stopSource = () => { process.stdin.off('data', onData); process.stdin.pause(); };
  }

  return {
    buffer, publisher, assembler, finished,
    async stop(graceMs = 3000) {
      if (stopped) return;
      stopped = true;
      await stopSource();
      assembler.flush();
      if (publisher) {
        await publisher.idle(graceMs);
        await publisher.stop();
      }
      buffer?.close();
      log.info('bridge stopped', { pending: buffer?.pendingCount ?? 0 });
    },
  };
}

/** The command: parse, run, stop on SIGTERM/SIGINT. */
export async function main(argv: string[] = process.argv.slice(2)): Promise<number> {
  let config: BridgeConfig | 'help';
  try {
    config = parseBridgeConfig(argv);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n\n${USAGE}\n`);
      return 2;
    }
    throw e;
  }
  if (config === 'help') {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const log = createBridgeLogger(config.logLevel);
  let bridge: RunningBridge;
  try {
    bridge = runBridge(config, log);
  } catch (e) {
    log.error('cannot start the bridge', { error: (e as Error).message });
    return 1;
  }
  log.info('bridge running', { device: config.device, post: config.post, url: config.url, source: config.evdev ?? config.serial ?? 'stdin', dryRun: config.dryRun });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (why: string) => {
      if (stopping) { log.warn('second signal: exiting now'); resolve(1); return; }
      stopping = true;
      log.info('stopping', { why });
      bridge.stop().then(() => resolve(0), (e: unknown) => { log.error('stop failed', { error: (e as Error).message }); resolve(1); });
    };
    process.on('SIGTERM', () => shutdown('SIGTERM'));
    process.on('SIGINT', () => shutdown('SIGINT'));
    void bridge.finished.then(() => shutdown('input ended'));
  });
}

const invokedDirectly = (() => {
  try { return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url)); } catch { return false; }
})();
if (invokedDirectly) {
  main().then((code) => process.exit(code), (e: unknown) => { process.stderr.write(`${(e as Error).stack ?? e}\n`); process.exit(1); });
}

/**
 * Where a new journal's counter starts: a random point in 2^40, so a re-flashed Pi (new, empty
 * journal, same device id) does not reuse the seq numbers of its earlier life, which the gateway
 * would take for retries. Not the clock: a Pi without RTC may wake up in 1970.
 */
function randomFirstSeq(): number {
  return randomInt(1, 2 ** 40);
}
