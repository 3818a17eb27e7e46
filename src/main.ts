/**
 * The `posko` command line: reads config, then starts the gateway or runs one admin command.
 * Every command takes `--data-dir` and works beside a running gateway on the same directory.
 */
import { parseArgs } from 'node:util';
import { loadConfig, SETTINGS, type Config } from './config/config.ts';
import { isPoskoError } from './domain/errors.ts';
import { runCommand } from './cli/commands.ts';

const HELP = `posko: sync gateway for disaster-logistics command posts

Usage:
  posko start [options]              start the gateway (HTTP API, MQTT broker, ledger folding)
  posko devices add <name> [--action <kind>] [--json]
                                     register a scanner or phone; prints its token (HTTP bearer
                                     token and MQTT password) once; --action: what a bare
                                     barcode from it records (default receive)
  posko devices list [--json]        list devices
  posko devices revoke <id>          revoke a device's token
  posko barcode parse <code>         parse a scanned code, print JSON (exit 2 when invalid)
  posko rebuild                      fold pending events, rebuild the views from the documents
  posko backup <dir>                 consistent copy of the database while it runs (keeps 7)
  posko restore <file|dir>           put a backup back (the gateway must be stopped)
  posko mosquitto-files              write an external Mosquitto's password and ACL files
                                     (<data-dir>/mosquitto/; devices add/revoke also do)

Sync between posts and HQ:
  posko identity [--json] [--qr]     this gateway's id, role, public key and fingerprint
  posko enroll <id> <public-key> [--peer-role post|hq] [--url <url>] [--budget-mb <n>]
                                     trust a gateway (at HQ: also into the post directory
                                     every post receives); --url: where to reach it
  posko enroll <id> --approve        approve a pending enrollment request
  posko peers [--json]               peers, their sync status, recent refusals
  posko sync <peer-id|url>           sync now, with progress; exit 0 only when complete
  posko bundle export [--for <peer>] <file>
                                     write a signed, encrypted bundle (USB stick): what the
                                     peer is not known to have, or everything
  posko bundle import <file>         verify and merge a bundle (idempotent)

Options (each also as an environment variable):
${(Object.keys(SETTINGS) as (keyof Config)[]).map((k) => `  ${SETTINGS[k].flag.padEnd(22)} ${SETTINGS[k].env}`).join('\n')}
  --json                 machine-readable output
  -h, --help             this help
`;

async function main(argv: string[]): Promise<number> {
  const options = Object.fromEntries(
    (Object.keys(SETTINGS) as (keyof Config)[]).map((k) => [SETTINGS[k].flag.slice(2), { type: 'string' as const }]),
  );
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: {
      ...options, json: { type: 'boolean' }, action: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      url: { type: 'string' }, 'budget-mb': { type: 'string' }, approve: { type: 'boolean' }, for: { type: 'string' }, qr: { type: 'boolean' },
      'peer-role': { type: 'string' },
    }, allowPositionals: true });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0) {
    process.stdout.write(HELP);
    return positionals.length === 0 && !values.help ? 2 : 0;
  }
  const flags: Partial<Record<keyof Config, string>> = {};
  for (const k of Object.keys(SETTINGS) as (keyof Config)[]) {
    const v = (values as Record<string, unknown>)[SETTINGS[k].flag.slice(2)];
    if (typeof v === 'string') flags[k] = v;
  }
  let config: Config;
  try {
    config = loadConfig(process.env, flags);
  } catch (e) {
    process.stderr.write(`posko: ${(e as Error).message}\n`);
    return 2;
  }
  return runCommand(positionals, config, {
    json: values.json === true, action: values.action, url: values.url, budgetMb: values['budget-mb'], approve: values.approve === true,
    for: values.for, qr: values.qr === true, peerRole: values['peer-role'],
  });
}

main(process.argv.slice(2)).then(
  (code) => { if (code !== -1) process.exitCode = code; },
  (e: unknown) => {
    process.stderr.write(`posko: ${isPoskoError(e) ? `${e.code}: ${e.message}` : (e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
