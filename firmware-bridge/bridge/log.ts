/**
 * The bridge's logger: one JSON object per line on stderr (journald keeps them), with a level
 * threshold. Deliberately tiny and independent of the gateway's logger: the bridge runs alone on a
 * Raspberry Pi and imports nothing from the gateway but the device protocol.
 */

/** Log levels, most verbose first. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What every bridge module logs through. */
export interface BridgeLogger {
  debug(msg: string, data?: Record<string, unknown>): void;
  info(msg: string, data?: Record<string, unknown>): void;
  warn(msg: string, data?: Record<string, unknown>): void;
  error(msg: string, data?: Record<string, unknown>): void;
}

/** A logger writing JSON lines to `write` (stderr by default) at `level` and above. */
export function createBridgeLogger(level: LogLevel = 'info', write: (line: string) => void = (l) => process.stderr.write(l)): BridgeLogger {
  const min = LOG_LEVELS.indexOf(level);
  const emit = (lvl: Exclude<LogLevel, 'silent'>) => (msg: string, data?: Record<string, unknown>) => {
    if (LOG_LEVELS.indexOf(lvl) < min) return;
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...data }) + '\n');
  };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}

/** A logger that drops everything (tests, library defaults). */
export const silentLogger: BridgeLogger = { debug() {}, info() {}, warn() {}, error() {} };

/** A scanned code made readable in a log line: control characters as `\xNN` (GS shows as `\x1d`). */
export function printable(code: string): string {
  return code.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
