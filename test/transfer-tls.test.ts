// HTTPS with a self-signed certificate made at first start, pinned by the agent: the right pin
// sends, a wrong one is refused before any request (the token) crosses.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import { ApplianceServices } from '../src/appliance-services.js';
import { AgentTokens } from '../src/control/agent-tokens.js';
import { listen } from '../src/control/listen.js';
import { ensureSelfSigned } from '../src/control/self-signed.js';
import { buildServer } from '../src/control/server.js';
import { SEPARATE_BODY_BYTES, TransferConnection } from '../src/transfer/client.js';
import { TransferReceiver } from '../src/transfer/receiver.js';
import { sendFile } from '../src/transfer/sender.js';
import { openNs, readFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';
import { bufferSource } from './helpers/transfer-appliance.js';

t.test('self-signed certificate, pinned', async (t) => {
  const dir = tmpDir(t);
  const own = await ensureSelfSigned(dir, '127.0.0.1');
  t.ok(own.created);
  t.match(own.sha256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  t.equal(fs.statSync(own.keyFile).mode & 0o777, 0o600, 'the key is private');
  const again = await ensureSelfSigned(dir, '127.0.0.1');
  t.notOk(again.created, 'kept across restarts');
  t.equal(again.sha256, own.sha256);

  const { ns } = await openNs(t, tmpDir(t));
  await ns.shares.create('vms');
  const svc = new ApplianceServices(ns);
  const receiver = new TransferReceiver(ns, { log: () => {} });
  svc.transfer = receiver;
  const tokens = AgentTokens.inMemory();
  const { token } = await tokens.create('remote');
  const app = await buildServer(svc, { token: 'admin-token-0123456789abcdef', agentTokens: tokens, tls: { cert: own.cert, key: own.key } });
  let requests = 0;
  app.addHook('onRequest', async () => {
    requests++;
  });
  const url = await listen(app, { host: '127.0.0.1', port: 0, tls: true });
  t.teardown(async () => {
    await app.close();
    await receiver.close();
  });
  t.match(url, /^https:/);

  const wrong = 'ab'.repeat(32);
  await t.rejects(TransferConnection.open({ url, token, pinSha256: wrong }), { code: 'UNAUTHORIZED', message: /does not match the pinned fingerprint/ });
  t.equal(requests, 0, 'a wrong pin: no request reached the appliance');
  await t.rejects(TransferConnection.open({ url, token }), 'no pin and no CA: the self-signed certificate is refused');
  t.equal(requests, 0);

  const conn = await TransferConnection.open({ url, token, pinSha256: own.sha256 });
  t.teardown(() => conn.close());
  const data = randomBytes(300_000);
  const r = await sendFile(conn, bufferSource(data), { share: 'vms', path: 'tls.raw', size: data.length });
  t.ok(r.bytesSent > 300_000, `bytes on the wire counted over TLS: ${r.bytesSent}`);
  t.ok((await readFile(ns, '/vms/tls.raw')).equals(data), 'reads back identical');
});

t.test('a large frame goes to the TLS socket as a write of its own, not a writev that copies it first', async (t) => {
  const dir = tmpDir(t);
  const own = await ensureSelfSigned(dir, '127.0.0.1');
  const { ns } = await openNs(t, tmpDir(t));
  await ns.shares.create('vms');
  const svc = new ApplianceServices(ns);
  const receiver = new TransferReceiver(ns, { log: () => {} });
  svc.transfer = receiver;
  const tokens = AgentTokens.inMemory();
  const { token } = await tokens.create('remote');
  const app = await buildServer(svc, { token: 'admin-token-0123456789abcdef', agentTokens: tokens, tls: { cert: own.cert, key: own.key } });
  const url = await listen(app, { host: '127.0.0.1', port: 0, tls: true });
  // Watches (does not change) what the TLS sockets of this process are handed: a writev of
  // several chunks is copied into one buffer by node before it is encrypted.
  const proto = tls.TLSSocket.prototype as unknown as { _writev: (chunks: Array<{ chunk: Buffer }>, cb: () => void) => void };
  const writev = proto._writev;
  const writevBytes: number[] = [];
  proto._writev = function (this: unknown, chunks: Array<{ chunk: Buffer }>, cb: () => void) {
    writevBytes.push(chunks.reduce((n, c) => n + c.chunk.length, 0));
    return writev.call(this, chunks, cb);
  };
  t.teardown(async () => {
    proto._writev = writev;
    await app.close();
    await receiver.close();
  });
  const conn = await TransferConnection.open({ url, token, pinSha256: own.sha256 });
  t.teardown(() => conn.close());
  const data = randomBytes(3_000_000); // incompressible: segments frames of about 3 MB
  const r = await sendFile(conn, bufferSource(data), { share: 'vms', path: 'big.raw', size: data.length });
  t.ok(r.segmentBytesSent >= 3_000_000, 'the segments crossed');
  t.ok((await readFile(ns, '/vms/big.raw')).equals(data), 'reads back identical');
  t.same(writevBytes.filter((n) => n >= SEPARATE_BODY_BYTES), [], 'no writev carried a large body');
  // And a second send on the same (kept-alive) connection: the same holds on a reused socket.
  const data2 = randomBytes(1_000_000);
  await sendFile(conn, bufferSource(data2), { share: 'vms', path: 'big2.raw', size: data2.length });
  t.ok((await readFile(ns, '/vms/big2.raw')).equals(data2), 'the second reads back identical');
  t.same(writevBytes.filter((n) => n >= SEPARATE_BODY_BYTES), [], 'none on the reused socket either');
});
