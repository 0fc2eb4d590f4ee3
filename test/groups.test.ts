// The group registry (<data>/groups.json): every field checked before anything is written, the
// file versioned and atomic, a newer or damaged file refused (never dropped: it is the operator's
// configuration), a removed VM taken out of every list (a group left empty stays), and members
// resolved at each call (a pattern or host takes the VMs registered since).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { GROUPS_FILE, GroupRegistry, globToRegExp, resolveGroup } from '../src/backup/groups.js';
import { isVmvaultError } from '../src/errors.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('create, resolve, forget a VM, reopen', async (t) => {
  const dir = tmpDir(t, 'vmvault-groups-');
  const reg = await GroupRegistry.open(dir);
  await reg.create({ name: 'web', vms: ['web01', 'web02'] });
  await reg.create({ name: 'pat', pattern: 'db-?' });
  await reg.create({ name: 'node1', host: 'node1' });
  const vms = [{ name: 'web01' }, { name: 'db-1', host: 'node1' }, { name: 'db-22' }];
  t.same(reg.resolve('web', vms), { group: reg.get('web'), vms: ['web01'], missing: ['web02'] });
  t.same(reg.resolve('pat', vms).vms, ['db-1'], "'?' is one character");
  t.same(reg.resolve('node1', vms).vms, ['db-1'], 'by host');
  t.same(reg.resolve('pat', [...vms, { name: 'db-3' }]).vms, ['db-1', 'db-3'], 'a VM registered later is in the next run');
  t.same(await reg.forgetVm('web01'), ['web']);
  t.same(await reg.forgetVm('web02'), ['web']);
  t.same(reg.get('web').vms, [], 'a group left empty stays');
  const again = await GroupRegistry.open(dir);
  t.same(again.list(), reg.list(), 'read back the same, the empty list too');
  await reg.remove('pat');
  t.same((await GroupRegistry.open(dir)).list().map((g) => g.name), ['node1', 'web']);
  t.notOk(fs.existsSync(path.join(dir, `${GROUPS_FILE}.tmp`)), 'no temporary file left');
});

t.test('bad input is refused before anything is written', async (t) => {
  const dir = tmpDir(t, 'vmvault-groups-');
  const reg = await GroupRegistry.open(dir);
  const bad: Array<[unknown, RegExp]> = [
    [{ name: 'g' }, /exactly one of/],
    [{ name: 'g', vms: ['a'], host: 'h' }, /exactly one of .*got vms and host/],
    [{ name: 'g', vms: [] }, /at least one VM/],
    [{ name: 'g', vms: ['a', 'a'] }, /listed twice/],
    [{ name: 'g', vms: ['../x'] }, /VM name/],
    [{ name: 'g', pattern: 'a/b' }, /pattern "a\/b" is not valid/],
    [{ name: 'g', host: 'bad host' }, /host "bad host" is not a valid host name/],
    [{ name: '../g', vms: ['a'] }, /group name/],
    [{ name: 'g', vms: ['a'], extra: 1 }, /unknown group field "extra"/],
  ];
  for (const [input, re] of bad) {
    await t.rejects(reg.create(input as never), re, JSON.stringify(input));
  }
  t.notOk(fs.existsSync(path.join(dir, GROUPS_FILE)), 'nothing written');
  await reg.create({ name: 'g', vms: ['a'] });
  await t.rejects(reg.create({ name: 'g', vms: ['b'] }), /a group named "g" exists/);
  await t.rejects(reg.remove('nope'), /no group "nope"/);
});

t.test('a newer or damaged file is refused, never dropped', async (t) => {
  const dir = tmpDir(t, 'vmvault-groups-');
  const file = path.join(dir, GROUPS_FILE);
  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-groups', version: 2, groups: [] }));
  const code = async () => GroupRegistry.open(dir).then(() => 'opened', (e: unknown) => (isVmvaultError(e) ? `${e.code}: ${e.message}` : String(e)));
  t.match(await code(), /^UNSUPPORTED_FORMAT: .*version 2/);
  fs.writeFileSync(file, '{"format": "vmvault-groups", "version": 1, "groups": [');
  t.match(await code(), /^CORRUPT_RECORD: .*not valid JSON/);
  fs.writeFileSync(file, JSON.stringify({ format: 'vmvault-groups', version: 1, groups: [{ name: 'g', vms: ['a'] }] }));
  await t.rejects(GroupRegistry.open(dir), /entry 0: createdAt is missing/);
  t.ok(fs.existsSync(file), 'the file stays for the operator to fix');
});

t.test('globs', async (t) => {
  t.ok(globToRegExp('web*').test('web01'));
  t.notOk(globToRegExp('web*').test('xweb01'));
  t.ok(globToRegExp('a.b?').test('a.bc'));
  t.notOk(globToRegExp('a.b?').test('axbc'), "'.' is literal");
  t.same(resolveGroup({ name: 'h', host: 'n1', createdAt: '' }, [{ name: 'a' }, { name: 'b', host: 'n1' }]).vms, ['b'], 'a VM without a host is on none');
});
