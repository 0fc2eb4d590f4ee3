// `vmvault destination ...` and `vmvault clone VM --to DEST` against a real control plane on a
// loopback socket whose clone service holds a real store and namespace (the VM side is the
// in-memory test double; the copies are real directory archives). The destination's token,
// given with --token, never comes back out; our own API token comes from VMVAULT_TOKEN then.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { buildServer } from '../src/control/server.js';
import { listen } from '../src/control/listen.js';
import { cloneSource } from './helpers/clone-source.js';
import { runMain } from './helpers/cli-run.js';
import { TOKEN } from './helpers/control-server.js';
import { MemoryServices } from './helpers/memory-services.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('destination add, list, show, verify, remove; clone --to', async (t) => {
  const src = await cloneSource(t);
  await src.point('vm1', 'P1', Buffer.alloc(256 * 1024, 7));
  const services = new MemoryServices();
  await services.openVms(tmpDir(t));
  const app = await buildServer(services, { token: TOKEN, clones: src.clones });
  t.teardown(() => app.close());
  const url = await listen(app, { host: '127.0.0.1', port: 0 });
  const env = { VMVAULT_TOKEN: TOKEN };
  const cli = (...args: string[]) => runMain(['--url', url, ...args], env);
  const tape = path.join(tmpDir(t, 'vmvault-cli-tape-'), 'a');

  let r = await cli('destination', 'add', 'tape', '--dir', tape);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /added destination tape: directory/);
  const secret = 'vva_' + 'cd'.repeat(32);
  r = await cli('destination', 'add', 'site-b', '--appliance', 'https://site-b.example:7443', '--token', secret, '--pin', 'AB:'.repeat(31) + 'AB');
  t.equal(r.code, 0, `--token is the destination's; the API token came from VMVAULT_TOKEN: ${r.stderr}`);
  r = await cli('destination', 'list');
  t.match(r.stdout, /site-b\s+appliance\s+https:\/\/site-b\.example:7443/);
  t.match(r.stdout, /tape\s+dir/);
  r = await cli('--json', 'destination', 'show', 'site-b');
  t.notOk(r.stdout.includes('cdcd'), 'the token is never shown');
  t.equal(JSON.parse(r.stdout).pin, 'ab'.repeat(32));

  r = await cli('clone', 'vm1', '--to', 'tape');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /Copy\s+tape: .*segments written.*verified/);
  r = await cli('destination', 'verify', 'tape');
  t.equal(r.code, 0);
  t.match(r.stdout, /destination tape: 1 point\(s\) checked, no problems/);
  r = await cli('destination', 'show', 'tape');
  t.match(r.stdout, /vm1\s+P1/);

  // A flipped byte: exit 7 (damaged), the container named.
  const cdir = path.join(tape, 'containers');
  const c = path.join(cdir, fs.readdirSync(cdir)[0]);
  const buf = fs.readFileSync(c);
  buf[buf.length - 10] ^= 1;
  fs.writeFileSync(c, buf);
  r = await cli('destination', 'verify', 'tape', '--point', 'P1');
  t.equal(r.code, 7, 'damage found: exit 7');
  t.match(r.stdout, /corrupt-segment: segment \w+… in container c000001\.vvac at offset \d+ failed verification \(used by point vm1\/P1, file (vda\.raw|vm\.json) at \d+\)/);

  // Bad input.
  r = await cli('destination', 'add', 'x', '--dir', 'relative');
  t.equal(r.code, 2);
  t.match(r.stderr, /absolute path/);
  r = await cli('destination', 'add', 'y', '--appliance', 'https://h:7443');
  t.equal(r.code, 2);
  t.match(r.stderr, /--token is required/);
  r = await cli('clone', 'vm1', '--to', 'nowhere');
  t.equal(r.code, 5);
  t.match(r.stderr, /no destination named nowhere/);
  r = await cli('clone', 'vm1');
  t.equal(r.code, 2);
  t.match(r.stderr, /--to <destination> is required/);
  r = await cli('share', 'list', '--dir', '/x');
  t.equal(r.code, 2, 'other commands refuse --dir');

  r = await cli('destination', 'remove', 'site-b');
  t.equal(r.code, 0);
  r = await cli('destination', 'show', 'site-b');
  t.equal(r.code, 5);
});
