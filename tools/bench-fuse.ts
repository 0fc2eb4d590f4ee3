// npm run bench:fuse [-- --quick] [-- IMAGE] [-- --dir=DIR] [-- --profile=DIR]
//                    [-- --only=image|small|ceiling|vs-store] [-- --before=REPO] [-- --writes]
//   (node dist/tools/bench-fuse.js)
// Prints one JSON line per figure: {"figure":..., "value":..., "unit":..., "vs_ceiling":...};
// notes on the run (and, with --profile, where the appliance spent its CPU) go to stderr.
//
// IMAGE: a raw VM image (default /work/vmdata/vm-images/vm1-day1.raw, built by
// ../shared/testdata/make-vm-images.sh); --quick uses its first 256 MiB and a 1 GiB ceiling
// run, and finishes in under a minute. --dir: where stores and the plain copy go (default the
// system temp dir). --profile=DIR: run the appliance under `node --cpu-prof`, profiles in DIR.
// Run as root: the read phase drops the page cache (/proc/sys/vm/drop_caches).
//
// Then small files (bench/small-files.ts): create/stat/readdir/unlink of 10,000 files (--quick:
// 2,000) against a names-only FUSE ceiling on the same binding, and rsync -a /usr/share/doc into
// a share against a plain directory, on the default binding (libfuse3). --before=REPO runs that
// part also on another built checkout (main before a change); --runs=N repeats it all N times,
// alternating, and takes the best of N. --only=image or
// --only=small runs one part; --only=ceiling only the do-nothing ceiling of the libfuse3
// binding (fuse.ceiling.*), printed beside fuse-native's last recorded one (fuse.ceiling_old.*,
// marked "historic": fuse-native was removed in issue 16). --only=vs-store: the mount
// against the store in one run (bench/fuse-vs-store.ts: fuse.write.unique.vs_store,
// fuse.write.duplicate.vs_store, fuse.read.vs_store, fuse.read.random4k_qd16,
// fuse.two_writers.vs_one, and the appliance's CPU per MiB written: fuse.write.unique.cpu_ms_per_mib,
// fuse.two_writers.cpu_ms_per_mib); --before=REPO there measures another built checkout too, alternating
// (figures *.before), --writes only the write figures; --runs=N (default 3) takes the best of N.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { benchFuse, type FuseFigure } from './bench/fuse-vmvault.js';
import { ceilingOldFigures } from './bench/fuse-ceiling-old.js';
import { benchFuseCeilingLl } from './bench/fuse-ceiling-ll.js';
import { benchFuseVsStore } from './bench/fuse-vs-store.js';
import { benchSmallFiles } from './bench/small-files.js';

const args = process.argv.slice(2);
const opt = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const image = args.find((a) => !a.startsWith('--')) ?? '/work/vmdata/vm-images/vm1-day1.raw';
const only = opt('only');
if (only !== undefined && only !== 'image' && only !== 'small' && only !== 'ceiling' && only !== 'vs-store') {
  process.stderr.write(`bench-fuse: --only=${only}: want image, small, ceiling or vs-store\n`);
  process.exit(2);
}
if (only !== 'small' && only !== 'ceiling' && only !== 'vs-store' && !fs.existsSync(image)) {
  process.stderr.write(`bench-fuse: ${image} is missing; build it with: OUT=/work/vmdata/vm-images BUILD=/work/vmdata/build bash ../shared/testdata/make-vm-images.sh\n`);
  process.exit(2);
}
const profile = opt('profile');
const figures: FuseFigure[] = [];
const emit = (f: FuseFigure): void => {
  figures.push(f);
  process.stdout.write(JSON.stringify(f) + '\n');
};
const note = (line: string) => void process.stderr.write(`bench: ${line}\n`);
if (only === 'ceiling') {
  // The do-nothing ceiling alone (no image needed), beside fuse-native's last recorded one.
  for (const f of await benchFuseCeilingLl({ quick: args.includes('--quick'), dir: opt('dir') ?? os.tmpdir() })) emit(f);
  for (const f of ceilingOldFigures()) emit(f);
}
if (only === 'vs-store') {
  const runs = Number(opt('runs') ?? 3);
  const before = opt('before');
  await benchFuseVsStore(
    { quick: args.includes('--quick'), dir: opt('dir') ?? os.tmpdir(), ...(before ? { before: path.join(path.resolve(before), 'bin', 'vmvault.js') } : {}), writesOnly: args.includes('--writes'), runs, note },
    emit,
  );
}
if (only !== 'small' && only !== 'ceiling' && only !== 'vs-store') {
  await benchFuse(
    {
      quick: args.includes('--quick'),
      image,
      dir: opt('dir') ?? os.tmpdir(),
      ...(profile ? { profileDir: path.resolve(profile) } : {}),
      note,
    },
    emit,
  );
}
if (only !== 'image' && only !== 'ceiling' && only !== 'vs-store') {
  const before = opt('before');
  await benchSmallFiles(
    {
      quick: args.includes('--quick'),
      dir: opt('dir') ?? os.tmpdir(),
      ...(before ? { beforeRepo: path.resolve(before) } : {}),
      runs: Number(opt('runs') ?? 1),
      ...(profile ? { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${path.join(path.resolve(profile), 'small')}`] } : {}),
      note,
    },
    emit,
  );
}

// The ratios to the ceiling against the targets the issue set.
const targets: Array<[string, string, number]> = [
  ['fuse.write.unique', 'unique write / write ceiling', 0.7],
  ['fuse.write.duplicate', 'duplicate write / write ceiling', 0.85],
  ['fuse.read.sequential', 'sequential read / read ceiling', 0.7],
  ['fuse.small.create', 'small-file create / ceiling', 0.5],
  ['fuse.small.stat', 'small-file stat / ceiling', 0.5],
  ['fuse.small.readdir', 'small-file readdir / ceiling', 0.5],
  ['fuse.small.unlink', 'small-file unlink / ceiling', 0.5],
];
for (const [name, label, target] of targets) {
  const f = figures.find((x) => x.figure === name);
  if (f?.vs_ceiling !== undefined) {
    const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
    process.stderr.write(`bench: ${label}: ${pct(f.vs_ceiling)} (target ${pct(target)}${f.vs_ceiling >= target ? ', met' : ', not met'})\n`);
  }
}
