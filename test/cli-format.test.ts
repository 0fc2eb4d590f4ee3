// The CLI's pure parts: number formatting, the exit-code table, argument splitting, token order.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ERROR_CODES } from '../src/errors.js';
import { EXIT, exitCodeFor } from '../src/cli/exit-codes.js';
import { parse } from '../src/cli/main.js';
import { formatBytes, formatCount, formatDuration, formatPercent, formatRatio, formatTable, plural, progressBar } from '../src/cli/format.js';
import { parseBaseUrl, resolveToken } from '../src/cli/client.js';
import { splitSharePath } from '../src/cli/commands/snapshots.js';
import { progressLine } from '../src/cli/progress.js';
import type { JobView } from '../src/control/jobs.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('formatBytes', async (t) => {
  const cases: Array<[number, string]> = [
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * 1024 * 1024, '10.0 MiB'],
    [150 * 1024 ** 3, '150 GiB'],
    [1024 ** 2 - 1, '1.00 MiB'],
    [3.5 * 1024 ** 4, '3.50 TiB'],
    [NaN, '-'],
  ];
  for (const [n, s] of cases) t.equal(formatBytes(n), s, String(n));
});

t.test('formatCount: thousands separated, without ICU', async (t) => {
  const cases: Array<[number, string]> = [[0, '0'], [999, '999'], [1000, '1,000'], [11143, '11,143'], [1234567.4, '1,234,567'], [-4500, '-4,500'], [NaN, '-']];
  for (const [n, s] of cases) t.equal(formatCount(n), s, String(n));
});

t.test('ratios, durations, percentages, bars, tables', async (t) => {
  t.equal(formatRatio(3.24), '3.2x');
  t.equal(formatRatio(1), '1.0x');
  t.equal(formatRatio(250.4), '250x');
  t.equal(formatRatio(0), '-');
  t.equal(formatRatio(Infinity), '-');
  t.equal(formatDuration(5), '0:05');
  t.equal(formatDuration(65), '1:05');
  t.equal(formatDuration(3725), '1:02:05');
  t.equal(formatPercent(45, 100), '45%');
  t.equal(formatPercent(5, 0), '?%');
  t.equal(progressBar(1, 4, 8), '[##......]');
  t.equal(formatTable(['A', 'LONGER'], [['xyz', '1'], ['q', '22']]), 'A    LONGER\nxyz  1\nq    22');
});

t.test('a progress line has bar, percent, amounts, rate and ETA', async (t) => {
  const job = {
    kind: 'gc',
    state: 'running',
    progress: { done: 512 << 20, total: 1 << 30, unit: 'bytes' },
    rate: 64 << 20,
    etaSeconds: 8,
  } as JobView;
  t.equal(progressLine(job, true), 'gc  [############............]  50%  512 MiB / 1.00 GiB  64.0 MiB/s  0:08 left');
  t.equal(progressLine(job, false), 'gc  50%  512 MiB / 1.00 GiB  64.0 MiB/s  0:08 left');
});

t.test('a progress line names the phase and counts in its unit', async (t) => {
  const sweep = {
    kind: 'gc',
    state: 'running',
    progress: { done: 12, total: 24, unit: 'containers', phase: 'sweeping containers' },
    rate: 3.5,
    etaSeconds: 3.4,
  } as JobView;
  t.equal(progressLine(sweep, true), 'gc: sweeping containers  [############............]  50%  12 / 24 containers  3.5 containers/s  0:03 left');
  const mark = { kind: 'gc', state: 'running', progress: { done: 1, total: 0, unit: 'files', phase: 'marking live data' }, rate: null, etaSeconds: null } as JobView;
  t.equal(progressLine(mark, true), 'gc: marking live data  1 file', 'no bar or percent while the total is unknown');
  const files = { kind: 'verify', state: 'running', progress: { done: 3 * 2 ** 30, total: 12 * 2 ** 30, unit: 'bytes', phase: 'checking files' }, rate: 200 << 20, etaSeconds: 46 } as JobView;
  t.equal(progressLine(files, false), 'verify: checking files  25%  3.00 GiB / 12.0 GiB  200 MiB/s  0:46 left');
});

t.test('every error code has an exit code; the table is the documented one', async (t) => {
  for (const code of Object.keys(ERROR_CODES)) {
    const exit = exitCodeFor(code);
    t.ok(Number.isInteger(exit) && exit > 0, `${code} -> ${exit}`);
  }
  t.equal(exitCodeFor('NOT_FOUND'), 5);
  t.equal(exitCodeFor('ALREADY_EXISTS'), 6);
  t.equal(exitCodeFor('NOT_EMPTY'), 6);
  t.equal(exitCodeFor('CONFLICT'), 6);
  t.equal(exitCodeFor('INVALID_ARGUMENT'), 2);
  t.equal(exitCodeFor('UNAUTHORIZED'), 4);
  t.equal(exitCodeFor('CORRUPT_SEGMENT'), 7);
  t.equal(exitCodeFor('NO_SPACE'), 8);
  t.equal(exitCodeFor('UNREACHABLE'), 3);
  t.equal(exitCodeFor('USAGE'), EXIT.USAGE);
  t.equal(exitCodeFor('INTERNAL'), 1);
  t.equal(exitCodeFor('SOMETHING_NEWER'), 1, 'a code from a newer appliance is a plain failure');
  t.equal(exitCodeFor('toString'), 1, 'no prototype lookups');
});

t.test('share/path arguments', async (t) => {
  t.same(splitSharePath('vms/web01.vmdk'), { share: 'vms', path: 'web01.vmdk' });
  t.same(splitSharePath('vms/dir/web01.vmdk'), { share: 'vms', path: 'dir/web01.vmdk' });
  for (const bad of ['web01.vmdk', '/vms/x', 'vms/']) t.throws(() => splitSharePath(bad), { code: 'USAGE' }, bad);
});

t.test('--url', async (t) => {
  t.equal(parseBaseUrl('http://127.0.0.1:7070/'), 'http://127.0.0.1:7070');
  t.equal(parseBaseUrl('https://vault.example:8443/ignored/path'), 'https://vault.example:8443');
  t.throws(() => parseBaseUrl('127.0.0.1:7070'), { code: 'USAGE' });
  t.throws(() => parseBaseUrl('ftp://x'), { code: 'USAGE', message: /http/ });
});

t.test('token order: --token, VMVAULT_TOKEN, <data>/api-token', async (t) => {
  const dir = tmpDir(t);
  fs.writeFileSync(path.join(dir, 'api-token'), `${'d'.repeat(64)}\n`);
  t.same(await resolveToken({ token: 'from-flag', data: dir }, { VMVAULT_TOKEN: 'from-env' }), { token: 'from-flag', source: '--token' });
  t.same(await resolveToken({ data: dir }, { VMVAULT_TOKEN: 'from-env' }), { token: 'from-env', source: 'VMVAULT_TOKEN' });
  t.same(await resolveToken({ data: dir }, {}), { token: 'd'.repeat(64), source: path.join(dir, 'api-token') });
  const none = await resolveToken({ data: path.join(dir, 'nope') }, {});
  t.equal(none.token, undefined, 'no token anywhere: requests go without and the 401 explains');
  fs.writeFileSync(path.join(dir, 'api-token'), 'bad\n');
  await t.rejects(resolveToken({ data: dir }, {}), { code: 'UNAUTHORIZED', message: /api-token/ });
});

t.test('an empty --token or VMVAULT_TOKEN is refused, not replaced by the token file', async (t) => {
  const dir = tmpDir(t);
  fs.writeFileSync(path.join(dir, 'api-token'), 'd'.repeat(64) + '\n');
  await t.rejects(resolveToken({ token: '', data: dir }, {}), {
    code: 'USAGE',
    message: '--token is empty: give the API token, or leave --token out to use $VMVAULT_TOKEN or <data>/api-token',
  });
  await t.rejects(resolveToken({ token: '  ', data: dir }, { VMVAULT_TOKEN: 'from-env' }), { code: 'USAGE' }, 'blank is empty too');
  await t.rejects(resolveToken({ data: dir }, { VMVAULT_TOKEN: '' }), {
    code: 'USAGE',
    message: 'VMVAULT_TOKEN is set but empty: set it to the API token, or unset it to use <data>/api-token',
  });
});

t.test('option parsing: names that start with a dash, --, values, and our own messages', async (t) => {
  t.same(parse(['share', 'create', '-dash']), { values: {}, positionals: ['share', 'create', '-dash'] }, 'a dash name where a name is expected');
  t.same(parse(['share', 'create', '--', '--json', '-h']), { values: {}, positionals: ['share', 'create', '--json', '-h'] }, 'after --, names');
  t.same(parse(['--json', 'stats', '--url=http://x:1', '--token', '-starts-with-dash']), {
    values: { json: true, url: 'http://x:1', token: '-starts-with-dash' },
    positionals: ['stats'],
  });
  t.same(parse(['-h']).values, { help: true });
  t.same(parse(['share', 'delete', 'vms', '--force', '--delete-snapshots']).values, { force: true, 'delete-snapshots': true });
  t.same(parse(['-']).positionals, ['-']);
  t.throws(() => parse(['--forse']), {
    code: 'USAGE',
    message: "unknown option --forse (vmvault help lists the options; to pass a name that starts with '-', put it after --, as in: vmvault share create -- --forse)",
  });
  t.throws(() => parse(['stats', '--token']), { code: 'USAGE', message: '--token needs a value' });
  t.throws(() => parse(['stats', '--json=yes']), { code: 'USAGE', message: '--json takes no value (got "yes")' });
});

t.test('plural', async (t) => {
  t.same([plural(0, 'file'), plural(1, 'file'), plural(2, 'file'), plural(1, 'directory', 'directories'), plural(3, 'directory', 'directories'), plural(12345, 'segment')], [
    '0 files',
    '1 file',
    '2 files',
    '1 directory',
    '3 directories',
    '12,345 segments',
  ]);
});
