// `vmvault export` over a real socket against the in-memory double (test/helpers/memory-exports.ts):
// the command line, output and exit codes. The servers themselves: export-servers.test.ts.

import t from 'tap';
import { listen } from '../src/control/listen.js';
import { runMain } from './helpers/cli-run.js';
import { TOKEN, testServer } from './helpers/control-server.js';

const s = await testServer(t);
const url = await listen(s.app, { port: 0 });
const cli = (...args: string[]) => runMain(['--url', url, '--token', TOKEN, ...args]);

t.test('export enable, list, disable, password', async (t) => {
  t.equal((await cli('share', 'create', 'vms')).code, 0);
  const none = await cli('export', 'list');
  t.equal(none.stdout, 'no exports (vmvault export nfs|smb enable <share> --clients CIDR,...)\n');
  const en = await cli('export', 'nfs', 'enable', 'vms', '--clients', '10.0.0.0/24, 192.0.2.7');
  t.equal(en.code, 0, en.stderr);
  t.match(en.stdout, /^exported vms over NFS at nfs:\/\/appliance\.test:2049\/vms to 10\.0\.0\.0\/24, 192\.0\.2\.7\/32 \(active\)\n$/);
  t.equal((await cli('export', 'smb', 'enable', 'vms')).code, 0);
  const list = await cli('export', 'list');
  const lines = list.stdout.trimEnd().split('\n');
  t.match(lines[0], /^PROTOCOL\s+SHARE\s+URL\s+CLIENTS\s+STATE\s+SINCE$/);
  t.match(lines[1], /^nfs\s+vms\s+nfs:\/\/appliance\.test:2049\/vms\s+10\.0\.0\.0\/24,192\.0\.2\.7\/32\s+active\s+/);
  t.match(lines[2], /^smb\s+vms\s+smb:\/\/appliance\.test:445\/vms\s+127\.0\.0\.1\/32,::1\/128\s+active\s+/);
  const json = JSON.parse((await cli('export', 'list', '--json')).stdout);
  t.same(json.map((e: any) => [e.protocol, e.share, e.url]), [['nfs', 'vms', 'nfs://appliance.test:2049/vms'], ['smb', 'vms', 'smb://appliance.test:445/vms']]);

  const twice = await cli('export', 'nfs', 'enable', 'vms');
  t.equal(twice.code, 6, 'enabling twice: conflict (6)');
  t.match(twice.stderr, /already exported over NFS/);
  const badCidr = await cli('export', 'nfs', 'enable', 'vms', '--clients', '10.0.0.1/24');
  t.equal(badCidr.code, 2, 'bad CIDR: usage (2)');
  t.match(badCidr.stderr, /did you mean 10\.0\.0\.0\/24/);
  const noShare = await cli('export', 'smb', 'enable', 'nope');
  t.equal(noShare.code, 5, 'unknown share: not found (5)');
  const usage = await cli('export', 'nfs', 'password');
  t.equal(usage.code, 2);
  t.match(usage.stderr, /NFS clients are allowed by address/);
  const stray = await cli('export', 'list', '--clients', '10.0.0.0/8');
  t.equal(stray.code, 2);
  t.match(stray.stderr, /export list takes no --clients/);
  const strayShare = await cli('share', 'list', '--user', 'x');
  t.equal(strayShare.code, 2, 'other commands refuse --user');

  const pw = await runMain(['--url', url, '--token', TOKEN, 'export', 'smb', 'password', '--user', 'backup'], { VMVAULT_SMB_PASSWORD: 'long-enough-pw' });
  t.equal(pw.code, 0, pw.stderr);
  t.equal(pw.stdout, 'SMB password of backup set\n');
  const short = await runMain(['--url', url, '--token', TOKEN, 'export', 'smb', 'password'], { VMVAULT_SMB_PASSWORD: 'short' });
  t.equal(short.code, 2);
  t.match(short.stderr, /password/, short.stderr);

  t.equal((await cli('export', 'nfs', 'disable', 'vms')).stdout, 'no longer exporting vms over NFS\n');
  const again = await cli('export', 'nfs', 'disable', 'vms');
  t.equal(again.code, 5);
});
