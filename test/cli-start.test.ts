// What `vmvault <command>` loads before it can talk HTTP: only the CLI, the control plane's
// plain definitions and Node built-ins. The store, the namespace, FUSE, Fastify, msgpack and
// the native addon are the appliance's; loading any of them would cost a command its start
// time (issue 10: `vmvault stats` answers in <= 300 ms). The figure itself is measured by
// tools/bench-cli.ts; this test pins the cause.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Every module reached from `file` through static imports and literal import('...') calls (the
 * commands are loaded that way, each when it runs): all a CLI run may load.
 */
function staticGraph(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const text = fs.readFileSync(file, 'utf8');
  const specs = [
    ...[...text.matchAll(/^\s*(?:import|export)\s+(?:[^'"]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)].map((m) => m[1]),
    ...[...text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1]),
  ];
  for (const spec of specs) {
    if (spec.startsWith('.')) staticGraph(path.resolve(path.dirname(file), spec), seen);
    else seen.add(spec);
  }
  return seen;
}

/** A module's text without its comments (which may well name what the code avoids). */
function code(file: string): string {
  return fs
    .readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
}

t.test('the CLI statically imports no heavy layer or package', async (t) => {
  const graph = [...staticGraph(path.join(dist, 'src', 'cli', 'main.js'))];
  const rel = graph.map((f) => (path.isAbsolute(f) ? path.relative(dist, f) : f));
  t.ok(rel.includes('src/cli/commands/stats.js'), 'the walk reaches the commands');
  const forbidden = rel.filter(
    (f) => /^src\/(store|namespace|fuse|catalog|orchestration|agent)\//.test(f) || f === 'src/appliance.js' || /^(fastify|msgpackr|level|classic-level|lz4-napi|@napi-rs)/.test(f),
  );
  t.same(forbidden, [], 'no store, namespace, FUSE, Fastify, msgpack or native module');
  const packages = rel.filter((f) => !f.startsWith('src/') && !f.startsWith('node:'));
  t.same(packages, [], 'no npm package at all');
});

t.test('the CLI does not use fetch (undici start cost, kept-alive socket holding the process)', async (t) => {
  const client = code(path.join(dist, 'src', 'cli', 'client.js'));
  t.notMatch(client, /\bfetch\(/, 'client.js sends with node:http');
  const sources = [...staticGraph(path.join(dist, 'src', 'cli', 'main.js'))].filter((f) => path.isAbsolute(f));
  const locale = sources.filter((f) => /toLocaleString|Intl\./.test(code(f)));
  t.same(locale, [], 'no toLocaleString or Intl (the first call loads ICU data, ~40 ms)');
});
