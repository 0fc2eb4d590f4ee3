// The source side of clone copies in the real appliance (composition root wiring): the
// /destinations routes over <data>/destinations.json, `policy create --clone` naming a
// destination (an unknown one refused), a policy that names a destination keeps it from being
// removed, the copies survive a restart, and a replication token is refused outside its routes.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startAppliance } from './helpers/appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('destinations and --clone through the appliance', async (t) => {
  const dir = tmpDir(t, 'vmvault-clone-api-');
  let app = await startAppliance(t, dir);
  const tape = path.join(dir, 'tape');
  let r = await app.api('POST', '/destinations', { name: 'tape', dir: tape });
  t.equal(r.status, 201, JSON.stringify(r.body));
  r = await app.api('POST', '/destinations', { name: 'site-b', appliance: 'https://192.0.2.1:7443', token: 'vva_' + 'ef'.repeat(32) });
  t.equal(r.status, 201);
  t.notOk(JSON.stringify(r.body).includes('efef'), 'the answer carries no token');
  t.equal(fs.statSync(path.join(app.data, 'destinations.json')).mode & 0o777, 0o600, 'destinations.json is 0600');
  t.notOk(app.log().includes('efef'), 'nor does the log');
  // The audit record is appended after the answer is sent: wait for this call's record, not
  // only for the file (which the earlier call made), or the read can come between the two.
  const auditFile = path.join(app.data, 'audit.log');
  const readAudit = () => (fs.existsSync(auditFile) ? fs.readFileSync(auditFile, 'utf8') : '');
  for (let i = 0; i < 250 && !readAudit().includes('site-b'); i++) await new Promise((r) => setTimeout(r, 20));
  const audit = readAudit();
  t.match(audit, /site-b/, 'the audit log records the call');
  t.notOk(audit.includes('efef'), 'without the token');

  r = await app.api('POST', '/policies', { name: 'gold', backup: '0 */4 * * *', clone: 'daily 02:00 -> nowhere' });
  t.equal(r.status, 404, 'a --clone to an unknown destination is refused');
  t.match(r.body.error.message, /no destination named nowhere/);
  r = await app.api('POST', '/policies', { name: 'gold', backup: '0 */4 * * *', clone: 'daily 2am -> tape' });
  t.equal(r.status, 400);
  t.match(r.body.error.message, /--clone "daily 2am -> tape"/);
  r = await app.api('POST', '/policies', { name: 'gold', backup: '0 */4 * * *', clone: ['daily 02:00 -> site-b', '0 3 * * 0 -> tape'] });
  t.equal(r.status, 201, JSON.stringify(r.body));
  t.same(r.body.clones, ['daily 02:00 -> site-b', '0 3 * * 0 -> tape']);

  r = await app.api('DELETE', '/destinations/tape');
  t.equal(r.status, 409, 'a destination a policy names is not removed');
  t.match(r.body.error.message, /named by policy gold/);
  r = await app.api('POST', '/vms/nope/clones', { to: 'tape' });
  t.equal(r.status, 404);

  // A replication token: the replica routes only.
  r = await app.api('POST', '/agents/tokens', { name: 'peer', scope: 'replication' });
  t.equal(r.status, 201);
  const repl = r.body.token as string;
  const as = (method: string, route: string, body?: unknown) =>
    fetch(`${app.url}/api/v1${route}`, { method, headers: { authorization: `Bearer ${repl}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  t.equal((await as('GET', '/destinations')).status, 403, 'not the admin routes');
  t.equal((await as('POST', '/replicas/shares', { share: 'copy-of-x' })).status, 200, 'its replica routes');
  t.equal((await as('POST', '/replicas/shares/copy-of-x/snapshots', { name: 's1' })).status, 200);

  // After a restart: destinations, policies and replica ownership are still there.
  await app.stop();
  app = await startAppliance(t, dir);
  r = await app.api('GET', '/destinations');
  t.same(r.body.destinations.map((d: { name: string }) => d.name).sort(), ['site-b', 'tape']);
  r = await app.api('GET', '/policies/gold');
  t.same(r.body.clones, ['daily 02:00 -> site-b', '0 3 * * 0 -> tape']);
  t.equal((await as('GET', '/replicas/shares/copy-of-x/snapshots')).status, 200, 'the token still owns its clone target');
  r = await app.api('DELETE', '/policies/gold');
  t.equal(r.status, 204);
  r = await app.api('DELETE', '/destinations/tape');
  t.equal(r.status, 204, 'removable once no policy names it');
});
