// The long power-cut run: test/power-cut.test.ts with many cuts (issue 9 asks for >= 100).
//
//   npm run torture -- --cuts 100 [--seed N] [--max-ms 3500] [--full-verify-every 10]
//
// Runs the compiled test under tap with no time limit and prints its summary lines (cuts
// survived, acknowledged bytes lost, torn files); exits with tap's status.

import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    cuts: { type: 'string', default: '100' },
    seed: { type: 'string' },
    'max-ms': { type: 'string' },
    'full-verify-every': { type: 'string', default: '10' },
  },
});
const num = (name: string, v: string | undefined): string | undefined => {
  if (v !== undefined && !(Number.isInteger(Number(v)) && Number(v) > 0)) {
    process.stderr.write(`torture: --${name} wants a positive integer, not "${v}"\n`);
    process.exit(2);
  }
  return v;
};
const env: NodeJS.ProcessEnv = { ...process.env, VMVAULT_POWER_CUTS: num('cuts', values.cuts) };
if (values.seed) env.VMVAULT_POWER_SEED = num('seed', values.seed);
if (values['max-ms']) env.VMVAULT_POWER_MAX_MS = num('max-ms', values['max-ms']);
env.VMVAULT_POWER_FULL_VERIFY_EVERY = num('full-verify-every', values['full-verify-every']);

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const test = path.join(root, 'dist', 'test', 'power-cut.test.js');
// Its own process group: an interrupt reaches the test, its appliance and its power-loss file
// system together (each unmounts what it mounted on SIGTERM).
const tap = spawn('npx', ['tap', '--disable-coverage', '--timeout', '0', '-R', 'tap', test], { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
tap.stdout.on('data', (d: Buffer) => process.stdout.write(d));
tap.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
const stop = (): void => {
  try {
    process.kill(-tap.pid!, 'SIGTERM');
  } catch {
    // already gone
  }
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
