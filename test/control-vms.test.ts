// The VM routes (/vms, /vms/{name}/backups, /vms/{name}/restores) over the appliance's own VM
// services (src/appliance-vms.ts) and a real VM registry, without a backup service: registration,
// listing, removal and every refusal that must come before a job starts. Backups and restores
// themselves run against the real backup service in test/vm-backup-api.test.ts. Also here: job
// conflicts per resource and the byte-progress adapter, on a real JobRunner.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { VMS_FILE } from '../src/backup/vm-registry.js';
import { jobProgress } from '../src/control/job-progress.js';
import { JobRunner } from '../src/control/jobs.js';
import type { JobContext } from '../src/control/services.js';
import { testServer } from './helpers/control-server.js';
import { tmpDir } from './helpers/tmpdir.js';

const web01 = { name: 'web01', qmp: 'unix:/run/qemu/web01.qmp', qga: 'unix:/run/qemu/web01.qga', pg: 'postgres://backup:s3cret@127.0.0.1:5432/postgres' };

t.test('register, list, get and remove a VM', async (t) => {
  const s = await testServer(t);
  t.same((await s.call('GET', '/api/v1/vms')).json(), { vms: [] });
  const res = await s.call('POST', '/api/v1/vms', web01);
  t.equal(res.statusCode, 201, res.body);
  t.equal(res.headers.location, '/api/v1/vms/web01');
  const vm = res.json();
  t.match(vm, { name: 'web01', share: 'web01', qmp: web01.qmp, qga: web01.qga, disks: [], lastBackup: null });
  t.equal(vm.pg, 'postgres://backup:***@127.0.0.1:5432/postgres', 'the password never leaves the appliance');
  t.notOk(res.body.includes('s3cret'));
  t.equal(vm.state, 'unknown', 'no backup service here to ask QEMU');

  t.equal((await s.call('POST', '/api/v1/vms', { name: 'db01', qmp: 'tcp:127.0.0.1:4444', share: 'databases' })).statusCode, 201);
  const list = (await s.call('GET', '/api/v1/vms')).json();
  t.same(list.vms.map((v: { name: string; share: string }) => `${v.name}:${v.share}`), ['db01:databases', 'web01:web01']);
  t.notOk(JSON.stringify(list).includes('s3cret'));
  t.equal((await s.call('GET', '/api/v1/vms/web01')).json().name, 'web01');

  t.equal((await s.call('DELETE', '/api/v1/vms/web01')).statusCode, 204);
  const gone = await s.call('GET', '/api/v1/vms/web01');
  t.equal(gone.statusCode, 404);
  t.match(gone.json().error, { code: 'NOT_FOUND', message: /no VM "web01"/ });
});

t.test('bad input: a clear 4xx, and nothing half made', async (t) => {
  const s = await testServer(t);
  t.equal((await s.call('POST', '/api/v1/vms', web01)).statusCode, 201);
  const registry = (await s.call('GET', '/api/v1/vms')).json();
  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['invalid name', { name: 'a/b', qmp: 'unix:/a' }, 400, 'INVALID_ARGUMENT', /VM name "a\/b" contains '\/'/],
    ['dot name', { name: '.hidden', qmp: 'unix:/a' }, 400, 'INVALID_ARGUMENT', /VM name "\.hidden" starts with '\.'/],
    ['empty name', { name: '', qmp: 'unix:/a' }, 400, 'INVALID_ARGUMENT', /VM name must not be empty/],
    ['long name', { name: 'n'.repeat(300), qmp: 'unix:/a' }, 400, 'NAME_TOO_LONG', /VM name is 300 bytes long/],
    ['no qmp', { name: 'x' }, 400, 'INVALID_ARGUMENT', /needs "qmp"/],
    ['relative qmp', { name: 'x', qmp: 'unix:qmp.sock' }, 400, 'INVALID_ARGUMENT', /socket path must be absolute/],
    ['qmp without scheme', { name: 'x', qmp: '/run/x.qmp' }, 400, 'INVALID_ARGUMENT', /expected unix:\/absolute\/path or tcp:host:port/],
    ['tcp without port', { name: 'x', qmp: 'tcp:host' }, 400, 'INVALID_ARGUMENT', /tcp:host:port/],
    ['tcp bad port', { name: 'x', qmp: 'tcp:host:99999' }, 400, 'INVALID_ARGUMENT', /port 99999 is not between 1 and 65535/],
    ['bad qga', { name: 'x', qmp: 'unix:/a', qga: 'unix:' }, 400, 'INVALID_ARGUMENT', /qga address "unix:": the socket path must be absolute/],
    ['bad pg', { name: 'x', qmp: 'unix:/a', pg: 'mysql://x@y/z' }, 400, 'INVALID_ARGUMENT', /has scheme mysql/],
    ['bad share', { name: 'x', share: '.snapshots', qmp: 'unix:/a' }, 400, 'INVALID_ARGUMENT', /share name "\.snapshots"/],
    ['bad workflow name', { name: 'x', qmp: 'unix:/a', workflow: 'no spaces' }, 400, 'INVALID_ARGUMENT', /workflow name "no spaces" is not valid/],
    ['unknown field', { name: 'x', qmp: 'unix:/a', disks: ['vda'] }, 400, 'INVALID_ARGUMENT', /unknown field "disks"/],
    ['wrong type', { name: 'x', qmp: 4444 }, 400, 'INVALID_ARGUMENT', /must be a string/],
    ['duplicate VM', { name: 'web01', qmp: 'unix:/b' }, 409, 'CONFLICT', /a VM named "web01" is already registered/],
    ['share of another VM', { name: 'web02', share: 'web01', qmp: 'unix:/b' }, 409, 'CONFLICT', /share "web01" already holds the backups of VM "web01"/],
  ];
  for (const [label, body, status, code, message] of cases) {
    const res = await s.call('POST', '/api/v1/vms', body);
    t.equal(res.statusCode, status, `${label}: ${res.body}`);
    t.match(res.json().error, { code, message }, label);
  }
  t.same((await s.call('GET', '/api/v1/vms')).json(), registry, 'no refused VM appears');

  const unknown: Array<['GET' | 'POST' | 'DELETE', string, unknown]> = [
    ['GET', '/api/v1/vms/nope', undefined],
    ['DELETE', '/api/v1/vms/nope', undefined],
    ['GET', '/api/v1/vms/nope/backups', undefined],
    ['POST', '/api/v1/vms/nope/backups', {}],
    ['POST', '/api/v1/vms/nope/restores', { to: '/tmp/restore' }],
  ];
  for (const [method, url, body] of unknown) {
    const res = await s.call(method, url, body);
    t.equal(res.statusCode, 404, `${method} ${url}`);
    t.match(res.json().error, { code: 'NOT_FOUND', message: /no VM "nope" \(vmvault vm list shows them/ });
  }
  const badName = await s.call('GET', '/api/v1/vms/..%2Fetc');
  t.equal(badName.statusCode, 400);
  t.match(badName.json().error.message, /VM name "\.\.\/etc"/);

  const restoreCases: Array<[unknown, RegExp]> = [
    [{ to: 'relative/dir' }, /must be an absolute path on the appliance host/],
    [{ to: '/tmp/../etc' }, /must not contain '\.' or '\.\.' components/],
    [{ to: '/tmp/x', format: 'vmdk' }, /format must be "raw" or "qcow2"/],
    [{}, /needs "to"/],
    [{ to: 'nbd+unix:///vda' }, /NBD URI "nbd\+unix:\/\/\/vda": no socket=\/PATH/],
    [{ to: 'nbds://h/vda' }, /NBD over TLS is not supported/],
  ];
  for (const [body, message] of restoreCases) {
    const res = await s.call('POST', '/api/v1/vms/web01/restores', body);
    t.equal(res.statusCode, 400, JSON.stringify(body));
    t.match(res.json().error.message, message);
  }
  const wf = await s.call('POST', '/api/v1/vms/web01/backups', { workflow: '../x' });
  t.equal(wf.statusCode, 400);
  t.match(wf.json().error.message, /workflow name "\.\.\/x" is not valid/);

  const noService = await s.call('POST', '/api/v1/vms/web01/backups', {});
  t.equal(noService.statusCode, 501, 'without a backup service: said so, no job');
  t.match(noService.json().error, { code: 'NOT_SUPPORTED', message: /no backup service/ });
  t.same((await s.call('GET', '/api/v1/jobs')).json().jobs, [], 'no job was started by any refused request');
});

t.test('the registry file is written only by accepted changes', async (t) => {
  const dir = tmpDir(t);
  const s = await testServer(t);
  await s.services.openVms(dir);
  const file = path.join(dir, VMS_FILE);
  t.equal((await s.call('POST', '/api/v1/vms', { name: 'bad/name', qmp: 'unix:/a' })).statusCode, 400);
  t.notOk(fs.existsSync(file), 'a refused first VM writes no file');
  t.equal((await s.call('POST', '/api/v1/vms', web01)).statusCode, 201);
  const before = fs.readFileSync(file, 'utf8');
  t.equal((await s.call('POST', '/api/v1/vms', { ...web01, qmp: 'tcp:x' })).statusCode, 400);
  t.equal((await s.call('POST', '/api/v1/vms', web01)).statusCode, 409);
  t.equal(fs.readFileSync(file, 'utf8'), before);
  t.ok(before.includes('s3cret'), 'the file keeps the password (mode 0600); only views hide it');
});

t.test('the OpenAPI document lists the VM routes, and every schema in it compiles', async (t) => {
  const s = await testServer(t);
  const doc = (await s.call('GET', '/api/v1/openapi.json')).json();
  const ops = new Map<string, string>();
  for (const [p, methods] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const [m, op] of Object.entries(methods)) {
      t.notOk(ops.has(op.operationId), `operationId ${op.operationId} is unique`);
      ops.set(op.operationId, `${m.toUpperCase()} ${p}`);
      const declared = new Set((op.parameters ?? []).filter((x: any) => x.in === 'path').map((x: any) => x.name));
      for (const [, name] of p.matchAll(/\{([^}]+)\}/g)) t.ok(declared.has(name), `${m} ${p} declares path parameter ${name}`);
      for (const [status, r] of Object.entries(op.responses as Record<string, any>)) t.type(r.description, 'string', `${op.operationId} ${status} has a description`);
    }
  }
  t.same(
    ['listVms', 'addVm', 'getVm', 'removeVm', 'listBackups', 'startBackup', 'startRestore'].map((id) => ops.get(id)),
    ['GET /api/v1/vms', 'POST /api/v1/vms', 'GET /api/v1/vms/{name}', 'DELETE /api/v1/vms/{name}', 'GET /api/v1/vms/{name}/backups', 'POST /api/v1/vms/{name}/backups', 'POST /api/v1/vms/{name}/restores'],
  );
  // OpenAPI 3.1 schemas are JSON Schema 2020-12: each must compile.
  const ajv = new Ajv2020.default({ strict: false, validateFormats: false });
  let compiled = 0;
  const walk = (where: string, node: any) => {
    if (node === null || typeof node !== 'object') return;
    if (node.schema !== undefined && typeof node.schema === 'object') {
      t.doesNotThrow(() => ajv.compile(node.schema), `${where} compiles`);
      compiled++;
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'schema') walk(`${where}/${k}`, v);
  };
  walk('paths', doc.paths);
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    t.doesNotThrow(() => ajv.compile(schema as object), `components ${name} compiles`);
  }
  t.ok(compiled > 100, `${compiled} schemas compiled`);
  t.ok(doc.components.schemas.BackupRecord && doc.components.schemas.RestoreResult, 'job results published');
  const start = doc.paths['/api/v1/vms/{name}/backups'].post;
  t.equal(start.requestBody.required, false, 'a backup takes an optional body');
  t.ok(start.responses['202'] && start.responses['404'] && start.responses['409']);

  // A real answer validates against the document's own schema for it.
  await s.call('POST', '/api/v1/vms', web01);
  const listSchema = doc.paths['/api/v1/vms'].get.responses['200'].content['application/json'].schema;
  const validate = ajv.compile(listSchema);
  t.ok(validate((await s.call('GET', '/api/v1/vms')).json()), JSON.stringify(validate.errors));
});

/** A job body that runs until cancelled. */
function untilCancelled(ctx: JobContext): Promise<never> {
  return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
}

t.test('jobs: two backups of one VM conflict; other VMs, restores elsewhere and maintenance do not', async (t) => {
  const runner = new JobRunner();
  t.teardown(() => runner.close());
  const a = runner.start('backup', 'vm web01', untilCancelled, { resource: 'vm:web01' });
  t.throws(() => runner.start('backup', 'vm web01 (full)', untilCancelled, { resource: 'vm:web01' }), {
    code: 'CONFLICT',
    message: new RegExp(`backup job ${a.id} \\(vm web01\\) is (queued|running); wait for it or cancel it before starting backup`),
    details: { job: a.id },
  });
  const b = runner.start('backup', 'vm db01', untilCancelled, { resource: 'vm:db01' });
  const r1 = runner.start('restore', 'vm web01 -> /srv/a', untilCancelled, { resource: 'dir:/srv/a' });
  t.throws(() => runner.start('restore', 'vm db01 -> /srv/a', untilCancelled, { resource: 'dir:/srv/a' }), { code: 'CONFLICT', details: { job: r1.id } });
  const r2 = runner.start('restore', 'vm web01 -> /srv/b', untilCancelled, { resource: 'dir:/srv/b' });
  const gc = runner.start('gc', 'store', untilCancelled);
  t.equal(runner.activeOn('vm:web01', ['backup'])?.id, a.id);
  t.equal(runner.activeOn('vm:nope', ['backup']), undefined);
  for (const j of [a, b, r1, r2, gc]) runner.cancel(j.id);
  for (const j of [a, b, r1, r2, gc]) t.equal((await runner.wait(j.id)).state, 'cancelled', `${j.kind} ${j.target} cancelled`);
  const again = runner.start('backup', 'vm web01', async () => 'ok', { resource: 'vm:web01' });
  t.equal((await runner.wait(again.id)).state, 'succeeded', 'once the first ended, the VM can be backed up again');
});

t.test('jobProgress: a backup\'s byte reports become job progress; cancel reaches its signal', async (t) => {
  let now = 0;
  const runner = new JobRunner({ now: () => now });
  t.teardown(() => runner.close());
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let seen: AbortSignal | undefined;
  const job = runner.start('backup', 'vm web01', async (ctx) => {
    const p = jobProgress(ctx);
    seen = p.signal;
    p.phase('copying vda');
    p.total(1000, 'bytes');
    now += 1000;
    p.advance(400);
    p.advance(-5);
    p.advance(Number.NaN);
    p.log('vda: 400 bytes read');
    await gate;
    p.phase('copying vdb');
    p.total(3000, 'bytes');
    p.advance(600);
    return { point: 'p' };
  });
  while (runner.get(job.id).progress.done < 400) await new Promise((r) => setTimeout(r, 5));
  let v = runner.get(job.id);
  t.same(v.progress, { done: 400, total: 1000, unit: 'bytes', phase: 'copying vda' });
  t.equal(v.rate, 400, 'rate in bytes per second');
  t.match(v.log, [/copying vda$/, /vda: 400 bytes read$/]);
  release();
  v = await runner.wait(job.id);
  t.equal(v.state, 'succeeded');
  t.same(v.result, { point: 'p' });

  const hung = runner.start('backup', 'vm x', async (ctx) => {
    const p = jobProgress(ctx);
    seen = p.signal;
    await new Promise((_, reject) => p.signal.addEventListener('abort', () => reject(p.signal.reason)));
  });
  while (seen === undefined || runner.get(hung.id).state !== 'running') await new Promise((r) => setTimeout(r, 5));
  runner.cancel(hung.id);
  t.equal((await runner.wait(hung.id)).state, 'cancelled');
  t.ok(seen.aborted, 'the backup saw the cancel');
});
