// `vmvault vm add/list/get/remove`, `backup`, `backup list` and `restore` over a real socket,
// in-process through main(): output, --json, exit codes, and bad input refused with the
// command's words before anything reaches the appliance, or with the appliance's after. The
// appliance side is the HTTP test double with the real VM services and registry, and no backup
// service (backups answer NOT_SUPPORTED); test/vm-backup-api.test.ts runs them for real.

import t from 'tap';
import { listen } from '../src/control/listen.js';
import { runMain } from './helpers/cli-run.js';
import { TOKEN, testServer } from './helpers/control-server.js';

const s = await testServer(t);
const url = await listen(s.app, { port: 0 });
const base = ['--url', url, '--token', TOKEN];
const cli = (...args: string[]) => runMain([...base, ...args]);

t.test('vm add, list, get, remove', async (t) => {
  const empty = await cli('vm', 'list');
  t.equal(empty.code, 0);
  t.equal(empty.stdout, 'no VMs yet (vmvault vm add <vm> --qmp <addr>)\n');

  const added = await cli('vm', 'add', 'web01', '--qmp', 'unix:/run/qemu/web01.qmp', '--qga', 'unix:/run/qemu/web01.qga', '--pg', 'postgres://backup:pw@127.0.0.1/postgres');
  t.equal(added.code, 0, added.stderr);
  t.match(added.stdout, /^registered VM web01 \(backups go to share web01\)\n/);
  t.match(added.stdout, /State\s+unknown \(this appliance has no backup service\)/);
  t.match(added.stdout, /PostgreSQL\s+postgres:\/\/backup:\*\*\*@127\.0\.0\.1\/postgres/);
  t.notOk(added.stdout.includes(':pw@'), 'the password is not shown');
  t.match(added.stdout, /Last backup\s+never/);

  const json = await cli('vm', 'add', 'db01', '--qmp', 'tcp:10.0.0.7:4444', '--share', 'databases', '--workflow', 'crash-consistent', '--json');
  t.equal(json.code, 0, json.stderr);
  t.match(JSON.parse(json.stdout), { name: 'db01', share: 'databases', workflow: 'crash-consistent', state: 'unknown', disks: [] });

  const list = await cli('vm', 'list');
  t.equal(list.code, 0);
  const lines = list.stdout.trimEnd().split('\n');
  t.match(lines[0], /^NAME\s+STATE\s+DISKS\s+LAST BACKUP$/);
  t.match(lines[1], /^db01\s+unknown\s+-\s+never$/);
  t.match(lines[2], /^web01\s+unknown\s+-\s+never$/);
  t.match(list.stdout, /\n\ndb01: this appliance has no backup service\nweb01: this appliance has no backup service\n$/, 'why each VM has no state, below the table');
  t.same(JSON.parse((await cli('vm', 'list', '--json')).stdout).map((v: { name: string }) => v.name), ['db01', 'web01']);

  const get = await cli('vm', 'get', 'db01');
  t.equal(get.code, 0);
  t.match(get.stdout, /Guest agent\s+none \(crash-consistent backups only\)/);

  const removed = await cli('vm', 'remove', 'db01');
  t.equal(removed.code, 0);
  t.match(removed.stdout, /^removed VM db01 \(its share and restore points stay/);
  const gone = await cli('vm', 'get', 'db01');
  t.equal(gone.code, 5, 'not found: 5');
  t.match(gone.stderr, /^vmvault: no VM "db01"/);
});

t.test('bad input: usage errors (2), appliance refusals with their exit codes', async (t) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['vm'], 2, /vm: expected add, list, get or remove, got nothing/],
    [['vm', 'add', 'x'], 2, /vm add: --qmp <addr> is required/],
    [['vm', 'add', '--qmp', 'unix:/a'], 2, /vm add: expected <vm>, got none/],
    [['vm', 'add', 'x', 'y', '--qmp', 'unix:/a'], 2, /vm add: expected <vm>, got "x" "y"/],
    [['vm', 'add', 'bad/name', '--qmp', 'unix:/a'], 2, /VM name "bad\/name" contains '\/'/],
    [['vm', 'add', 'x', '--qmp', 'qmp.sock'], 2, /qmp address "qmp\.sock": expected unix:\/absolute\/path or tcp:host:port/],
    [['vm', 'add', 'x', '--qmp', 'tcp:host:0'], 2, /port 0 is not between 1 and 65535/],
    [['vm', 'add', 'x', '--qmp', 'unix:/a', '--pg', 'localhost'], 2, /pg URL "localhost" does not parse as a URL/],
    [['vm', 'add', 'web01', '--qmp', 'unix:/b'], 6, /a VM named "web01" is already registered/],
    [['vm', 'add', 'x', '--qmp', 'unix:/a', '--point', 'p'], 2, /vm add takes no --point/],
    [['vm', 'list', '--qmp', 'unix:/a'], 2, /vm list takes no --qmp/],
    [['share', 'list', '--workflow', 'w'], 2, /share takes no --workflow/],
    [['vm', 'remove', 'nope'], 5, /no VM "nope"/],
    [['backup'], 2, /backup: expected <vm>, got none/],
    [['backup', 'nope'], 5, /no VM "nope"/],
    [['backup', 'web01', '--workflow', 'a b'], 2, /workflow name "a b" is not valid/],
    [['backup', 'web01', '--to', '/x'], 2, /backup takes no --to/],
    [['backup', 'list'], 2, /backup list: expected <vm>, got none/],
    [['backup', 'list', 'nope'], 5, /no VM "nope"/],
    [['backup', 'web01'], 1, /no backup service/],
    [['restore', 'web01'], 2, /restore: --to is required: a directory on the appliance host .*, or an NBD URI/],
    [['restore', 'web01', '--to', '/tmp/r', '--format', 'vmdk'], 2, /--format must be raw or qcow2, not "vmdk"/],
    [['restore', 'nope', '--to', '/tmp/r'], 5, /no VM "nope"/],
    [['restore', 'web01', '--to', '/tmp/r', '--workflow', 'w'], 2, /restore takes no --workflow/],
    [['restore', 'web01', '--in-place', '--to', '/tmp/r'], 2, /restore --in-place writes over the VM's own disk files in their own format: give no --to or --format/],
    [['restore', 'web01', '--in-place', '--format', 'raw'], 2, /give no --to or --format/],
    [['restore', 'nope', '--in-place'], 5, /no VM "nope"/],
    [['backup', 'web01', '--in-place'], 2, /backup takes no --in-place/],
  ];
  for (const [args, code, message] of cases) {
    const r = await cli(...args);
    t.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.match(r.stderr, message, args.join(' '));
  }
  t.same(JSON.parse((await cli('vm', 'list', '--json')).stdout).map((v: { name: string }) => v.name), ['web01'], 'nothing half made');
  const jobs = JSON.parse((await cli('jobs', '--json')).stdout);
  t.same(jobs, [], 'no job started');
});

t.test('help lists the VM commands', async (t) => {
  const help = await cli('help');
  t.equal(help.code, 0);
  for (const line of [/vm add <vm> --qmp <addr>/, /vm list/, /vm remove <vm>/, /backup <vm> \[--workflow <w>\] \[--full\]/, /backup list <vm>/, /restore <vm> --to <dir> \[--point <time>\] \[--format raw\|qcow2\]/, /restore <vm> --in-place \[--point <time>\]/]) {
    t.match(help.stdout, line);
  }
});
