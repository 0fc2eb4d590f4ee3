// Temporary directories for tests, removed when the test ends (pass or fail).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export function tmpDir(t: Teardown, prefix = 'vmvault-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
