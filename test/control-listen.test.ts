// Where the control plane listens: loopback unless remote is allowed on purpose.

import t from 'tap';
import { isLoopback, listen } from '../src/control/listen.js';
import { testServer } from './helpers/control-server.js';

t.test('isLoopback', async (t) => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) t.equal(isLoopback(h), true, h);
  for (const h of ['0.0.0.0', '::', '192.168.1.10', '10.0.0.1', 'example.com', '128.0.0.1']) t.equal(isLoopback(h), false, h);
});

t.test('refuses non-loopback addresses unless allowed', async (t) => {
  const s = await testServer(t);
  for (const host of ['0.0.0.0', '::', '192.168.1.10']) {
    await t.rejects(listen(s.app, { host, port: 0 }), { code: 'INVALID_ARGUMENT', message: /not a loopback address/ }, host);
  }
  await t.rejects(listen(s.app, { port: 70000 }), { code: 'INVALID_ARGUMENT' });
  const url = await listen(s.app, { host: '0.0.0.0', port: 0, allowRemote: true });
  t.match(url, /^http:\/\/0\.0\.0\.0:\d+$/, 'allowed on purpose');
});

t.test('a taken port is a CONFLICT that says so', async (t) => {
  const a = await testServer(t);
  const url = await listen(a.app, { port: 0 });
  const port = Number(new URL(url).port);
  const b = await testServer(t);
  await t.rejects(listen(b.app, { port }), { code: 'CONFLICT', message: new RegExp(`127\\.0\\.0\\.1:${port} is already in use`) });
});
