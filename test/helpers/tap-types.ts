// The type of the `t` a tap subtest callback receives (tap's own exports name it awkwardly).

import type { Test } from 'tap';
import type { BuiltPlugins, TestOpts } from '@tapjs/test';

export type TestT = Test<BuiltPlugins, TestOpts> & BuiltPlugins;
