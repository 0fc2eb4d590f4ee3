// The V8 flags of the product's long-running processes (bin/v8-flags.js; tools/PERFORMANCE.md,
// "gcflags"). A flag counts only if the process as shipped runs with it: `vmvault appliance`
// (what `npx vmvault appliance` and the systemd unit's ExecStart run) and `vmvault agent`. They
// are set with v8.setFlagsFromString, so this checks they take effect, not only that they were
// asked for: a module preloaded with `--import` (V8's natives syntax on) compiles a function as
// the process exits, after bin/vmvault.js set the flags, and asks V8 which tier runs it.
// The CLI's commands must start without them (their start time: tools/bench-cli.ts).

import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.resolve(dist, '..');
const bin = path.join(root, 'bin', 'vmvault.js');

const CHECKER = `
process.on('exit', () => {
  const f = new Function('x', 'return x + 1');
  f(1);
  process.stderr.write('tier of code compiled at exit: ' + (%ActiveTierIsSparkplug(f) ? 'sparkplug' : %ActiveTierIsIgnition(f) ? 'ignition' : 'other') + '\\n');
});
`;

function tierOf(t: TestT, file: string, args: string[]): { tier: string | undefined; stderr: string } {
  const checker = path.join(tmpDir(t), 'tier-check.mjs');
  fs.writeFileSync(checker, CHECKER);
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', `--import=${checker}`, file, ...args], { cwd: root, env, encoding: 'utf8' });
  return { tier: /tier of code compiled at exit: (\w+)/.exec(r.stderr)?.[1], stderr: r.stderr };
}

t.test('`vmvault appliance` runs its code as baseline machine code (--always-sparkplug in effect)', async (t) => {
  const r = tierOf(t, bin, ['appliance', '--help']);
  t.equal(r.tier, 'sparkplug', r.stderr);
  t.match(r.stderr, /vmvault: node v\S+, V8 flags set at start: --always-sparkplug\n/, 'its log names the flags');
});

t.test('`vmvault agent` too', async (t) => {
  const r = tierOf(t, bin, ['agent', '--help']);
  t.equal(r.tier, 'sparkplug', r.stderr);
  t.match(r.stderr, /V8 flags set at start: --always-sparkplug\n/);
});

t.test("the CLI's commands start without them", async (t) => {
  const r = tierOf(t, bin, ['--help']);
  t.equal(r.tier, 'ignition', r.stderr);
  t.notMatch(r.stderr, /V8 flags set at start/);
});

t.test("the tests' and benches' appliance (test/helpers/run-appliance.js) runs as shipped", async (t) => {
  const r = tierOf(t, path.join(dist, 'test', 'helpers', 'run-appliance.js'), ['--help']);
  t.equal(r.tier, 'sparkplug', r.stderr);
});
