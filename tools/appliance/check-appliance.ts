// npm run appliance:check: the built OVA checked as an operator would meet it.
//  1. static: tools/appliance/check-ova.ts (schema, tar layout, manifest, sizes, capacities,
//     qemu-img check, createType).
//  2. import: both VMDKs converted to qcow2 as a hypervisor's import does, read in place from
//     the OVA.
//  3. first boot under QEMU (TCG) with an OVF environment ISO (ISO transport) that sets the host
//     name, a static address (10.0.2.15/24, QEMU user networking's guest address, so the
//     forwarded port reaches it), an admin token and a console password: /api/v1/health over
//     HTTPS on the forwarded port with that token, within a bounded time (ova.boot_s); the
//     certificate the appliance serves is the one the console screen shows.
//  4. a share created over the API survives `systemctl reboot` (typed at the serial console,
//     logged in as root with the OVF password).
//  5. power loss: at the console, a writer makes 64 KiB files in the share's mount, each
//     fsync'd (file, then directory) before it prints "ACK n"; QEMU is killed (SIGKILL) while it
//     writes; after a restart every acknowledged file reads back whole.
// Prints {"figure": ...} lines: ova.boot_s (first boot), ova.reboot_s, and the static facts.
// The boot disks are virtio-blk (the descriptor says LSI Logic SCSI for VMware; QEMU's TCG is
// much faster with virtio, and the image's initramfs carries both drivers).

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkOva, memberImage } from './check-ova.js';
import { SerialConsole } from './serial-console.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const version = (JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string }).version;
const { values } = parseArgs({
  options: { ova: { type: 'string' }, 'static-only': { type: 'boolean' }, 'boot-timeout': { type: 'string', default: '900' }, 'keep': { type: 'boolean' } },
  strict: true,
});
const ova = path.resolve(values.ova ?? path.join(repo, 'dist', 'appliance', `vmvault-${version}.ova`));
const BOOT_TIMEOUT_MS = Number(values['boot-timeout']) * 1000;

function say(line: string): void {
  process.stderr.write(`appliance check: ${line}\n`);
}
function figure(name: string, value: number, unit: string): void {
  process.stdout.write(`${JSON.stringify({ figure: name, value, unit })}\n`);
}

// 1. static
const report = checkOva(ova);
for (const c of report.checks) say(c);
if (report.problems.length > 0) {
  for (const p of report.problems) say(`PROBLEM: ${p}`);
  process.exit(1);
}
figure('ova.mb', Math.round((fs.statSync(ova).size / 1048576) * 10) / 10, 'MiB');
if (values['static-only']) process.exit(0);

const work = fs.mkdtempSync(path.join(process.env.VMVAULT_APPLIANCE_CHECK_DIR ?? '/var/tmp', 'vmvault-ova-boot-'));
let qemu: ChildProcess | undefined;
let consoleConn: SerialConsole | undefined;

async function main(): Promise<void> {
  // 2. import
  const disks = report.members.filter((m) => m.name.endsWith('.vmdk'));
  const system = disks.find((m) => m.name.endsWith('-system.vmdk'));
  const data = disks.find((m) => m.name.endsWith('-data.vmdk'));
  if (!system || !data) throw new Error('the OVA lacks the -system.vmdk or -data.vmdk disk');
  for (const [m, out] of [[system, 'system.qcow2'], [data, 'data.qcow2']] as const) {
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', memberImage(ova, m), path.join(work, out)]);
  }
  say(`imported the disks into ${work}`);

  // 3. the OVF environment, ISO transport.
  const token = `check-${randomBytes(16).toString('hex')}`;
  const password = randomBytes(9).toString('base64url');
  const hostname = 'ova-check.example.test';
  fs.mkdirSync(path.join(work, 'iso'));
  fs.writeFileSync(path.join(work, 'iso', 'ovf-env.xml'), `<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1" xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PlatformSection><Kind>QEMU</Kind></PlatformSection>
  <PropertySection>
    <Property oe:key="vmvault.hostname" oe:value="${hostname}"/>
    <Property oe:key="vmvault.ip" oe:value="10.0.2.15"/>
    <Property oe:key="vmvault.netmask" oe:value="255.255.255.0"/>
    <Property oe:key="vmvault.gateway" oe:value="10.0.2.2"/>
    <Property oe:key="vmvault.dns" oe:value="10.0.2.3"/>
    <Property oe:key="vmvault.ntp" oe:value="10.0.2.2"/>
    <Property oe:key="vmvault.admin_token" oe:value="${token}"/>
    <Property oe:key="vmvault.admin_password" oe:value="${password}"/>
  </PropertySection>
</Environment>
`);
  execFileSync('genisoimage', ['-quiet', '-r', '-J', '-V', 'OVF ENV', '-o', path.join(work, 'ovf-env.iso'), path.join(work, 'iso')]);
  const port = await freePort();
  const base = `https://127.0.0.1:${port}/api/v1`;

  const t0 = Date.now();
  await startQemu(port);
  const health = await waitHealth(base, token, BOOT_TIMEOUT_MS);
  const bootS = (Date.now() - t0) / 1000;
  say(`first boot: /health answered ${health.status} over HTTPS with the token after ${bootS.toFixed(1)} s`);
  figure('ova.boot_s', Math.round(bootS * 10) / 10, 's');
  // The console screen (/etc/issue) shows the address and the fingerprint of the certificate
  // the control plane serves.
  const issue = await consoleConn!.waitFor(/https:\/\/10\.0\.2\.15:7443\/api\/v1\/health[\s\S]*?fingerprint:\s*\r?\n\s*([0-9A-F:]{95})/, 120_000, 'console screen with address and fingerprint');
  if (issue[1] !== health.fingerprint) throw new Error(`the console shows fingerprint ${issue[1]} but the appliance serves ${health.fingerprint}`);
  say(`console screen: address and fingerprint ${health.fingerprint.slice(0, 23)}... match the served certificate`);
  const noToken = await request('GET', `${base}/shares`, undefined);
  if (noToken.status !== 401) throw new Error(`GET /shares without the token answered ${noToken.status}, expected 401`);

  // 4. a share across a reboot.
  for (const name of ['survives-reboot', 'cut']) {
    const r = await request('POST', `${base}/shares`, token, { name });
    if (r.status !== 201) throw new Error(`creating share ${name}: ${r.status} ${r.body}`);
  }
  await consoleConn!.login('root', password, 120_000);
  const hostOut = await consoleConn!.run('hostname; ip -4 -o addr show scope global | awk \'{print $4}\'; findmnt -no SOURCE,SIZE /var/lib/vmvault', 30_000);
  say(`in the guest: ${hostOut.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '').replace(/VMV> /g, '').trim().split(/\r?\n/).join(' | ')}`);
  if (!hostOut.includes(hostname.split('.')[0]) || !hostOut.includes('10.0.2.15/24')) throw new Error(`host name or address not as set: ${hostOut}`);
  const r0 = Date.now();
  consoleConn!.type('systemctl reboot');
  await waitDown(base, 180_000);
  await waitHealth(base, token, BOOT_TIMEOUT_MS);
  const rebootS = (Date.now() - r0) / 1000;
  figure('ova.reboot_s', Math.round(rebootS * 10) / 10, 's');
  const kept = await request('GET', `${base}/shares/survives-reboot`, token);
  if (kept.status !== 200) throw new Error(`after the reboot, share survives-reboot: ${kept.status} ${kept.body}`);
  say(`reboot (${rebootS.toFixed(1)} s): share survives-reboot is still there`);

  // 5. power loss during fsync'd writes.
  await consoleConn!.login('root', password, 300_000);
  const writer = `node -e 'const fs=require("fs"),c=require("crypto"),d="/srv/vmvault/cut";for(let i=1;;i++){const b=c.createHash("sha256").update("f"+i).digest();const f=fs.openSync(d+"/f"+i,"w");fs.writeSync(f,Buffer.concat(Array(2048).fill(b)));fs.fsyncSync(f);fs.closeSync(f);const x=fs.openSync(d,"r");fs.fsyncSync(x);fs.closeSync(x);console.log("ACK "+i)}'`;
  consoleConn!.mark();
  consoleConn!.type(writer);
  await consoleConn!.waitFor(/^ACK 20\r?$/m, 300_000, '20 acknowledged writes');
  // Kill within a write: wait a random part of the time one write takes.
  await new Promise((r) => setTimeout(r, 200 + Math.floor(Math.random() * 800)));
  qemu!.kill('SIGKILL');
  const acked = Math.max(...[...consoleConn!.text.matchAll(/^ACK (\d+)\r?$/gm)].map((m) => Number(m[1])));
  await new Promise((r) => qemu!.once('exit', r));
  consoleConn!.close();
  say(`power cut: QEMU killed after ${acked} acknowledged fsync'd writes`);
  await startQemu(port);
  await waitHealth(base, token, BOOT_TIMEOUT_MS);
  await consoleConn!.login('root', password, 300_000);
  const verify = `node -e 'const fs=require("fs"),c=require("crypto"),d="/srv/vmvault/cut";for(const n of fs.readdirSync(d).filter(n=>/^f[0-9]+$/.test(n))){const b=c.createHash("sha256").update(n).digest();const got=fs.readFileSync(d+"/"+n);console.log("HAVE "+n+" "+(got.equals(Buffer.concat(Array(2048).fill(b)))?"ok":"bad "+got.length))}'`;
  const out = await consoleConn!.run(verify, 300_000);
  const have = new Map([...out.matchAll(/HAVE f(\d+) (ok|bad \d+)/g)].map((m) => [Number(m[1]), m[2]]));
  const lost: string[] = [];
  for (let i = 1; i <= acked; i++) if (have.get(i) !== 'ok') lost.push(`f${i}: ${have.get(i) ?? 'missing'}`);
  if (lost.length > 0) throw new Error(`after the power cut, acknowledged writes lost or damaged: ${lost.join(', ')}`);
  const extra = [...have.entries()].filter(([i]) => i > acked).map(([i, s]) => `f${i} ${s}`);
  say(`after the power cut: all ${acked} acknowledged files read back whole${extra.length ? `; unacknowledged: ${extra.join(', ')}` : ''}`);
  figure('ova.powercut_acked_lost', 0, 'files');
  consoleConn!.type('systemctl poweroff');
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => { qemu?.kill('SIGKILL'); resolve(); }, 120_000);
    qemu!.once('exit', () => { clearTimeout(t); resolve(); });
  });

  async function startQemu(p: number): Promise<void> {
    const sock = path.join(work, 'serial.sock');
    fs.rmSync(sock, { force: true });
    const args = [
      '-machine', 'q35', '-accel', 'tcg,tb-size=64', '-m', '1024', '-smp', '1', '-display', 'none', '-nodefaults',
      '-drive', `file=${path.join(work, 'system.qcow2')},if=none,id=d0,format=qcow2`, '-device', 'virtio-blk-pci,drive=d0,bootindex=0',
      '-drive', `file=${path.join(work, 'data.qcow2')},if=none,id=d1,format=qcow2`, '-device', 'virtio-blk-pci,drive=d1',
      '-drive', `file=${path.join(work, 'ovf-env.iso')},if=none,id=cd0,media=cdrom,readonly=on`, '-device', 'ide-cd,drive=cd0,bus=ide.1',
      '-netdev', `user,id=n0,hostfwd=tcp:127.0.0.1:${p}-10.0.2.15:7443`, '-device', 'virtio-net-pci,netdev=n0,romfile=',
      '-chardev', `socket,id=s0,path=${sock},server=on,wait=off,logfile=${path.join(work, 'serial.log')},logappend=on`, '-serial', 'chardev:s0',
    ];
    qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    qemu.stderr!.on('data', (d) => (err += d));
    qemu.once('exit', (code, sig) => { if (code !== 0 && sig === null) say(`QEMU exited ${code}: ${err.trim()}`); });
    consoleConn = await SerialConsole.connect(sock);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address() as net.AddressInfo;
      s.close(() => resolve(a.port));
    });
    s.on('error', reject);
  });
}

interface Answer { status: number; body: string; fingerprint: string }

/** HTTPS to the appliance. Its certificate is self-signed: the fingerprint is returned, and compared with the console's. */
function request(method: string, url: string, token: string | undefined, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method, rejectUnauthorized: false, timeout: 20_000,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    }, (res) => {
      const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256 ?? '';
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, fingerprint }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

async function waitHealth(base: string, token: string, timeoutMs: number): Promise<Answer> {
  const until = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (qemu?.exitCode !== null && qemu?.exitCode !== undefined) throw new Error(`QEMU exited (${qemu.exitCode}) before /health answered`);
    try {
      const r = await request('GET', `${base}/health`, token);
      if (r.status === 200 && /"status":"ok"/.test(r.body)) return r;
      last = `${r.status} ${r.body}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > until) throw new Error(`/health did not answer 200 within ${timeoutMs / 1000} s (last: ${last}); serial log: ${path.join(work, 'serial.log')}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function waitDown(base: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await request('GET', `${base}/health`, undefined);
    } catch {
      return;
    }
    if (Date.now() > until) throw new Error('the appliance still answered long after systemctl reboot');
    await new Promise((r) => setTimeout(r, 500));
  }
}

let failed = false;
try {
  await main();
  say('all checks passed');
} catch (err) {
  failed = true;
  say(`FAILED: ${(err as Error).message}`);
  const log = path.join(work, 'serial.log');
  if (fs.existsSync(log)) process.stderr.write(`--- last of the serial console ---\n${fs.readFileSync(log, 'utf8').slice(-4000)}\n`);
} finally {
  consoleConn?.close();
  if (qemu && qemu.exitCode === null && qemu.signalCode === null) {
    qemu.kill('SIGKILL');
    await new Promise((r) => qemu!.once('exit', r));
  }
  if (values.keep || failed) say(`kept ${work}`);
  else fs.rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
