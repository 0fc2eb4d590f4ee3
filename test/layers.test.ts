// The layers of DESIGN.md import only downward. This test reads every source file's imports
// and fails on one that points up or sideways (restic keeps its backends from importing the
// repository layer the same way).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** What each layer may import (besides itself). */
const ALLOWED: Record<string, string[]> = {
  errors: [],
  kv: ['errors'],
  store: ['kv', 'errors'],
  namespace: ['store', 'kv', 'errors'],
  // DESIGN.md: fuse/ and control/ are thin edges over the namespace; what they need of the
  // store's types, the namespace re-exports.
  fuse: ['namespace', 'errors'],
  control: ['policy', 'backup', 'namespace', 'errors'],
  cli: ['control', 'errors'],
  catalog: ['store', 'errors'],
  agent: ['store', 'errors'],
  orchestration: ['control', 'namespace', 'store', 'errors'],
  // plugins/ know one system each (QEMU, PostgreSQL, an operator's script) and nothing of the store.
  plugins: ['errors'],
  // backup/ writes into shares through the namespace, never the mount, and drives plugins/.
  backup: ['plugins', 'namespace', 'errors'],
  // policy/ schedules backups (through a starter the composition root gives it), locks and
  // prunes their points through the namespace, and reads and updates backup/'s records.
  policy: ['backup', 'namespace', 'errors'],
};
/**
 * Where a layer may enter the store: the namespace (and the layers over it) only through
 * store.ts, its public surface; the agent and the catalog use the store's pure parts
 * (segmenter, fingerprint, codec, tree nodes). No layer imports the store's internals.
 */
const STORE_DOORS: Record<string, RegExp> = {
  namespace: /^store\/store\.ts$/,
  orchestration: /^store\/store\.ts$/,
  catalog: /^store\/(?!store-core|internals)/,
  agent: /^store\/(?!store-core|internals)/,
};
/** The composition root wires every layer together. */
const ROOT_FILES = /^appliance(-[a-z-]+)?\.ts$/;

function layerOf(rel: string): string {
  const first = rel.split(path.sep)[0];
  return first.endsWith('.ts') ? first.replace(/\.ts$/, '') : first;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

t.test('imports only point down the layers', async (t) => {
  const files = sources(root);
  t.ok(files.length > 20, `found ${files.length} source files`);
  const bad: string[] = [];
  for (const file of files) {
    const rel = path.relative(root, file);
    if (ROOT_FILES.test(rel)) continue;
    const from = layerOf(rel);
    const allowed = ALLOWED[from];
    if (!allowed) {
      bad.push(`${rel}: not in a known layer (add it to DESIGN.md and this test)`);
      continue;
    }
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = path.relative(root, path.resolve(path.dirname(file), m[1]));
      if (target.startsWith('..')) {
        bad.push(`${rel}: imports ${m[1]} from outside src/`);
        continue;
      }
      const to = layerOf(target.replace(/\.js$/, '.ts'));
      if (to === from) continue;
      if (ROOT_FILES.test(target.replace(/\.js$/, '.ts'))) bad.push(`${rel}: imports the composition root`);
      else if (!allowed.includes(to)) bad.push(`${rel}: ${from} must not import ${to} (${m[1]})`);
      else if (to === 'store' && !STORE_DOORS[from]?.test(target.replace(/\.js$/, '.ts').split(path.sep).join('/'))) {
        bad.push(`${rel}: ${from} enters the store through ${m[1]}, not its public surface (store/store.ts)`);
      }
    }
  }
  t.same(bad, [], 'no upward or sideways import');
});
