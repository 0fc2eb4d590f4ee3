// The postgresql plug-in against a real PostgreSQL 15 on the host: CHECKPOINT really runs
// (pg_control_checkpoint() advances), and each way of failing gets a clear error.

import t from 'tap';
import net from 'node:net';
import { startPostgres, havePostgres, freePort, lsn } from './helpers/postgres.js';
import { tmpDir } from './helpers/tmpdir.js';
import { makeStandIns } from './helpers/stand-in-plugins.js';
import { PostgresqlPlugin, describeUrl } from '../src/plugins/postgresql/postgresql-plugin.js';
import { PluginRegistry } from '../src/backup/workflow/registry.js';
import { WorkflowEngine } from '../src/backup/workflow/engine.js';
import { QuiesceJournal } from '../src/backup/workflow/journal.js';
import { defaultWorkflows } from '../src/backup/workflow/workflows.js';
import { loadPluginsFolder } from '../src/backup/workflow/executable-plugins.js';
import type { ActionContext } from '../src/backup/workflow/plugin.js';

if (!havePostgres()) {
  t.fail('PostgreSQL 15 is not installed (apt-get install postgresql-15)');
} else {
  const pg = await startPostgres(t);
  const plugin = new PostgresqlPlugin();
  const ctx = (url: string, log: string[] = [], signal = new AbortController().signal): ActionContext =>
    ({ target: { vm: 'db01', qmp: 'unix:/x', pg: url }, signal, log: (l) => log.push(l), state: new Map() });
  const checkpointLsn = (): bigint => lsn(pg.sql('SELECT checkpoint_lsn FROM pg_control_checkpoint()'));

  t.test('performs the database actions only for a VM with a PostgreSQL URL', async (t) => {
    t.ok(plugin.performs('quiesce-database', { vm: 'a', qmp: '', pg: pg.url() }));
    t.ok(plugin.performs('unquiesce-database', { vm: 'a', qmp: '', pg: pg.url() }));
    t.notOk(plugin.performs('quiesce-database', { vm: 'a', qmp: '' }));
    t.notOk(plugin.performs('quiesce-vm', { vm: 'a', qmp: '', pg: pg.url() }));
  });

  t.test('quiesce-database runs CHECKPOINT', async (t) => {
    pg.sql('CREATE TABLE IF NOT EXISTS t(x int); INSERT INTO t SELECT generate_series(1, 10000)');
    const before = checkpointLsn();
    const reqBefore = Number(pg.sql('SELECT checkpoints_req FROM pg_stat_bgwriter'));
    const log: string[] = [];
    const r = await plugin.run('quiesce-database', ctx(pg.url(), log)) as { checkpointMs: number; server: string };
    const after = checkpointLsn();
    t.ok(after > before, `checkpoint LSN advanced (${before} -> ${after})`);
    // The statistics reach the view asynchronously; pg_control_checkpoint() above is the proof.
    let req = reqBefore;
    for (let i = 0; i < 50 && req === reqBefore; i++) {
      await new Promise((r) => setTimeout(r, 100));
      req = Number(pg.sql('SELECT pg_stat_clear_snapshot(); SELECT checkpoints_req FROM pg_stat_bgwriter').split('\n').pop());
    }
    t.ok(req > reqBefore, `requested checkpoints counted (${reqBefore} -> ${req})`);
    t.type(r.checkpointMs, 'number');
    t.equal(r.server, `postgres://postgres:***@127.0.0.1:${pg.port}/postgres`, 'no password in the result');
    t.match(log[0], /^CHECKPOINT on postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres \(PostgreSQL 15\.\d+.*\) took \d+ ms$/);
    t.notMatch(log.join('\n'), pg.password, 'no password in the log');
  });

  t.test('a unix socket URL works too', async (t) => {
    const before = checkpointLsn();
    await plugin.run('quiesce-database', ctx(`postgres://postgres@localhost:${pg.port}/postgres?host=${encodeURIComponent(pg.socketDir)}`));
    t.ok(checkpointLsn() > before);
  });

  t.test('unquiesce-database is a logged no-op', async (t) => {
    const before = checkpointLsn();
    const log: string[] = [];
    t.same(await plugin.run('unquiesce-database', ctx(pg.url(), log)), { undone: false });
    t.same(log, ['nothing to undo: CHECKPOINT does not pause the database']);
    t.equal(checkpointLsn(), before, 'nothing ran on the server');
  });

  t.test('bad URL, refused connection, bad password, missing database: clear errors', async (t) => {
    await t.rejects(plugin.run('quiesce-database', ctx('mysql://root@127.0.0.1/x')), { code: 'INVALID_ARGUMENT', message: /must start with postgres:\/\// });
    const closed = await freePort();
    await t.rejects(plugin.run('quiesce-database', ctx(`postgres://postgres:x@127.0.0.1:${closed}/postgres`)), {
      code: 'PLUGIN_FAILED', message: /at postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:\d+\/postgres: connection refused; is the server running/,
    });
    try {
      await plugin.run('quiesce-database', ctx(pg.url('postgres', 'wrong-secret-123')));
      t.fail('accepted a wrong password');
    } catch (err) {
      t.match((err as Error).message, /authentication failed \(password authentication failed for user "postgres"\); check the user and password/);
      t.notMatch((err as Error).message, 'wrong-secret-123', 'the password is not in the message');
    }
    await t.rejects(plugin.run('quiesce-database', ctx(pg.url('postgres', pg.password, 'nosuchdb'))), { code: 'PLUGIN_FAILED', message: /database "nosuchdb" does not exist; name an existing database/ });
  });

  t.test('a user without the right to CHECKPOINT is told to GRANT pg_checkpoint', async (t) => {
    pg.sql("DROP ROLE IF EXISTS backup; CREATE ROLE backup LOGIN PASSWORD 'bk'");
    await t.rejects(plugin.run('quiesce-database', ctx(pg.url('backup', 'bk'))), { code: 'PLUGIN_FAILED', message: /may not run CHECKPOINT .*GRANT pg_checkpoint TO the backup user/ });
    pg.sql('GRANT pg_checkpoint TO backup');
    const before = checkpointLsn();
    await plugin.run('quiesce-database', ctx(pg.url('backup', 'bk')));
    t.ok(checkpointLsn() > before, 'with pg_checkpoint it works');
  });

  t.test('a server that never answers: connect timeout, and cancel', async (t) => {
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const sockets = new Set<net.Socket>();
    silent.on('connection', (s) => sockets.add(s));
    t.teardown(() => { for (const s of sockets) s.destroy(); silent.close(); });
    const port = (silent.address() as net.AddressInfo).port;
    const quick = new PostgresqlPlugin({ connectTimeoutMs: 300 });
    const t0 = Date.now();
    await t.rejects(quick.run('quiesce-database', ctx(`postgres://u:p@127.0.0.1:${port}/db`)), { code: 'TIMEOUT', message: /no connection within 300 ms/ });
    t.ok(Date.now() - t0 < 5000);
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('step abandoned')), 200);
    await t.rejects(plugin.run('quiesce-database', ctx(`postgres://u:p@127.0.0.1:${port}/db`, [], ac.signal)), { message: 'step abandoned' });
  });

  t.test('through the engine: app-consistent with PostgreSQL and a stand-in VM', async (t) => {
    const dir = tmpDir(t);
    const s = makeStandIns(dir, { vm: ['quiesce-vm', 'unquiesce-vm', 'snapshot'], mover: ['copy'] });
    const registry = new PluginRegistry();
    registry.register(new PostgresqlPlugin());
    for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
    const engine = new WorkflowEngine(registry, { journal: await QuiesceJournal.open(dir) });
    const before = checkpointLsn();
    const report = await engine.run(defaultWorkflows().get('app-consistent')!, { vm: 'db01', qmp: 'unix:/x', pg: pg.url() }, {});
    t.same(report.actions.map((a) => `${a.plugin}:${a.action}`), [
      'postgresql:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'postgresql:unquiesce-database', 'mover:copy',
    ]);
    t.ok(checkpointLsn() > before, 'the checkpoint ran before the freeze');
    t.same(s.calls(), ['vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'mover:copy']);
  });

  t.test('describeUrl hides only the password', async (t) => {
    t.equal(describeUrl('postgres://u:se:cr@et@h:5/d'), 'postgres://u:***@h:5/d');
    t.equal(describeUrl('postgresql://u:p@h/d'), 'postgresql://u:***@h/d');
    t.equal(describeUrl('postgres://u@h/d'), 'postgres://u@h/d');
  });
}
