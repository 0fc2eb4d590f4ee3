// Builds the C segmenter addon in native/ with node-gyp; run by `npm install` ("install"
// script) and by hand (`node tools/build-native.js`).
//
// The addon is an optimisation: src/store/segmenter/segmenter.ts falls back to its TypeScript cut loop
// when the addon is missing, so a failed build only warns, unless VMVAULT_REQUIRE_NATIVE=1
// (CI, appliance image), where a silent 3x slowdown would go unnoticed.
// The same build makes the libfuse3 binding, vmvault_fuse3.node (native/src/fuse3/), where
// libfuse3-dev is installed. That one is not optional at run time: the appliance refuses to mount
// without it (fuse-native, the fallback, was removed in issue 16). Its absence is reported here,
// and fails the build under VMVAULT_REQUIRE_NATIVE=1.
//
// node-gyp must never download headers (the build hosts reach only the npm registry): it is
// always given --nodedir, and the build is not attempted when that directory lacks node_api.h.

import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const addonPath = path.join(nativeDir, 'build', 'Release', 'vmvault_native.node');
const fuse3Path = path.join(nativeDir, 'build', 'Release', 'vmvault_fuse3.node');
const required = process.env.VMVAULT_REQUIRE_NATIVE === '1';

function hasHeaders(dir) {
  // A headers tarball or distribution package has include/node; a source checkout has src/.
  return existsSync(path.join(dir, 'include', 'node', 'node_api.h')) || existsSync(path.join(dir, 'src', 'node_api.h'));
}

// npm hands its config to lifecycle scripts as npm_config_*; by hand, ask npm, then look beside
// the running node (a distribution package installs the headers under <prefix>/include/node).
function findNodeDir() {
  const fromEnv = process.env.npm_config_nodedir;
  if (fromEnv && hasHeaders(fromEnv)) return fromEnv;
  const npm = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
  const fromNpm = npm.status === 0 ? npm.stdout.trim() : '';
  if (fromNpm && fromNpm !== 'undefined' && fromNpm !== 'null' && hasHeaders(fromNpm)) return fromNpm;
  const besideNode = path.resolve(path.dirname(process.execPath), '..');
  return hasHeaders(besideNode) ? besideNode : undefined;
}

// The addon's LZ4 is Debian's liblz4 (native/src/lz4.h); without its headers the compiler would
// fail with a message that names a file rather than the package.
function hasLz4Header() {
  const dirs = ['/usr/include', '/usr/local/include', ...(process.env.CPATH ?? '').split(path.delimiter).filter(Boolean)];
  return dirs.some((d) => existsSync(path.join(d, 'lz4.h')));
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

// Ways to run node-gyp, best first: the one npm names for lifecycle scripts, one on PATH
// (npm's node-gyp-bin during scripts), npm's bundled copy, then `npm exec` (which may find a
// local install; --no forbids fetching one).
function nodeGypCommands() {
  const cmds = [];
  const scriptJs = process.env.npm_config_node_gyp;
  if (scriptJs && existsSync(scriptJs)) cmds.push([process.execPath, [scriptJs]]);
  if (onPath('node-gyp')) cmds.push([onPath('node-gyp'), []]);
  const npmBins = [onPath('npm'), path.join(path.dirname(process.execPath), 'npm')].filter((p) => p && existsSync(p));
  for (const npmBin of npmBins) {
    for (const base of [path.dirname(npmBin), path.dirname(realpathSync(npmBin))]) {
      for (const rel of ['../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js', '../node_modules/node-gyp/bin/node-gyp.js']) {
        const js = path.resolve(base, rel);
        if (existsSync(js) && !cmds.some(([, args]) => args[0] === js)) cmds.push([process.execPath, [js]]);
      }
    }
  }
  cmds.push(['npm', ['exec', '--no', '--', 'node-gyp']]);
  return cmds;
}

function build(nodeDir) {
  const env = { ...process.env, npm_config_nodedir: nodeDir };
  const failures = [];
  for (const [cmd, pre] of nodeGypCommands()) {
    const args = [...pre, 'rebuild', '--release', `--nodedir=${nodeDir}`];
    console.log(`vmvault: building native/ with ${[cmd, ...args].join(' ')}`);
    const r = spawnSync(cmd, args, { cwd: nativeDir, env, stdio: 'inherit' });
    if (r.status === 0) return { ok: true };
    // A node-gyp that ran and failed would fail the same way again; only a missing one is
    // worth replacing by the next.
    if (!r.error) return { ok: false, why: `exit status ${r.status ?? r.signal}` };
    failures.push(`${cmd}: ${r.error.message}`);
  }
  return { ok: false, why: failures.join('; ') };
}

function loads() {
  try {
    const addon = createRequire(import.meta.url)(addonPath);
    return typeof addon.cut === 'function' ? undefined : 'the addon does not export cut()';
  } catch (err) {
    return err.message;
  }
}

function main() {
  const nodeDir = findNodeDir();
  let why;
  if (!hasLz4Header()) {
    why = 'lz4.h not found (the addon links liblz4: apt-get install liblz4-dev)';
  } else if (!nodeDir) {
    why = 'no Node headers found (set npm config nodedir to a directory with include/node/node_api.h)';
  } else {
    const r = build(nodeDir);
    why = r.ok ? loads() : `node-gyp failed (${r.why})`;
  }
  if (!why) {
    console.log(`vmvault: native segmenter built: ${path.relative(root, addonPath)}`);
    if (existsSync(fuse3Path)) return 0;
    const msg = `the libfuse3 binding was not built (${path.relative(root, fuse3Path)}): install libfuse3-dev and run node tools/build-native.js again; the appliance cannot mount without it`;
    if (required) {
      console.error(`vmvault: ERROR: ${msg} (VMVAULT_REQUIRE_NATIVE=1)`);
      return 1;
    }
    console.warn(`vmvault: WARNING: ${msg}.`);
    return 0;
  }
  if (required) {
    console.error(`vmvault: ERROR: the native segmenter could not be built: ${why} (VMVAULT_REQUIRE_NATIVE=1)`);
    return 1;
  }
  console.warn(`vmvault: WARNING: the native segmenter could not be built: ${why}.`);
  console.warn('vmvault: WARNING: the TypeScript segmenter will be used instead (several times slower ingest).');
  return 0;
}

process.exitCode = main();
