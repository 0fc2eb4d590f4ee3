// The codec tests under AddressSanitizer and UndefinedBehaviorSanitizer: tools/build-native-asan.sh
// builds the addon with both into native/build-asan/, and test/native-codec, test/segmenter,
// test/native-reference and test/file-writer (the restore's writer thread) run in a child node
// that loads that build (VMVAULT_NATIVE_ADDON) with the sanitizer runtime preloaded. Node itself is not instrumented: leak detection is off (its
// heap is not ours to judge); any sanitizer report ends the child with a failure.
//
// Without clang the build cannot run: skipped with that reason, unless VMVAULT_REQUIRE_NATIVE=1
// (CI, where tools/setup.sh --test installs clang) makes it a failure.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test -> repository root
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const addon = path.join(root, 'native', 'build-asan', 'vmvault_native.node');
// file-writer: the restore's writer thread (native/src/file_writer.c) and its thread-safe calls.
const tests = ['native-codec', 'segmenter', 'native-reference', 'file-writer'];

// Three test files at two to three times their speed, plus the build, on a shared machine.
t.setTimeout(20 * 60 * 1000);

const missing = spawnSync('clang', ['--version']).status !== 0 ? 'clang is not installed (apt-get install clang)' : !fs.existsSync('/usr/include/lz4.h') ? 'liblz4-dev is not installed' : undefined;
const required = process.env.VMVAULT_REQUIRE_NATIVE === '1';

t.test('the sanitizer build can be made here', { skip: missing && !required ? `sanitizer build skipped: ${missing}` : false }, async (t) => {
  t.equal(missing, undefined, 'clang and liblz4-dev are installed (VMVAULT_REQUIRE_NATIVE=1)');
});

t.test('codec tests under ASan + UBSan', { skip: missing ? `sanitizer build skipped: ${missing}` : false }, async (t) => {
  const build = spawnSync(path.join(root, 'tools', 'build-native-asan.sh'), [], { cwd: root, encoding: 'utf8' });
  if (build.status !== 0) t.comment(build.stderr.slice(-4000));
  t.equal(build.status, 0, 'tools/build-native-asan.sh built the addon');
  if (build.status !== 0) return;
  const runtime = build.stdout.trim().split('\n').pop()!;
  t.ok(fs.existsSync(runtime), `sanitizer runtime ${runtime}`);
  // The child runs as a plain node process, not as a tap child with tap's loaders and coverage.
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS|NODE_OPTIONS$|NODE_V8_COVERAGE$)/.test(k)));
  const env = {
    ...base,
    LD_PRELOAD: runtime,
    ASAN_OPTIONS: 'detect_leaks=0:halt_on_error=1:abort_on_error=0',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    VMVAULT_NATIVE_ADDON: addon,
    VMVAULT_REQUIRE_NATIVE: '1',
    TAP_TIMEOUT: '0',
  };
  // The child really runs the instrumented build: it is mapped, and it calls into the runtime.
  const probe = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const m = await import(${JSON.stringify(path.join(root, 'dist', 'src', 'store', 'native.js'))});
       m.nativeCodec.blake3(Buffer.alloc(100));
       const maps = (await import('node:fs')).readFileSync('/proc/self/maps', 'utf8');
       console.log(m.codecImpl, maps.includes('build-asan/vmvault_native.node'), maps.includes('asan'));`,
    ],
    { cwd: root, env, encoding: 'utf8' },
  );
  t.equal(probe.stdout.trim(), 'native true true', `the child loads the sanitizer build (${probe.stderr.trim().slice(0, 200)})`);
  for (const name of tests) {
    const r = spawnSync(process.execPath, [path.join(root, 'dist', 'test', `${name}.test.js`)], {
      cwd: root,
      env,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const out = r.stdout + r.stderr;
    const reports = out.split('\n').filter((l) => /ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer|SUMMARY: UndefinedBehaviorSanitizer/.test(l));
    const passed = r.stdout.split('\n').filter((l) => /^\s*ok \d+/.test(l)).length;
    const failed = r.stdout.split('\n').filter((l) => /^\s*not ok \d+/.test(l)).length;
    if (r.status !== 0 || reports.length) t.comment(out.slice(-6000));
    t.same(reports, [], `${name}: no sanitizer report`);
    t.equal(r.status, 0, `${name}: exits 0 under the sanitizers`);
    t.ok(passed > 10 && failed === 0, `${name}: ${passed} assertions and subtests passed, ${failed} failed`);
  }
});
