/**
 * systemd integration: readiness and the watchdog. When systemd starts the gateway with
 * `Type=notify` and `WatchdogSec=`, it sets NOTIFY_SOCKET and WATCHDOG_USEC; we answer through
 * `systemd-notify` (Node cannot write to a Unix datagram socket without a native module).
 * `NotifyAccess=all` lets the helper process speak for us. The pings come from the main event
 * loop, so a gateway whose loop is stuck stops pinging and systemd restarts it.
 */
import { execFile } from 'node:child_process';
import type { Logger } from './log.ts';

/** Tells systemd we are ready and starts watchdog pings; returns a stop function. No-op outside systemd. */
export function notifySystemd(env: NodeJS.ProcessEnv, log: Logger): () => void {
  if (!env.NOTIFY_SOCKET) return () => {};
  const notify = (...args: string[]) =>
    execFile('systemd-notify', args, { env }, (e) => { if (e) log.warn('systemd-notify failed', { args, error: e.message }); });
  notify('--ready', `--pid=${process.pid}`);
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return () => notify('--stopping');
  const timer = setInterval(() => notify(`--pid=${process.pid}`, 'WATCHDOG=1'), Math.max(1000, usec / 2000));
  timer.unref();
  return () => { clearInterval(timer); notify('--stopping'); };
}
