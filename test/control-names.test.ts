// The name rules every door (HTTP, FUSE, namespace) applies to shares, snapshots and paths.

import t from 'tap';
import { isVmvaultError } from '../src/errors.js';
import { MAX_NAME_BYTES, validateName, validatePathInShare } from '../src/namespace/names.js';

function failure(fn: () => unknown): { code: string; message: string } | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (!isVmvaultError(err)) throw err;
    return { code: err.code, message: err.message };
  }
}

t.test('usable names pass', async (t) => {
  for (const name of ['vms', 'nightly-2026-11-22', 'a', 'x'.repeat(MAX_NAME_BYTES), 'web01.vmdk', 'ünïcode', 'with space', 'a..b', 'trailing.']) {
    t.equal(failure(() => validateName('share', name)), undefined, JSON.stringify(name));
  }
});

t.test('bad names fail with the rule they break', async (t) => {
  const cases: Array<[unknown, string, RegExp]> = [
    ['', 'INVALID_ARGUMENT', /name is empty/],
    ['.', 'INVALID_ARGUMENT', /starts with '\.'/],
    ['..', 'INVALID_ARGUMENT', /starts with '\.'/],
    ['.snapshots', 'INVALID_ARGUMENT', /starts with '\.'/],
    ['../etc', 'INVALID_ARGUMENT', /'\/'|'\.'/],
    ['a/b', 'INVALID_ARGUMENT', /contains '\/'/],
    ['a\0b', 'INVALID_ARGUMENT', /NUL/],
    ['tab\there', 'INVALID_ARGUMENT', /control character/],
    ['del\x7f', 'INVALID_ARGUMENT', /control character/],
    ['bad\ud800', 'INVALID_ARGUMENT', /not valid Unicode/],
    ['x'.repeat(MAX_NAME_BYTES + 1), 'NAME_TOO_LONG', /129 bytes long; the limit is 128/],
    ['é'.repeat(65), 'NAME_TOO_LONG', /130 bytes/],
    ['x'.repeat(4096), 'NAME_TOO_LONG', /4096 bytes/],
    [5, 'INVALID_ARGUMENT', /must be a string, not a number/],
    [null, 'INVALID_ARGUMENT', /not null/],
  ];
  for (const [name, code, message] of cases) {
    const f = failure(() => validateName('snapshot', name));
    t.equal(f?.code, code, `${JSON.stringify(name)?.slice(0, 30)}: code`);
    t.match(f?.message, message, `${JSON.stringify(name)?.slice(0, 30)}: message`);
    t.match(f?.message, /^snapshot /, 'the message says which kind of name');
  }
});

t.test('a long name is cut in the message', async (t) => {
  const f = failure(() => validateName('share', `a/${'x'.repeat(100)}`));
  t.ok(f !== undefined && f.message.length < 200, 'message stays short');
});

t.test('paths inside a share', async (t) => {
  t.same(validatePathInShare('web01.vmdk'), ['web01.vmdk']);
  t.same(validatePathInShare('dir/sub/web01.vmdk'), ['dir', 'sub', 'web01.vmdk']);
  t.same(validatePathInShare('dir/.hidden'), ['dir', '.hidden'], 'dot files below the top are fine');
  const bad: Array<[unknown, string, RegExp]> = [
    ['', 'INVALID_ARGUMENT', /empty/],
    ['/etc/passwd', 'INVALID_ARGUMENT', /relative/],
    ['../other/x', 'INVALID_ARGUMENT', /'\.\.'/],
    ['a/../../x', 'INVALID_ARGUMENT', /'\.\.'/],
    ['a/./b', 'INVALID_ARGUMENT', /'\.'/],
    ['a//b', 'INVALID_ARGUMENT', /empty/],
    ['a/', 'INVALID_ARGUMENT', /empty/],
    ['a\0b', 'INVALID_ARGUMENT', /NUL/],
    ['.snapshots/nightly/web01.vmdk', 'INVALID_ARGUMENT', /\.snapshots/],
    ['.snapshots', 'INVALID_ARGUMENT', /\.snapshots/],
    [`a/${'x'.repeat(256)}`, 'NAME_TOO_LONG', /component/],
    ['x/'.repeat(2000) + 'x', 'NAME_TOO_LONG', /limit is 3840/],
    [42, 'INVALID_ARGUMENT', /string/],
  ];
  for (const [p, code, message] of bad) {
    const f = failure(() => validatePathInShare(p, 'from'));
    t.equal(f?.code, code, `${JSON.stringify(p).slice(0, 30)}: code`);
    t.match(f?.message, message, `${JSON.stringify(p).slice(0, 30)}: message`);
    t.match(f?.message, /^from /, 'the message names the argument');
  }
});
