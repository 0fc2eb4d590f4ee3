// Puts first boot's files in place under a root directory ("/" in the appliance, a temporary
// directory in the tests), and makes the TLS certificate. Each file is written whole to a
// temporary name and renamed, so a power cut leaves the old file or the new, never half of one.

import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { hostsFile, networkdFile, resolvConf, timesyncdConf } from './render.js';
import type { Settings } from './settings.js';

export const DATA_DIR = '/var/lib/vmvault';
export const TLS_DIR = '/etc/vmvault/tls';

export function writeFileAtomic(file: string, text: string, mode = 0o644): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.firstboot-tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}

/** Network, names, time servers and the API token, under `root`. Returns what was written. */
export function applySettings(root: string, s: Settings): string[] {
  const written: string[] = [];
  const put = (rel: string, text: string | undefined, mode?: number): void => {
    const file = path.join(root, rel);
    if (text === undefined) {
      fs.rmSync(file, { force: true });
      return;
    }
    writeFileAtomic(file, text, mode);
    written.push(rel);
  };
  put('/etc/hostname', `${s.hostname}\n`);
  put('/etc/hosts', hostsFile(s));
  put('/etc/systemd/network/10-vmvault.network', networkdFile(s));
  // With DHCP, /etc/resolv.conf is left as it is (the image has no resolver daemon: see README).
  const resolv = resolvConf(s);
  if (resolv !== undefined) put('/etc/resolv.conf', resolv);
  put('/etc/systemd/timesyncd.conf.d/vmvault.conf', timesyncdConf(s));
  // The appliance reads its token from the data directory (src/control/token.ts) and keeps one
  // it finds there; a token set at deploy time replaces it, none set keeps what is there.
  if (s.adminToken !== undefined) put(path.join(DATA_DIR, 'api-token'), `${s.adminToken}\n`, 0o600);
  return written;
}

/**
 * A self-signed certificate for the host name and addresses, made when missing or when the
 * names it was made for changed (a new address from the vApp options). Returns its SHA-256
 * fingerprint. The key never leaves the appliance (mode 0600).
 */
export function ensureCertificate(root: string, hostname: string, addresses: string[]): { fingerprint: string; made: boolean } {
  const dir = path.join(root, TLS_DIR);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  const forFile = path.join(dir, 'made-for');
  const short = hostname.split('.')[0];
  const names = [...new Set([hostname, short, 'localhost'])].map((n) => `DNS:${n}`).concat([...new Set([...addresses, '127.0.0.1'])].map((a) => `IP:${a}`));
  const madeFor = names.join(',');
  let made = false;
  if (!fs.existsSync(cert) || !fs.existsSync(key) || (fs.existsSync(forFile) ? fs.readFileSync(forFile, 'utf8').trim() : '') !== madeFor) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const tmpKey = `${key}.tmp`;
    const tmpCert = `${cert}.tmp`;
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
      '-subj', `/CN=${hostname}/O=vmvault appliance`, '-addext', `subjectAltName=${madeFor}`, '-keyout', tmpKey, '-out', tmpCert], { stdio: ['ignore', 'ignore', 'pipe'] });
    fs.chmodSync(tmpKey, 0o600);
    fs.renameSync(tmpKey, key);
    fs.renameSync(tmpCert, cert);
    writeFileAtomic(forFile, `${madeFor}\n`);
    made = true;
  }
  const fingerprint = new X509Certificate(fs.readFileSync(cert)).fingerprint256;
  return { fingerprint, made };
}
