/**
 * The Raspberry Pi deployment (deploy/): install.sh in its plan mode (--prefix, --dry-run) writes
 * the expected files and only prints its commands, and does so idempotently; the systemd units pass
 * `systemd-analyze verify` (or, without it, a structural check); and the Mosquitto configuration
 * it writes runs in a real Mosquitto with the password and ACL files posko writes: a device's
 * token is accepted, a wrong one refused, a device reaches the gateway's account only on its own
 * topics, and a device added later is accepted after a reload, also with Mosquitto running as its
 * own user through the group permissions install.sh sets up. Parts whose tools are missing skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../../src/store/store.ts';
import { freePort, waitForPort } from '../helpers/mqtt.ts';
import { gatewayBrokerAccount, writeMosquittoFiles } from '../../src/transport/mosquitto-files.ts';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const INSTALL = join(REPO, 'deploy/install.sh');
const POST = 'KKR-KBG';
const UNITS = ['posko.service', 'posko-bridge@.service', 'posko-backup.service', 'posko-backup.timer', 'posko-mosquitto-reload.path', 'posko-mosquitto-reload.service'];

const dirs: string[] = [];
const procs: ChildProcess[] = [];
afterAll(() => {
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const fresh = (prefix: string) => { const d = mkdtempSync(join(tmpdir(), prefix)); dirs.push(d); return d; };

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const isRoot = process.getuid?.() === 0;
const uidOf = (user: string): { uid: number; gid: number } | undefined => {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) return undefined;
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
};
const gidOf = (group: string): number | undefined => {
  const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith(`${group}:`));
  return line ? Number(line.split(':')[2]) : undefined;
};
const MOSQUITTO = '/usr/sbin/mosquitto';
const hasMosquitto = existsSync(MOSQUITTO) && has('mosquitto_pub') && has('mosquitto_sub');

/** install.sh in plan mode under `prefix`. */
function install(prefix: string, args: string[]) {
  const r = spawnSync('bash', [INSTALL, '--prefix', prefix, '--dry-run', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr };
}
const read = (prefix: string, path: string) => readFileSync(join(prefix, path), 'utf8');
const lines = (text: string) => text.split('\n').map((l) => l.trim());

/** Every file under `dir`, path → content. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

describe('deploy/install.sh', () => {
  it('is valid bash (bash -n)', () => {
    for (const f of ['install.sh', 'posko-backup.sh', 'posko-cli.sh']) {
      const r = spawnSync('bash', ['-n', join(REPO, 'deploy', f)], { encoding: 'utf8' });
      expect({ f, status: r.status, stderr: r.stderr }).toEqual({ f, status: 0, stderr: '' });
    }
  });

  it('is shellcheck-clean', (ctx) => {
    ctx.skip(!has('shellcheck'), 'shellcheck is not installed (apt-get install shellcheck)');
    const r = spawnSync('shellcheck', ['-x', 'install.sh', 'posko-backup.sh', 'posko-cli.sh'], { cwd: join(REPO, 'deploy'), encoding: 'utf8' });
    expect({ status: r.status, out: r.stdout + r.stderr }).toEqual({ status: 0, out: '' });
  });

  it('--prefix --dry-run writes every file under the prefix and prints, not runs, its commands', () => {
    const p = fresh('posko-deploy-');
    const r = install(p, ['--post-id', POST, '--role', 'post']);
    expect(r.status, r.out).toBe(0);

    // The commands, printed.
    for (const cmd of [
      /^\+ apt-get update$/m,
      /^\+ env DEBIAN_FRONTEND=noninteractive apt-get install -y .*\bmosquitto\b.*$/m,
      /^\+ useradd --system .* posko$/m,
      /^\+ rsync -a --delete .* \/opt\/posko\/$/m,
      /^\+ env -C \/opt\/posko npm ci --omit=dev/m,
      /^\+ systemctl daemon-reload$/m,
      /^\+ systemctl enable mosquitto\.service$/m,
      /^\+ systemctl enable posko\.service$/m,
      /^\+ systemctl restart posko\.service$/m,
      /^\+ systemctl enable --now posko-backup\.timer$/m,
      /^\+ systemctl enable --now posko-mosquitto-reload\.path$/m,
    ]) expect(r.stdout).toMatch(cmd);
    // … and not run: nothing was copied or installed under the prefix.
    expect(existsSync(join(p, 'opt/posko'))).toBe(false);
    expect(existsSync(join(p, 'usr/local/bin/node'))).toBe(false);

    // /etc/default/posko
    const env = lines(read(p, 'etc/default/posko'));
    for (const l of [`POSKO_POST_ID=${POST}`, 'POSKO_ROLE=post', 'POSKO_DATA_DIR=/var/lib/posko/data', 'POSKO_MQTT_URL=mqtt://127.0.0.1:1883']) expect(env).toContain(l);
    expect(statSync(join(p, 'etc/default/posko')).mode & 0o777).toBe(0o640);

    // The gateway's unit: restart on failure with a start limit, and the watchdog the app feeds (src/systemd.ts).
    const svc = read(p, 'etc/systemd/system/posko.service');
    const sl = lines(svc);
    expect(sl).toContain('ExecStart=/usr/local/bin/node --import tsx /opt/posko/src/main.ts start');
    expect(sl).toContain('EnvironmentFile=-/etc/default/posko');
    expect(sl).toContain('Environment=POSKO_MQTT_URL=mqtt://127.0.0.1:1883');
    expect(sl).toContain('WorkingDirectory=/opt/posko');
    expect(sl).toContain('User=posko');
    expect(sl).toContain('Restart=on-failure');
    expect(sl).toContain('Type=notify');
    expect(sl).toContain('NotifyAccess=all');
    expect(svc).toMatch(/^WatchdogSec=\d+/m);
    expect(svc).toMatch(/^StartLimitIntervalSec=\d+/m);
    expect(svc).toMatch(/^StartLimitBurst=\d+/m);
    expect(svc).toMatch(/^After=.*network-online\.target.*mosquitto\.service/m);
    expect(svc).toMatch(/^Wants=.*network-online\.target/m);

    const bridge = lines(read(p, 'etc/systemd/system/posko-bridge@.service'));
    expect(bridge).toContain('EnvironmentFile=/etc/posko/bridge-%i.env');
    expect(bridge).toContain('ExecStart=/usr/local/bin/node --import tsx /opt/posko/firmware-bridge/bridge/main.ts');

    const backup = lines(read(p, 'etc/systemd/system/posko-backup.service'));
    expect(backup).toContain('ConditionPathIsMountPoint=/media/posko-usb');
    expect(backup).toContain('Type=oneshot');
    expect(backup).toContain('User=posko');
    expect(backup).toContain('ExecStart=/opt/posko/deploy/posko-backup.sh');
    expect(readFileSync(join(REPO, 'deploy/posko-backup.sh'), 'utf8')).toMatch(/"\$node" --import tsx "\$app\/src\/main\.ts" backup "\$target" --data-dir "\$data_dir"/);
    const timer = lines(read(p, 'etc/systemd/system/posko-backup.timer'));
    expect(timer.some((l) => l.startsWith('OnCalendar='))).toBe(true);
    expect(timer).toContain('Persistent=true');
    expect(timer).toContain('WantedBy=timers.target');

    const reload = lines(read(p, 'etc/systemd/system/posko-mosquitto-reload.path'));
    expect(reload).toContain('PathChanged=/var/lib/posko/data/mosquitto/passwd');
    expect(reload).toContain('PathChanged=/var/lib/posko/data/mosquitto/acl');

    // Mosquitto: authenticated listener on every interface, posko's files; the HQ bridge commented.
    const mq = lines(read(p, 'etc/mosquitto/conf.d/posko.conf'));
    for (const l of ['listener 1883', 'allow_anonymous false', 'password_file /var/lib/posko/data/mosquitto/passwd', 'acl_file /var/lib/posko/data/mosquitto/acl', 'persistence true']) expect(mq).toContain(l);
    expect(mq.some((l) => /^max_queued_messages \d+$/.test(l))).toBe(true);
    for (const l of ['#connection posko-hq', '#address <hq-host>:8883', '#topic posko/# both 1', '#cleansession false', '#notifications true', '#bridge_cafile /etc/ssl/certs/ca-certificates.crt']) expect(mq).toContain(l);
    expect(mq.some((l) => l.startsWith('connection '))).toBe(false);

    // Logs: journald limited; the logrotate rule for Mosquitto's log (no package rule in this root).
    expect(lines(read(p, 'etc/systemd/journald.conf.d/posko.conf'))).toEqual(expect.arrayContaining(['[Journal]', 'SystemMaxUse=200M', 'SystemKeepFree=1G']));
    expect(read(p, 'etc/logrotate.d/posko')).toMatch(/^\/var\/log\/mosquitto\/mosquitto\.log \{/m);

    // Data directory: passable by Mosquitto, its files' group inherited (setgid).
    expect(statSync(join(p, 'var/lib/posko/data')).mode & 0o777).toBe(0o711);
    expect(statSync(join(p, 'var/lib/posko/data/mosquitto')).mode & 0o7777).toBe(0o2750);
    // The USB stick for backups, and the `posko` command.
    expect(read(p, 'etc/fstab')).toMatch(/^LABEL=POSKO-USB \/media\/posko-usb auto nofail,x-systemd\.automount,.*uid=posko,gid=posko/m);
    expect(statSync(join(p, 'usr/local/bin/posko')).mode & 0o111).toBe(0o111);
    expect(existsSync(join(p, 'etc/posko/bridge.env.example'))).toBe(true);
  });

  it('is idempotent, keeps settings it is not given and lines it does not manage', { timeout: 60_000 }, () => {
    const p = fresh('posko-deploy-');
    expect(install(p, ['--post-id', POST]).status).toBe(0);
    writeFileSync(join(p, 'etc/default/posko'), read(p, 'etc/default/posko') + 'POSKO_LOG_LEVEL=debug\n');
    const first = snapshot(p);
    const again = install(p, []); // no --post-id: the one in /etc/default/posko
    expect(again.status, again.out).toBe(0);
    expect(snapshot(p)).toEqual(first);
    expect(readFileSync(join(p, 'etc/fstab'), 'utf8').match(/posko-usb/g)).toHaveLength(1);

    const moved = install(p, ['--post-id', 'KKR-MKM', '--role', 'hq']);
    expect(moved.status, moved.out).toBe(0);
    const env = lines(read(p, 'etc/default/posko'));
    expect(env).toEqual(expect.arrayContaining(['POSKO_POST_ID=KKR-MKM', 'POSKO_ROLE=hq', 'POSKO_LOG_LEVEL=debug']));
    expect(env.filter((l) => l.startsWith('POSKO_POST_ID='))).toHaveLength(1);
  });

  it('refuses bad or missing arguments', () => {
    const p = fresh('posko-deploy-');
    expect(install(p, [])).toMatchObject({ status: 2, stderr: expect.stringContaining('--post-id is needed') });
    expect(install(p, ['--post-id', 'kkr kbg'])).toMatchObject({ status: 2, stderr: expect.stringContaining("--post-id 'kkr kbg'") });
    expect(install(p, ['--post-id', POST, '--role', 'boss'])).toMatchObject({ status: 2, stderr: expect.stringContaining('--role') });
    expect(install(p, ['--post-id', POST, '--frobnicate'])).toMatchObject({ status: 2, stderr: expect.stringContaining('unknown argument') });
    expect(install(p, ['--post-id', POST, '--hq-url', 'ftp://x'])).toMatchObject({ status: 2 });
    expect(existsSync(join(p, 'etc/default/posko'))).toBe(false);
  });

  it('--hq-url fills in the bridge to HQ, --hq-url none takes it out', () => {
    const p = fresh('posko-deploy-');
    const r = install(p, ['--post-id', POST, '--hq-url', 'mqtts://hq.bpbd.example', '--hq-user', 'kbg', '--hq-password', 'rahasia']);
    expect(r.status, r.out).toBe(0);
    const mq = lines(read(p, 'etc/mosquitto/conf.d/posko.conf'));
    expect(mq).toEqual(expect.arrayContaining([
      'connection posko-hq', 'address hq.bpbd.example:8883', 'topic posko/# both 1', 'cleansession false', 'notifications true',
      `remote_clientid posko-bridge-${POST}`, 'remote_username kbg', 'remote_password rahasia', 'bridge_cafile /etc/ssl/certs/ca-certificates.crt',
    ]));
    expect(lines(read(p, 'etc/default/posko'))).toContain('POSKO_HQ_URL=mqtts://hq.bpbd.example');
    // A later run without the options keeps the bridge and its account.
    expect(install(p, []).status).toBe(0);
    expect(lines(read(p, 'etc/mosquitto/conf.d/posko.conf'))).toEqual(expect.arrayContaining(['address hq.bpbd.example:8883', 'remote_password rahasia']));
    expect(install(p, ['--hq-url', 'none']).status).toBe(0);
    const off = lines(read(p, 'etc/mosquitto/conf.d/posko.conf'));
    expect(off.some((l) => l.startsWith('connection '))).toBe(false);
    expect(lines(read(p, 'etc/default/posko'))).toContain('POSKO_HQ_URL=');
  });

  it('--broker embedded: no Mosquitto configuration, and the gateway runs its own broker', () => {
    const p = fresh('posko-deploy-');
    expect(install(p, ['--post-id', POST]).status).toBe(0);
    const r = install(p, ['--broker', 'embedded']);
    expect(r.status, r.out).toBe(0);
    expect(existsSync(join(p, 'etc/mosquitto/conf.d/posko.conf'))).toBe(false);
    expect(lines(read(p, 'etc/default/posko'))).toContain('POSKO_MQTT_URL=');
    expect(r.stdout).toMatch(/^\+ systemctl mask mosquitto\.service$/m);
    expect(r.stdout).not.toMatch(/apt-get install .*mosquitto/);
  });

  it('adds no logrotate rule where the mosquitto package rotates its log already', () => {
    const p = fresh('posko-deploy-');
    mkdirSync(join(p, 'etc/logrotate.d'), { recursive: true });
    writeFileSync(join(p, 'etc/logrotate.d/mosquitto'), '/var/log/mosquitto/mosquitto.log {\n}\n');
    expect(install(p, ['--post-id', POST]).status).toBe(0);
    expect(existsSync(join(p, 'etc/logrotate.d/posko'))).toBe(false);
  });

  it('the logrotate rule parses (logrotate --debug)', (ctx) => {
    ctx.skip(!has('logrotate'), 'logrotate is not installed');
    const d = fresh('posko-logrotate-');
    const r = spawnSync('logrotate', ['--debug', '--state', join(d, 'state'), join(REPO, 'deploy/logrotate/posko')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/error/i);
  });
});

describe('deploy/posko-backup.sh', () => {
  /** Runs the backup script with a stand-in for node that records its arguments and makes the directory. */
  function runBackup(dir: string, env: Record<string, string>) {
    const stub = join(dir, 'node-stub');
    writeFileSync(stub, '#!/bin/sh\nprintf "%s\\n" "$@" > "$STUB_ARGS"\nmkdir "$5" && touch "$5/backup"\n', { mode: 0o755 });
    return spawnSync('bash', [join(REPO, 'deploy/posko-backup.sh')], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', POSKO_NODE: stub, POSKO_APP_DIR: dir, STUB_ARGS: join(dir, 'args'), POSKO_POST_ID: POST, POSKO_DATA_DIR: '/var/lib/posko/data', ...env },
    });
  }

  it('runs `posko backup <new dir> --data-dir <data>` and keeps the newest N, never the one just made', () => {
    const dir = fresh('posko-backup-');
    const root = join(dir, 'usb/posko-backup');
    const postDir = join(root, POST);
    mkdirSync(postDir, { recursive: true });
    for (const old of ['20261101T023000Z', '20261102T023000Z', '20261103T023000Z']) mkdirSync(join(postDir, old));
    mkdirSync(join(postDir, 'keep-me')); // not a backup of the script's: never touched
    const r = runBackup(dir, { POSKO_BACKUP_ROOT: root, POSKO_BACKUP_KEEP: '2' });
    expect(r.status, r.stderr).toBe(0);
    const args = readFileSync(join(dir, 'args'), 'utf8').trim().split('\n');
    expect(args.slice(0, 4)).toEqual(['--import', 'tsx', join(dir, 'src/main.ts'), 'backup']);
    expect(args[4]).toMatch(new RegExp(`^${postDir}/\\d{8}T\\d{6}Z$`));
    expect(args.slice(5)).toEqual(['--data-dir', '/var/lib/posko/data']);
    const made = args[4]!.slice(postDir.length + 1);
    expect(readdirSync(postDir).sort()).toEqual(['20261103T023000Z', made, 'keep-me'].sort());
    // A clock reset to 1970 (no RTC): the new backup sorts first by name but is still kept.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'date'), '#!/bin/sh\necho 19700101T000000Z\n', { mode: 0o755 });
    const r2 = runBackup(dir, { POSKO_BACKUP_ROOT: root, POSKO_BACKUP_KEEP: '1', PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` });
    expect(r2.status, r2.stderr).toBe(0);
    expect(readFileSync(join(dir, 'args'), 'utf8')).toContain(`${postDir}/19700101T000000Z\n`);
    expect(readdirSync(postDir).sort()).toEqual(['19700101T000000Z', 'keep-me']);
  });

  it('fails plainly when the stick is not there', () => {
    const dir = fresh('posko-backup-');
    writeFileSync(join(dir, 'not-a-dir'), '');
    const r = runBackup(dir, { POSKO_BACKUP_ROOT: join(dir, 'not-a-dir/posko-backup') });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('is the USB stick (label POSKO-USB) plugged in? No backup made.');
    expect(existsSync(join(dir, 'args'))).toBe(false);
  });
});

describe('deploy systemd units', () => {
  /** Splits a unit file into sections of key=value lines. */
  function parseUnit(text: string): Map<string, [string, string][]> {
    const sections = new Map<string, [string, string][]>();
    let current: [string, string][] | undefined;
    for (const raw of text.split('\n')) {
      const l = raw.trim();
      if (l === '' || l.startsWith('#') || l.startsWith(';')) continue;
      const s = /^\[(\w+)\]$/.exec(l);
      if (s) { current = []; sections.set(s[1]!, current); continue; }
      const kv = /^([A-Za-z]+)=(.*)$/.exec(l);
      if (!kv || !current) throw new Error(`not a unit line: ${l}`);
      current.push([kv[1]!, kv[2]!]);
    }
    return sections;
  }

  it('have the expected sections and absolute Exec paths (structural check)', () => {
    for (const u of UNITS) {
      const sections = parseUnit(readFileSync(join(REPO, 'deploy', u), 'utf8'));
      const kind = u.slice(u.lastIndexOf('.') + 1);
      const main = kind === 'service' ? 'Service' : kind === 'timer' ? 'Timer' : 'Path';
      expect([...sections.keys()], u).toEqual(expect.arrayContaining(['Unit', main]));
      // Started by their timer / path unit, so not enabled themselves.
      const triggered = u === 'posko-backup.service' || u === 'posko-mosquitto-reload.service';
      expect(sections.has('Install'), u).toBe(!triggered);
      for (const [k, v] of sections.get(main)!) {
        if (!k.startsWith('Exec')) continue;
        const path = v.replace(/^[-+@:!]+/, '').split(/\s+/)[0]!;
        expect(path.startsWith('/'), `${u}: ${k}=${v}`).toBe(true);
      }
    }
  });

  it('pass systemd-analyze verify', { timeout: 60_000 }, (ctx) => {
    ctx.skip(!has('systemd-analyze'), 'systemd-analyze is not installed: only the structural check ran');
    // A root holding the units where install.sh puts them, the system's own units (targets,
    // mosquitto.service) and stand-ins for the programs they run, which verify checks exist.
    const root = fresh('posko-verify-');
    expect(install(root, ['--post-id', POST]).status).toBe(0);
    const systemUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((d) => existsSync(join(d, 'sysinit.target')));
    if (!systemUnits) return ctx.skip('no system units (sysinit.target) to check against: only the structural check ran');
    cpSync(systemUnits, join(root, 'usr/lib/systemd/system'), { recursive: true, dereference: false, verbatimSymlinks: true });
    if (!existsSync(join(root, 'usr/lib/systemd/system/mosquitto.service'))) {
      writeFileSync(join(root, 'usr/lib/systemd/system/mosquitto.service'), '[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/sbin/mosquitto\n');
    }
    for (const f of ['usr/local/bin/node', 'usr/bin/systemctl', 'usr/bin/sleep', 'usr/sbin/mosquitto', 'opt/posko/deploy/posko-backup.sh']) {
      mkdirSync(join(root, dirname(f)), { recursive: true });
      writeFileSync(join(root, f), '#!/bin/sh\n', { mode: 0o755 });
    }
    const names = UNITS.map((u) => u.replace('@.service', '@scanner1.service'));
    const r = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '--man=no', ...names], { cwd: root, encoding: 'utf8' });
    expect({ status: r.status, out: r.stdout + r.stderr }).toEqual({ status: 0, out: '' });
    // It does catch a broken unit (so a pass means something).
    writeFileSync(join(root, 'etc/systemd/system/posko.service'), read(root, 'etc/systemd/system/posko.service').replace('ExecStart=/usr/local/bin/node', 'ExecStart=/usr/local/bin/nodejs'));
    const bad = spawnSync('systemd-analyze', ['verify', `--root=${root}`, '--man=no', 'posko.service'], { cwd: root, encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// A real Mosquitto with the generated configuration.


/**
 * Starts Mosquitto the way Debian does (a main file that includes conf.d/) with the conf.d file
 * install.sh wrote, moved to a free port on 127.0.0.1 and to `dataDir`'s password and ACL files.
 */
async function startMosquitto(prefix: string, dir: string, dataDir: string, user: string) {
  const port = await freePort();
  const confD = join(dir, 'conf.d');
  const persist = join(dir, 'persist');
  mkdirSync(confD, { recursive: true });
  mkdirSync(persist, { recursive: true });
  const conf = read(prefix, 'etc/mosquitto/conf.d/posko.conf')
    .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
    .replaceAll('/var/lib/posko/data/mosquitto/', `${join(dataDir, 'mosquitto')}/`);
  expect(conf).toContain(`listener ${port} 127.0.0.1`);
  writeFileSync(join(confD, 'posko.conf'), conf);
  writeFileSync(join(dir, 'mosquitto.conf'), [
    `persistence_location ${persist}/`, 'log_dest stderr', 'log_type all', `user ${user}`, `include_dir ${confD}`, '',
  ].join('\n'));
  if (user !== 'root') {
    const u = uidOf(user)!;
    chownSync(persist, u.uid, u.gid);
  }
  let log = '';
  const proc = spawn(MOSQUITTO, ['-c', join(dir, 'mosquitto.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  proc.stdout!.on('data', (b) => { log += b; });
  proc.stderr!.on('data', (b) => { log += b; });
  await waitForPort(port, proc, () => log);
  return {
    port, proc, log: () => log,
    async reload() { proc.kill('SIGHUP'); await new Promise((r) => setTimeout(r, 500)); },
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** mosquitto_pub once (QoS 1); status 0 when the broker accepted the connection and the publish. */
function pub(port: number, user: string, password: string, topic: string, message: string) {
  return spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', password, '-i', `t-${user}-${Math.random().toString(36).slice(2, 8)}`, '-q', '1', '-t', topic, '-m', message], { encoding: 'utf8', timeout: 15_000 });
}

/** A subscriber that collects `count` messages (or stops after `seconds`). */
function sub(port: number, user: string, password: string, topic: string, count: number, seconds: number) {
  const p = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', password, '-q', '1', '-v', '-t', topic, '-C', String(count), '-W', String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(p);
  let out = '';
  p.stdout!.on('data', (b) => { out += b; });
  p.stderr!.on('data', (b) => { out += b; });
  const done = new Promise<{ code: number | null; out: string }>((r) => p.once('exit', (code) => r({ code, out })));
  return { done };
}
const settle = () => new Promise((r) => setTimeout(r, 700));

const NO_MOSQUITTO = 'needs /usr/sbin/mosquitto, mosquitto_pub and mosquitto_sub (apt-get install mosquitto mosquitto-clients)';

describe('the generated Mosquitto configuration, in a real Mosquitto', () => {
  it('accepts device tokens, refuses wrong ones, keeps devices to their topics, reloads new devices', { timeout: 60_000 }, async (ctx) => {
    ctx.skip(!hasMosquitto, NO_MOSQUITTO);
    const prefix = fresh('posko-deploy-');
    expect(install(prefix, ['--post-id', POST]).status).toBe(0);
    const dir = fresh('posko-mosq-');
    const dataDir = join(dir, 'data');

    // The files as install.sh and posko.service make them (posko mosquitto-files).
    const helper = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'mosquitto-files', '--data-dir', dataDir, '--post-id', POST], { cwd: REPO, encoding: 'utf8' });
    expect(helper.status, helper.stderr).toBe(0);
    expect(readFileSync(join(dataDir, 'mosquitto/passwd'), 'utf8')).toMatch(new RegExp(`^posko-gateway-${POST}:\\$7\\$`, 'm'));
    expect(readFileSync(join(dataDir, 'mosquitto/acl'), 'utf8')).toContain(`pattern write posko/${POST}/scan/%u`);

    // A device, registered as `posko devices add` does.
    const store = Store.open(dataDir);
    let dev: { id: string; token: string };
    let gw: { username: string; password: string };
    try {
      const added = store.devices.add('dev');
      dev = { id: added.device.id, token: added.token };
      gw = gatewayBrokerAccount(store, POST);
      writeMosquittoFiles(store, POST);
    } finally {
      store.close();
    }

    const m = await startMosquitto(prefix, dir, dataDir, 'root');
    try {
      // The gateway's account reads scans; the device's token is accepted on its own topic.
      const gateway = sub(m.port, gw.username, gw.password, `posko/${POST}/scan/+`, 1, 10);
      await settle();
      // Another device's topic: accepted by the broker but dropped (the ACL), so not seen.
      expect(pub(m.port, dev.id, dev.token, `posko/${POST}/scan/someone-else`, 'forbidden').status).toBe(0);
      const ok = pub(m.port, dev.id, dev.token, `posko/${POST}/scan/${dev.id}`, '{"seq":1,"code":"PSK1:KKR-KBG:1"}');
      expect(ok.status, ok.stderr).toBe(0);
      expect(await gateway.done).toEqual({ code: 0, out: `posko/${POST}/scan/${dev.id} {"seq":1,"code":"PSK1:KKR-KBG:1"}\n` });

      // Wrong password, unknown user, no credentials: refused at CONNECT.
      const wrong = pub(m.port, dev.id, `${dev.token}x`, `posko/${POST}/scan/${dev.id}`, 'x');
      expect(wrong.status).not.toBe(0);
      expect(wrong.stderr).toMatch(/not authori[sz]ed/i);
      expect(pub(m.port, 'intruder', dev.token, `posko/${POST}/scan/intruder`, 'x').status).not.toBe(0);
      const anon = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(m.port), '-q', '1', '-t', `posko/${POST}/scan/x`, '-m', 'x'], { encoding: 'utf8', timeout: 15_000 });
      expect(anon.status).not.toBe(0);

      // A device added later with the CLI (which rewrites the files) logs in after a reload.
      const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'devices', 'add', 'Gudang pintu 2', '--json', '--post-id', POST, '--data-dir', dataDir], { cwd: REPO, encoding: 'utf8' });
      expect(cli.status, cli.stderr).toBe(0);
      const second = JSON.parse(cli.stdout) as { mqttUsername: string; mqttPassword: string };
      expect(pub(m.port, second.mqttUsername, second.mqttPassword, `posko/${POST}/scan/${second.mqttUsername}`, 'x').status).not.toBe(0);
      await m.reload();
      const after = pub(m.port, second.mqttUsername, second.mqttPassword, `posko/${POST}/scan/${second.mqttUsername}`, 'x');
      expect(after.status, after.stderr + m.log()).toBe(0);
    } finally {
      await m.stop();
    }
  });

  it(
    'Mosquitto running as its own user reads the files through install.sh\'s group permissions, also after a reload',
    { timeout: 60_000 },
    async (ctx) => {
      ctx.skip(!hasMosquitto, NO_MOSQUITTO);
      ctx.skip(!isRoot || uidOf('mosquitto') === undefined || gidOf('mosquitto') === undefined, 'needs root and the user and group mosquitto, to run Mosquitto as its own user');
      const prefix = fresh('posko-deploy-');
      expect(install(prefix, ['--post-id', POST]).status).toBe(0);
      const dir = fresh('posko-mosq-');
      // The layout install.sh makes: passable directories, a setgid mosquitto directory.
      const dataDir = join(dir, 'data');
      mkdirSync(join(dataDir, 'mosquitto'), { recursive: true });
      chmodSync(dir, 0o711);
      chmodSync(dataDir, 0o711);
      chownSync(join(dataDir, 'mosquitto'), 0, gidOf('mosquitto')!);
      chmodSync(join(dataDir, 'mosquitto'), 0o2750);
      // As install.sh runs the helper: umask 027.
      const helper = spawnSync('sh', ['-c', 'umask 027 && exec "$0" --import tsx src/main.ts mosquitto-files --data-dir "$1" --post-id "$2"', process.execPath, dataDir, POST], { cwd: REPO, encoding: 'utf8' });
      expect(helper.status, helper.stderr).toBe(0);
      const files = { passwd: join(dataDir, 'mosquitto/passwd'), acl: join(dataDir, 'mosquitto/acl') };
      for (const f of [files.passwd, files.acl]) {
        const st = statSync(f);
        expect({ f, mode: st.mode & 0o777, gid: st.gid }).toEqual({ f, mode: 0o640, gid: gidOf('mosquitto') });
      }
      // posko's database is not readable by others.
      expect(statSync(join(dataDir, 'posko.db')).mode & 0o004).toBe(0);

      const m = await startMosquitto(prefix, dir, dataDir, 'mosquitto');
      try {
        const store = Store.open(dataDir);
        let dev: { id: string; token: string };
        try {
          const added = store.devices.add('scanner');
          dev = { id: added.device.id, token: added.token };
          writeMosquittoFiles(store, POST);
        } finally {
          store.close();
        }
        await m.reload(); // reread as the user mosquitto
        const r = pub(m.port, dev.id, dev.token, `posko/${POST}/scan/${dev.id}`, 'x');
        expect(r.status, r.stderr + m.log()).toBe(0);
        expect(m.log()).not.toMatch(/unable to open|permission denied/i);
      } finally {
        await m.stop();
      }
    },
  );

  it('accepts the bridge to HQ that install.sh --hq-url writes', { timeout: 60_000 }, async (ctx) => {
    ctx.skip(!hasMosquitto, NO_MOSQUITTO);
    const prefix = fresh('posko-deploy-');
    const hqPort = await freePort(); // nothing listens: the bridge keeps retrying, the broker runs
    const ca = '/etc/ssl/certs/ca-certificates.crt';
    const args = ['--post-id', POST, '--hq-url', `mqtts://127.0.0.1:${hqPort}`, '--hq-user', 'kbg', '--hq-password', 'rahasia'];
    if (!existsSync(ca)) args.push('--hq-cafile', join(REPO, 'package.json')); // only parsed, never used to connect
    expect(install(prefix, args).status).toBe(0);
    const dir = fresh('posko-mosq-');
    const dataDir = join(dir, 'data');
    const written = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'mosquitto-files', '--data-dir', dataDir, '--post-id', POST], { cwd: REPO, encoding: 'utf8' });
    expect(written.status, written.stderr).toBe(0);
    const m = await startMosquitto(prefix, dir, dataDir, 'root');
    try {
      await new Promise((r) => setTimeout(r, 1000));
      expect(m.proc.exitCode, m.log()).toBeNull();
      expect(m.log()).toContain(`Connecting bridge (step 1) posko-hq (127.0.0.1:${hqPort})`);
      expect(m.log()).toContain(`Bridge local.posko-bridge-${POST} doing local SUBSCRIBE on topic posko/#`);
    } finally {
      await m.stop();
    }
  });
});
