// `node dist/tools/appliance/package-ova.js --name N --version V --commit C --disk system=RAW
//   --disk data=RAW --out DIR [--memory MiB]`: the packaging step of tools/build-appliance.sh.
// The tar members' time is SOURCE_DATE_EPOCH (0 if unset).

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeOva } from './ova.js';
import { loadTemplate } from './ovf.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const { values } = parseArgs({
  options: {
    name: { type: 'string' }, version: { type: 'string' }, commit: { type: 'string' }, out: { type: 'string' },
    memory: { type: 'string', default: '2048' }, disk: { type: 'string', multiple: true },
  },
  strict: true,
});
if (!values.name || !values.version || !values.commit || !values.out || !values.disk) {
  process.stderr.write('usage: package-ova.js --name N --version V --commit C --disk ID=RAW ... --out DIR [--memory MiB]\n');
  process.exit(2);
}
const disks = values.disk.map((d) => {
  const [id, raw] = d.split('=', 2);
  return { id, raw };
});
const r = await makeOva({
  name: values.name, version: values.version, commit: values.commit, memoryMiB: Number(values.memory), disks,
  template: loadTemplate(path.join(repo, 'ovf', 'vmvault.ovf.in')), outDir: values.out,
  mtime: Number(process.env.SOURCE_DATE_EPOCH ?? 0),
});
process.stdout.write(`${r.ova}\n${r.sha256}\n`);
