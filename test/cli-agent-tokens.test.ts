// `vmvault agent token create|list|revoke` through the real launcher against a real control plane.

import t from 'tap';
import { runCli } from './helpers/cli-run.js';
import { ADMIN, transferAppliance } from './helpers/transfer-appliance.js';

t.test('agent token create prints the token once; list shows names; revoke refuses it at once', async (t) => {
  const a = await transferAppliance(t);
  const env = { VMVAULT_TOKEN: ADMIN };
  const made = await runCli(['--url', a.url, 'agent', 'token', 'create', 'near-host-a', '--json'], env);
  t.equal(made.code, 0, made.stderr);
  const token = JSON.parse(made.stdout).token as string;
  t.ok(a.tokens.lookup(token), 'the printed token works');
  const trusted = await runCli(['--url', a.url, 'agent', 'token', 'create', 'trusty', '--trusted'], env);
  t.equal(trusted.code, 0, trusted.stderr);
  t.match(trusted.stdout, /^vva_[0-9a-f]{64}\n/);
  const list = await runCli(['--url', a.url, 'agent', 'token', 'list'], env);
  t.equal(list.code, 0);
  t.match(list.stdout, /near-host-a\s+no/);
  t.match(list.stdout, /trusty\s+yes/);
  t.notMatch(list.stdout, token);
  const dup = await runCli(['--url', a.url, 'agent', 'token', 'create', 'near-host-a'], env);
  t.equal(dup.code, 6, 'exists: conflict');
  const rev = await runCli(['--url', a.url, 'agent', 'token', 'revoke', 'near-host-a'], env);
  t.equal(rev.code, 0, rev.stderr);
  t.notOk(a.tokens.lookup(token), 'revoked');
  const asAgent = await runCli(['--url', a.url, 'agent', 'token', 'list'], { VMVAULT_TOKEN: trusted.stdout.split('\n')[0] });
  t.equal(asAgent.code, 4, 'an agent token cannot manage tokens (403)');
  const bad = await runCli(['--url', a.url, 'share', 'list', '--trusted'], env);
  t.equal(bad.code, 2, '--trusted only for agent token create');
});
