// The real launcher (node bin/vmvault.js) as a child process against a server on an ephemeral
// port: what only a process shows (exit status, SIGINT, environment, working directory).

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { listen } from '../src/control/listen.js';
import { runCli, startCli } from './helpers/cli-run.js';
import { TOKEN, testServer } from './helpers/control-server.js';
import { tmpDir } from './helpers/tmpdir.js';

const s = await testServer(t);
const url = await listen(s.app, { port: 0 });
const base = ['--url', url, '--token', TOKEN];
const cli = (...args: string[]) => runCli([...base, ...args]);

t.test('share create/list/delete and stats, with process exit statuses', async (t) => {
  const created = await cli('share', 'create', 'vms');
  t.equal(created.code, 0, created.stderr);
  t.equal(created.stdout, 'created share vms\n');
  s.services.addFile('vms', 'web01.vmdk', 2 * 1024 ** 3);
  const list = await cli('share', 'list');
  t.match(list.stdout, /^NAME\s+FILES\s+LOGICAL\s+SNAPSHOTS\s+CREATED\s+ORIGIN\nvms\s+1\s+2\.00 GiB\s+0\s+/);
  const stats = await cli('stats', '--json');
  t.equal(stats.code, 0);
  t.match(JSON.parse(stats.stdout), { logicalBytes: 2 * 1024 ** 3, dedupRatio: 4, shares: 1 });
  const human = await cli('stats');
  t.match(human.stdout, /^Dedup ratio\s+4\.0x$/m);
  const dup = await cli('share', 'create', 'vms', '--json');
  t.equal(dup.code, 6);
  t.same(JSON.parse(dup.stdout), { error: { code: 'ALREADY_EXISTS', message: 'share vms already exists' } });
  t.equal(dup.stderr, 'vmvault: share vms already exists\n');
  t.equal((await cli('share', 'delete', 'nope')).code, 5);
  t.equal((await cli('share', 'delete', 'vms')).code, 6);
  t.equal((await cli('share', 'create', 'a\u0001b')).code, 2);
  const del = await cli('share', 'delete', 'vms', '--force', '--json');
  t.equal(del.code, 0);
  t.same(JSON.parse(del.stdout), { deleted: 'vms' });
});

t.test('Ctrl-C cancels the job on the appliance and exits 130', async (t) => {
  s.services.plan = { steps: 100000, stepMs: 5, perStep: 1 };
  const run = startCli([...base, 'gc']);
  let id: string | undefined;
  for (let i = 0; i < 400 && id === undefined; i++) {
    await new Promise((r) => setTimeout(r, 25));
    id = (await s.call('GET', '/api/v1/jobs')).json().jobs.find((j: { state: string }) => j.state === 'running')?.id;
  }
  t.ok(id, 'the job is running');
  // Let the CLI reach its polling loop (its SIGINT handler is installed with it).
  await new Promise((r) => setTimeout(r, 500));
  run.child.kill('SIGINT');
  const r = await run.done;
  t.equal(r.code, 130, r.stderr);
  t.match(r.stderr, new RegExp(`cancelling job ${id}`));
  t.match(r.stdout, /^State\s+cancelled$/m);
  const job = (await s.call('GET', `/api/v1/jobs/${id}`)).json();
  t.equal(job.state, 'cancelled');
  t.equal(job.cancelRequested, true);
});

t.test('token sources and refusals', async (t) => {
  const wrong = await runCli(['--url', url, '--token', 'wrong-token-wrong-token', 'share', 'list']);
  t.equal(wrong.code, 4);
  t.equal(wrong.stderr, 'vmvault: the appliance refused the API token from --token\n');
  t.notMatch(wrong.stderr + wrong.stdout, /wrong-token/, 'the token is not printed');
  const dir = tmpDir(t);
  const none = await runCli(['--url', url, 'share', 'list'], {}, dir);
  t.equal(none.code, 4);
  t.match(none.stderr, /no API token: pass --token, set VMVAULT_TOKEN, or point --data at the appliance's data directory \(no vmvault-data\/api-token\)/);
  const env = await runCli(['--url', url, 'share', 'list', '--json'], { VMVAULT_TOKEN: TOKEN });
  t.equal(env.code, 0, env.stderr);
  fs.mkdirSync(path.join(dir, 'data'));
  fs.writeFileSync(path.join(dir, 'data', 'api-token'), `${TOKEN}\n`, { mode: 0o600 });
  const fromData = await runCli(['--url', url, '--data', path.join(dir, 'data'), 'share', 'list', '--json'], {}, dir);
  t.equal(fromData.code, 0, fromData.stderr);
  fs.mkdirSync(path.join(dir, 'vmvault-data'));
  fs.writeFileSync(path.join(dir, 'vmvault-data', 'api-token'), `${TOKEN}\n`, { mode: 0o600 });
  const fromDefault = await runCli(['--url', url, 'share', 'list', '--json'], {}, dir);
  t.equal(fromDefault.code, 0, 'default data directory ./vmvault-data');
  const envBeatsData = await runCli(['--url', url, 'share', 'list'], { VMVAULT_TOKEN: 'wrong-token-wrong-token' }, dir);
  t.equal(envBeatsData.code, 4);
  t.match(envBeatsData.stderr, /from VMVAULT_TOKEN/);
});

t.test('unreachable appliance, usage errors, help', async (t) => {
  const port = await freePort();
  const closed = await runCli(['--url', `http://127.0.0.1:${port}`, '--token', TOKEN, 'stats']);
  t.equal(closed.code, 3);
  t.equal(closed.stderr, `vmvault: cannot reach the appliance at http://127.0.0.1:${port}: is \`vmvault appliance\` running? (ECONNREFUSED)\n`);
  const unknown = await cli('frobnicate');
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /unknown command "frobnicate"/);
  const missing = await cli('share', 'create');
  t.equal(missing.code, 2);
  t.equal(missing.stderr, 'vmvault: share create: expected <name>, got none\n');
  const option = await cli('stats', '--bogus');
  t.equal(option.code, 2);
  t.equal(option.stderr, "vmvault: unknown option --bogus (vmvault help lists the options; to pass a name that starts with '-', put it after --, as in: vmvault share create -- --bogus)\n");
  const badUrl = await runCli(['--url', 'localhost:7070', 'stats']);
  t.equal(badUrl.code, 2);
  const help = await runCli(['help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^usage: vmvault <command> \[options\]/);
  t.match(help.stdout, /snapshot create <share> <snapshot>/);
  const nothing = await runCli([]);
  t.equal(nothing.code, 2);
  t.match(nothing.stderr, /^usage:/);
});

/** A port nothing listens on: bound, noted, released. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
