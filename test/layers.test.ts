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
  // files/: the small state files' atomic, durable rewrite (any layer that keeps one).
  files: ['errors'],
  store: ['kv', 'errors'],
  namespace: ['store', 'kv', 'errors'],
  // DESIGN.md: fuse/ and control/ are thin edges over the namespace; what they need of the
  // store's types, the namespace re-exports.
  fuse: ['namespace', 'errors'],
  control: ['policy', 'backup', 'catalog', 'namespace', 'transfer', 'export', 'files', 'errors'],
  cli: ['control', 'errors'],
  // catalog/ reads snapshot files through the namespace (never the mount); its own SQLite files,
  // made durable with files/.
  catalog: ['namespace', 'store', 'files', 'kv', 'errors'],
  // The agent reads NBD exports with the qemu plug-in's client (ARCHITECTURE.md, departures)
  // and sends through transfer/.
  agent: ['transfer', 'plugins', 'store', 'errors'],
  // transfer/: the protocol's frames, the sender (pure store parts only, as agents use it) and
  // the receiver's rules (which write through the namespace).
  transfer: ['namespace', 'store', 'kv', 'errors'],
  orchestration: ['control', 'namespace', 'store', 'errors'],
  // plugins/ know one system each (QEMU, PostgreSQL, an operator's script) and nothing of the store.
  plugins: ['errors'],
  // backup/ writes into shares through the namespace, never the mount, and drives plugins/.
  backup: ['plugins', 'namespace', 'files', 'errors'],
  // export/ supervises nfs-ganesha and Samba over the mount; the composition root hands it the share list.
  export: ['files', 'errors'],
  // policy/ schedules backups (through a starter the composition root gives it), locks and
  // prunes their points through the namespace, and reads and updates backup/'s records.
  // Clone copies (issue 14): transfer/ to send a point fingerprint-first; the store's pure parts
  // (codec, fingerprint) for the directory archive's containers.
  policy: ['backup', 'namespace', 'transfer', 'store', 'files', 'errors'],
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
  transfer: /^store\/(?!store-core|internals)/,
  policy: /^store\/(?!store-core|internals)/,
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

// The catalog's reading half (disk formats, volumes, filesystem walkers) takes plain byte sources
// in and gives entries out: it imports nothing of the appliance but errors.ts (not even the
// store's pure parts), so it can read any image file, in the appliance or a tool.
t.test('catalog readers import only errors and each other', async (t) => {
  const catalog = path.join(root, 'catalog');
  const readers = sources(catalog).filter((f) => {
    const rel = path.relative(catalog, f).split(path.sep);
    return ['image', 'volume', 'fs'].includes(rel[0]) || rel[0] === 'source.ts' || rel[0] === 'file-source.ts';
  });
  t.ok(readers.length >= 10, `found ${readers.length} reader files`);
  const bad: string[] = [];
  for (const file of readers) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = path.relative(root, path.resolve(path.dirname(file), m[1])).split(path.sep).join('/');
      if (target === 'errors.js') continue;
      const inCatalog = target.startsWith('catalog/');
      const rel = target.slice('catalog/'.length);
      if (!inCatalog || !(/^(image|volume|fs)\//.test(rel) || rel === 'source.js' || rel === 'file-source.js')) {
        bad.push(`${path.relative(root, file)}: imports ${m[1]}`);
      }
    }
  }
  t.same(bad, [], 'catalog readers: plain byte sources in, entries out');
});
