// First boot of the appliance image (and every boot after: the steps are idempotent, so a
// changed vApp property takes effect at the next boot). Run by two units:
//   vmvault-configure.service: `main.js configure`, before the network comes up: reads the OVF
//     environment, writes network, host name, time servers, token, password.
//   vmvault-certificate.service: `main.js certificate`, once the network is up: the TLS
//     certificate for the name and addresses, and the console screen (/etc/issue).
// Where the OVF environment comes from, first found wins: VMware guestinfo (vmware-rpctool), a
// CD-ROM holding ovf-env.xml (ISO transport), the copy kept from an earlier boot. None: DHCP.

import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applySettings, ensureCertificate, writeFileAtomic } from './apply.js';
import { parseOvfEnv } from './ovf-env.js';
import { issueText } from './render.js';
import { settingsFrom } from './settings.js';

const KEPT_ENV = '/etc/vmvault/ovf-env.xml';
const PROBLEMS = '/etc/vmvault/firstboot-problems';
const PORT = 7443;

function log(line: string): void {
  process.stderr.write(`vmvault-firstboot: ${line}\n`);
}

function fromGuestinfo(): string | undefined {
  const r = spawnSync('vmware-rpctool', ['info-get guestinfo.ovfEnv'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0 || r.stdout.trim() === '') return undefined;
  return r.stdout;
}

function fromCdrom(): string | undefined {
  let devices: string[] = [];
  try {
    devices = fs.readdirSync('/dev').filter((d) => /^sr\d+$/.test(d)).map((d) => `/dev/${d}`);
  } catch {
    return undefined;
  }
  for (const dev of devices) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ovfenv-'));
    try {
      if (spawnSync('mount', ['-o', 'ro', '-t', 'iso9660', dev, dir], { stdio: 'ignore' }).status !== 0) continue;
      try {
        const name = fs.readdirSync(dir).find((n) => /^ovf-env\.xml(;1)?$/i.test(n));
        if (name !== undefined) return fs.readFileSync(path.join(dir, name), 'utf8');
      } finally {
        spawnSync('umount', [dir], { stdio: 'ignore' });
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return undefined;
}

function readEnvironment(): { xml: string | undefined; source: string } {
  const g = fromGuestinfo();
  if (g !== undefined) return { xml: g, source: 'VMware guestinfo.ovfEnv' };
  const c = fromCdrom();
  if (c !== undefined) return { xml: c, source: 'ovf-env.xml on a CD-ROM' };
  if (fs.existsSync(KEPT_ENV)) return { xml: fs.readFileSync(KEPT_ENV, 'utf8'), source: `${KEPT_ENV} (kept from an earlier boot)` };
  return { xml: undefined, source: 'none' };
}

function configure(): void {
  const env = readEnvironment();
  let props = new Map<string, string>();
  const problems: string[] = [];
  if (env.xml !== undefined) {
    try {
      props = parseOvfEnv(env.xml);
      writeFileAtomic(KEPT_ENV, env.xml, 0o600);
    } catch (err) {
      problems.push(`the OVF environment from ${env.source} is unreadable (${(err as Error).message}): defaults used`);
    }
  }
  log(`OVF environment: ${env.source}, ${props.size} propert${props.size === 1 ? 'y' : 'ies'}`);
  const s = settingsFrom(props);
  problems.push(...s.problems);
  for (const p of problems) log(p);
  const written = applySettings('/', s);
  log(`wrote ${written.join(', ')}; network: ${s.network ? `${s.network.address}/${s.network.prefix}` : 'DHCP'}`);
  spawnSync('hostname', [s.hostname], { stdio: 'ignore' });
  if (s.adminPassword !== undefined) {
    execFileSync('chpasswd', [], { input: `root:${s.adminPassword}\n` });
    log('set the console password of root (vmvault.admin_password)');
  }
  writeFileAtomic(PROBLEMS, problems.map((p) => `${p}\n`).join(''));
}

function addresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') out.push(a.address);
  }
  return out;
}

async function certificate(): Promise<void> {
  // DHCP may take a moment after network-online; wait up to 30 s for an address.
  let addrs = addresses();
  for (let i = 0; i < 30 && addrs.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    addrs = addresses();
  }
  const hostname = fs.readFileSync('/etc/hostname', 'utf8').trim() || os.hostname();
  const { fingerprint, made } = ensureCertificate('/', hostname, addrs);
  log(`${made ? 'made' : 'kept'} the TLS certificate for ${hostname} ${addrs.join(' ')}: SHA-256 ${fingerprint}`);
  const problems = fs.existsSync(PROBLEMS) ? fs.readFileSync(PROBLEMS, 'utf8').split('\n').filter((l) => l !== '') : [];
  writeFileAtomic('/etc/issue', issueText({ hostname, addresses: addrs, port: PORT, fingerprint, problems }));
}

const cmd = process.argv[2];
if (cmd === 'configure') configure();
else if (cmd === 'certificate') await certificate();
else {
  process.stderr.write('usage: main.js configure|certificate\n');
  process.exit(2);
}
