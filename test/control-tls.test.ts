// The control plane over HTTPS (--tls-cert/--tls-key, used by the appliance image): a real
// socket, a real certificate made by openssl, the token checked as over HTTP, and a remote
// address allowed only because the token no longer crosses the network in clear.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { listen } from '../src/control/listen.js';
import { buildServer } from '../src/control/server.js';
import { loadConfig } from '../src/appliance.js';
import { MemoryServices } from './helpers/memory-services.js';
import { TOKEN } from './helpers/control-server.js';

function get(url: string, ca: Buffer | undefined, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers, servername: 'vmvault.test' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

t.test('serves HTTPS with the given certificate; the token is still required', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-tls-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
    '-subj', '/CN=vmvault.test', '-addext', 'subjectAltName=DNS:vmvault.test,IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const app = await buildServer(new MemoryServices(), { token: TOKEN, tls: { key: fs.readFileSync(key), cert: fs.readFileSync(cert) } });
  t.teardown(() => app.close());
  const url = await listen(app, { host: '0.0.0.0', port: 0, tls: true });
  t.match(url, /^https:\/\/0\.0\.0\.0:\d+$/, 'a non-loopback address is allowed with TLS, and the URL says https');
  const base = `https://127.0.0.1:${new URL(url).port}/api/v1`;
  const ca = fs.readFileSync(cert);
  const health = await get(`${base}/health`, ca);
  t.equal(health.status, 200, 'health over HTTPS, verified against the certificate');
  const denied = await get(`${base}/shares`, ca);
  t.equal(denied.status, 401, 'no token: refused');
  const ok = await get(`${base}/shares`, ca, { authorization: `Bearer ${TOKEN}` });
  t.equal(ok.status, 200, 'with the token');
  await t.rejects(get(`${base}/health`, undefined), /self.signed|unable to verify|certificate/i, 'a client that does not trust the certificate refuses it');
});

t.test('--tls-cert without --tls-key is a usage error', async (t) => {
  await t.rejects(loadConfig(['--tls-cert', '/x.pem']), { code: 'INVALID_ARGUMENT', message: /both a certificate/ });
  const cfg = await loadConfig(['--tls-cert', '/c.pem', '--tls-key', '/k.pem']);
  t.match(cfg, { tlsCert: '/c.pem', tlsKey: '/k.pem' });
});
