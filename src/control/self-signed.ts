// The certificate an appliance serves when it listens beyond loopback without --tls-cert and
// --tls-key: self-signed, made once at first start in `<data>/tls/` (key mode 0600) with
// openssl (as the appliance image's first boot makes its own), kept across restarts and
// replaceable by putting another pair there. Agents pin its SHA-256 fingerprint, which the
// appliance prints at every start.

import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fromSystemError, vmError } from '../errors.js';

const run = promisify(execFile);

export interface SelfSigned {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
  created: boolean;
  /** SHA-256 of the certificate, colon form (what `openssl x509 -fingerprint -sha256` prints). */
  sha256: string;
}

export function certificateSha256(pem: Buffer): string {
  try {
    return new X509Certificate(pem).fingerprint256;
  } catch (err) {
    throw vmError('INVALID_ARGUMENT', `the TLS certificate is not a PEM certificate: ${(err as Error).message}`);
  }
}

/** `<data>/tls/cert.pem` and `key.pem`, made if absent. */
export async function ensureSelfSigned(dataDir: string, host: string): Promise<SelfSigned> {
  const dir = path.join(dataDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  let created = false;
  const exists = await fs.stat(certFile).then(() => true, () => false);
  if (!exists) {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmpKey = `${keyFile}.${process.pid}.tmp`;
    const tmpCert = `${certFile}.${process.pid}.tmp`;
    const names = [...new Set(['localhost', os.hostname(), host].filter((h) => h && h !== '0.0.0.0' && h !== '::'))];
    const san = names.map((n) => (/^[0-9.]+$/.test(n) || n.includes(':') ? `IP:${n}` : `DNS:${n}`)).concat(['IP:127.0.0.1']).join(',');
    try {
      await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
        '-subj', `/CN=vmvault ${os.hostname()}`, '-addext', `subjectAltName=${san}`, '-keyout', tmpKey, '-out', tmpCert]);
      await fs.chmod(tmpKey, 0o600);
      await fs.rename(tmpKey, keyFile);
      await fs.rename(tmpCert, certFile);
      created = true;
    } catch (err) {
      await fs.rm(tmpKey, { force: true });
      await fs.rm(tmpCert, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw vmError('NOT_SUPPORTED', 'making the self-signed TLS certificate needs openssl (apt-get install openssl), or give --tls-cert and --tls-key');
      throw fromSystemError(err, `making a self-signed TLS certificate in ${dir}`);
    }
  }
  const cert = await fs.readFile(certFile).catch((err) => Promise.reject(fromSystemError(err, `reading ${certFile}`)));
  const key = await fs.readFile(keyFile).catch((err) => Promise.reject(fromSystemError(err, `reading ${keyFile}`)));
  return { certFile, keyFile, cert, key, created, sha256: certificateSha256(cert) };
}
