// The appliance's VM backup options (--workflows, --plugins, --freeze-timeout, and their config
// file keys): read, and refused with a message naming the option when malformed.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../src/appliance.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('VM backup options from the command line and the config file', async (t) => {
  const cfg = await loadConfig(['--workflows', '/etc/vmvault/workflows.yaml', '--plugins', '/etc/vmvault/plugins', '--freeze-timeout', '2.5']);
  t.match(cfg, { workflows: '/etc/vmvault/workflows.yaml', plugins: '/etc/vmvault/plugins', freezeTimeoutMs: 2500 });
  const defaults = await loadConfig([]);
  t.match(defaults, { workflows: undefined, plugins: undefined, freezeTimeoutMs: undefined }, 'absent: the backup service decides (10 s, built-in workflows)');

  const dir = tmpDir(t);
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify({ workflows: '/w.yaml', plugins: '/p', freezeTimeoutMs: 4000 }));
  t.match(await loadConfig(['--config', file]), { workflows: '/w.yaml', plugins: '/p', freezeTimeoutMs: 4000 });
  t.match(await loadConfig(['--config', file, '--freeze-timeout', '1']), { freezeTimeoutMs: 1000 }, 'the command line wins');

  await t.rejects(loadConfig(['--freeze-timeout', '10s']), { code: 'INVALID_ARGUMENT', message: /--freeze-timeout "10s": expected a number of seconds, e.g. 10/ });
  await t.rejects(loadConfig(['--freeze-timeout', '0']), { message: /freezeTimeoutMs must be a number of milliseconds from 100 to 600000/ });
  await t.rejects(loadConfig(['--freeze-timeout', '3600']), { message: /from 100 to 600000/ });
  fs.writeFileSync(file, JSON.stringify({ freezeTimeoutMs: '10' }));
  await t.rejects(loadConfig(['--config', file]), { message: /freezeTimeoutMs must be a number/ });
  fs.writeFileSync(file, JSON.stringify({ workflows: '' }));
  await t.rejects(loadConfig(['--config', file]), { message: /workflows must be a non-empty path/ });
});
