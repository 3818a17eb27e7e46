/**
 * Runs the real gateway as a child process (`posko start`), for crash and CLI tests: the same
 * entry point a user runs, killed the way power cuts kill it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = resolve(ROOT, 'src/main.ts');

/** A gateway child process, its HTTP base URL and MQTT port (when the embedded broker runs). */
export interface ChildGateway {
  proc: ChildProcess;
  url: string;
  mqttPort: number | undefined;
  output: () => string;
}

/** Starts `posko start` with the given extra arguments and waits until it listens. */
export async function startChild(args: string[], env: Record<string, string> = {}): Promise<ChildGateway> {
  const proc = spawn(process.execPath, ['--import', 'tsx', MAIN, 'start', '--http-port', '0', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--mqtt-host', '127.0.0.1', '--log-level', 'warn', ...args], {
    cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`gateway did not start:\n${out}`)), 20_000);
    const check = () => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) { clearTimeout(timer); res(m[1]!); }
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => { clearTimeout(timer); rej(new Error(`gateway exited with ${code}:\n${out}`)); });
  });
  const mqtt = /MQTT broker for devices on port (\d+)/.exec(out);
  return { proc, url, mqttPort: mqtt ? Number(mqtt[1]) : undefined, output: () => out };
}

/** Kills a child with SIGKILL (no chance to flush anything) and waits for it to be gone. */
export async function kill9(c: ChildGateway): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  const gone = new Promise<void>((res) => c.proc.once('exit', () => res()));
  c.proc.kill('SIGKILL');
  await gone;
}

/** Stops a child with SIGTERM and waits for its exit code. */
export async function stopChild(c: ChildGateway): Promise<number | null> {
  if (c.proc.exitCode !== null) return c.proc.exitCode;
  const gone = new Promise<number | null>((res) => c.proc.once('exit', (code) => res(code)));
  c.proc.kill('SIGTERM');
  return gone;
}

/** Runs a `posko` CLI command to completion. */
export function runCli(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
