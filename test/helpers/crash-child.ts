// Child process for the crash test: writes and edits versions forever, committing each and
// then appending a line that says how to regenerate its bytes to an fsynced log. The parent
// kills it with SIGKILL at a random moment; every version in the log must survive.

import fs from 'node:fs';
import { SegmentStore, type FileVersion } from '../../src/store/store.js';
import { decodeVersion, encodeVersion } from '../../src/store/tree/version.js';
import { generate, type Kind, Rng } from './data.js';

export interface LogLine {
  n: number;
  version: string;
  op: { kind: 'write'; seed: number; size: number; content: Kind } | { kind: 'edit'; base: number; seed: number; offset: number; len: number; content: Kind };
}

const KINDS: Kind[] = ['random', 'sparse', 'text', 'zeros'];

export function regenerate(lines: LogLine[], n: number, memo = new Map<number, Buffer>()): Buffer {
  const hit = memo.get(n);
  if (hit) return hit;
  const l = lines[n];
  let out: Buffer;
  if (l.op.kind === 'write') {
    out = generate(new Rng(l.op.seed), l.op.content, l.op.size);
  } else {
    const base = regenerate(lines, l.op.base, memo);
    const patch = generate(new Rng(l.op.seed), l.op.content, l.op.len);
    out = Buffer.alloc(Math.max(base.length, l.op.offset + l.op.len));
    base.copy(out);
    patch.copy(out, l.op.offset);
  }
  memo.set(n, out);
  return out;
}

export function readLog(file: string): LogLine[] {
  if (!fs.existsSync(file)) return [];
  const lines: LogLine[] = [];
  for (const text of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!text) continue;
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      // the line being written when the child was killed
    }
  }
  return lines;
}

async function main(): Promise<void> {
  const [dir, logFile, seedArg] = process.argv.slice(2);
  const store = await SegmentStore.open(dir, { chunker: { minSize: 1024, avgSize: 4096, maxSize: 16384 } });
  const lines = readLog(logFile);
  const versions: FileVersion[] = lines.map((l) => decodeVersion(Buffer.from(l.version, 'hex')));
  const fd = fs.openSync(logFile, 'a');
  const rng = new Rng(Number(seedArg));
  process.send?.('ready');
  for (let n = lines.length; ; n++) {
    let op: LogLine['op'];
    let version: FileVersion;
    let deps: Set<number>;
    if (versions.length === 0 || rng.int(3) === 0) {
      op = { kind: 'write', seed: rng.next(), size: rng.int(3_000_000), content: rng.pick(KINDS) };
      const data = generate(new Rng(op.seed), op.content, op.size);
      const w = store.writer();
      for (let at = 0; at < data.length; at += 65536) await w.write(data.subarray(at, at + 65536));
      ({ version, deps } = await w.finish());
    } else {
      const base = rng.int(versions.length);
      op = { kind: 'edit', base, seed: rng.next(), offset: rng.int(versions[base].size + 10000), len: rng.range(1, 200000), content: rng.pick(KINDS) };
      const patch = generate(new Rng(op.seed), op.content, op.len);
      ({ version, deps } = await store.writeAt(versions[base], op.offset, patch));
    }
    await store.commit([], deps);
    versions.push(version);
    const line: LogLine = { n, version: encodeVersion(version).toString('hex'), op };
    fs.writeSync(fd, JSON.stringify(line) + '\n');
    fs.fsyncSync(fd);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\//, ''))) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
