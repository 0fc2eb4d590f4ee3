// The audit log (issue 10): every state-changing call, refused ones included, one JSON line with
// time, caller, method, route, target and result; reads are not logged; the token never is;
// the file rotates by size and keeps a few old files. Then a real appliance and the real CLI:
// a CLI action lands in <data>/audit.log.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { AuditLog, type AuditRecord } from '../src/control/audit-log.js';
import { buildServer } from '../src/control/server.js';
import { startAppliance } from './helpers/appliance.js';
import { runCli } from './helpers/cli-run.js';
import { AUTH, TOKEN } from './helpers/control-server.js';
import { MemoryServices } from './helpers/memory-services.js';
import { tmpDir } from './helpers/tmpdir.js';

function records(file: string): AuditRecord[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as AuditRecord);
}

t.test('state-changing calls are recorded with caller, route, target and result', async (t) => {
  const file = path.join(tmpDir(t), 'audit.log');
  const audit = new AuditLog(file);
  const app = await buildServer(new MemoryServices(), { token: TOKEN, audit });
  t.teardown(() => app.close());
  const json = { ...AUTH, 'content-type': 'application/json' };
  const before = Date.now();
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/shares', headers: json, payload: '{"name":"vms"}' })).statusCode, 201);
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/shares', headers: json, payload: '{"name":"vms"}' })).statusCode, 409);
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/shares', headers: AUTH })).statusCode, 200);
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/health' })).statusCode, 200);
  t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/shares/vms', headers: { authorization: 'Bearer not-the-token-at-all' } })).statusCode, 401);
  t.equal((await app.inject({ method: 'DELETE', url: '/api/v1/shares/vms?force=true', headers: AUTH })).statusCode, 204);
  t.equal((await app.inject({ method: 'POST', url: '/api/v1/nosuch', headers: AUTH })).statusCode, 404);
  await audit.flush();

  const recs = records(file);
  t.equal(recs.length, 5, 'the two GETs are not recorded');
  for (const r of recs) {
    t.equal(r.v, 1);
    t.ok(Date.parse(r.time) >= before - 1000 && Date.parse(r.time) <= Date.now(), 'a current ISO time');
    t.equal(typeof r.ms, 'number');
    t.equal(typeof r.ip, 'string');
  }
  t.match(recs[0], { caller: 'admin', method: 'POST', route: '/api/v1/shares', url: '/api/v1/shares', target: { name: 'vms' }, status: 201, error: null });
  t.match(recs[1], { caller: 'admin', method: 'POST', route: '/api/v1/shares', target: { name: 'vms' }, status: 409, error: 'ALREADY_EXISTS' });
  t.match(recs[2], { caller: 'anonymous', method: 'DELETE', route: '/api/v1/shares/:name', url: '/api/v1/shares/vms', target: { name: 'vms' }, status: 401, error: 'UNAUTHORIZED' });
  t.match(recs[3], { caller: 'admin', method: 'DELETE', route: '/api/v1/shares/:name', url: '/api/v1/shares/vms', target: { name: 'vms', force: 'true' }, status: 204, error: null });
  t.match(recs[4], { caller: 'admin', method: 'POST', url: '/api/v1/nosuch', status: 404, error: 'NOT_FOUND' });
  const text = fs.readFileSync(file, 'utf8');
  t.notMatch(text, new RegExp(TOKEN), 'the token is never written');
  t.notMatch(text, /not-the-token-at-all/, 'nor a wrong one');
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'readable by the owner only');
});

t.test('the log rotates by size and keeps `keep` old files', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.log');
  const audit = new AuditLog(file, { maxBytes: 1000, keep: 2 });
  const rec = (i: number): AuditRecord => ({ v: 1, time: new Date(0).toISOString(), caller: 'admin', ip: '127.0.0.1', method: 'POST', route: '/api/v1/gc', url: '/api/v1/gc', target: { i }, status: 202, error: null, ms: 1 });
  for (let i = 0; i < 40; i++) void audit.append(rec(i));
  await audit.flush();
  t.same(fs.readdirSync(dir).sort(), ['audit.log', 'audit.log.1', 'audit.log.2']);
  for (const name of ['audit.log', 'audit.log.1', 'audit.log.2']) t.ok(fs.statSync(path.join(dir, name)).size <= 1000, `${name} within the size`);
  const seq = [...records(`${file}.2`), ...records(`${file}.1`), ...records(file)].map((r) => r.target.i as number);
  const last = seq[seq.length - 1];
  t.equal(last, 39, 'the newest record is in audit.log');
  t.same(seq, Array.from({ length: seq.length }, (_, k) => 40 - seq.length + k), 'in order, with no gap, oldest dropped');
  // A new AuditLog on the same file goes on from its size.
  const again = new AuditLog(file, { maxBytes: 1000, keep: 2 });
  for (let i = 40; i < 50; i++) void again.append(rec(i));
  await again.flush();
  t.ok(fs.statSync(file).size <= 1000);
  t.equal(records(file).pop()!.target.i, 49);
});

t.test('the file stays open between records, and an outside rotation is followed', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'audit.log');
  const audit = new AuditLog(file);
  t.teardown(() => audit.close());
  const rec = (i: number): AuditRecord => ({ v: 1, time: new Date(0).toISOString(), caller: 'agent:a', ip: '127.0.0.1', method: 'POST', route: '/api/v1/transfer/sessions/:id/segments', url: '/x', target: { i }, status: 200, error: null, ms: 1 });
  // Descriptors of this process open on `name` (Linux /proc).
  const fdsOn = (name: string): number =>
    fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === name;
      } catch {
        return false;
      }
    }).length;
  for (let i = 0; i < 20; i++) void audit.append(rec(i));
  await audit.flush();
  await audit.append(rec(20));
  t.equal(fdsOn(file), 1, 'one descriptor kept open on audit.log (not opened and closed per record)');
  t.same(records(file).map((r) => r.target.i), Array.from({ length: 21 }, (_, i) => i), 'every record, in order, each on its own line');
  // logrotate moves the file away: within a second the log writes to a new file at the path.
  fs.renameSync(file, `${file}.moved`);
  await new Promise((r) => setTimeout(r, 1100));
  await audit.append(rec(21));
  t.same(records(file).map((r) => r.target.i), [21], 'the new file at the path gets the next record');
  t.equal(records(`${file}.moved`).length, 21, 'the moved file keeps the old ones');
  await audit.close();
  t.equal(fdsOn(file), 0, 'close() lets go of the file');
  await audit.append(rec(22));
  t.same(records(file).map((r) => r.target.i), [21, 22], 'an append after close opens it again');
});

t.test('a CLI action on a real appliance lands in <data>/audit.log', async (t) => {
  const dir = tmpDir(t);
  const app = await startAppliance(t, dir);
  const r = await runCli(['--url', app.url, '--data', app.data, 'share', 'create', 'backups']);
  t.equal(r.code, 0, r.stderr);
  const bad = await runCli(['--url', app.url, '--data', app.data, 'snapshot', 'create', 'nosuch', 'n1']);
  t.not(bad.code, 0);
  t.equal(await app.stop(), 0);
  const recs = records(path.join(app.data, 'audit.log'));
  t.match(recs, [
    { caller: 'admin', method: 'POST', route: '/api/v1/shares', target: { name: 'backups' }, status: 201, error: null },
    { caller: 'admin', method: 'POST', route: '/api/v1/shares/:share/snapshots', target: { share: 'nosuch', name: 'n1' }, status: 404, error: 'NOT_FOUND' },
  ]);
  t.equal(recs.length, 2);
});
