// bench:catalog's catalog.vs_fls and catalog.day2_vs_day1 are medians of fls, day 1 and day 2
// runs made round by round (catalog10): until then each ran 3 times in a row and day 1's first
// build, always the slowest, was one of its three. This checks the order the bench uses: each
// step as many times as asked, each first in some round, each right after each other one.

import t from 'tap';
import { interleaved } from '../tools/bench/interleave.js';

t.test('steps run round by round, rotated: each as often, each first once, each after each other', async (t) => {
  const order: string[] = [];
  const step = (name: string) => async () => {
    await new Promise((resolve) => setImmediate(resolve)); // a step is awaited before the next starts
    order.push(name);
  };
  await interleaved([step('fls'), step('day1'), step('day2')], 5);
  t.same(order, ['fls', 'day1', 'day2', 'day1', 'day2', 'fls', 'day2', 'fls', 'day1', 'fls', 'day1', 'day2', 'day1', 'day2', 'fls']);
  for (const name of ['fls', 'day1', 'day2']) t.equal(order.filter((x) => x === name).length, 5, `${name} runs 5 times`);
  const firsts = new Set([0, 3, 6].map((i) => order[i]));
  t.equal(firsts.size, 3, 'each step runs first in one of the first three rounds');
  const pairs = new Set<string>();
  for (let i = 1; i < order.length; i++) pairs.add(`${order[i - 1]}>${order[i]}`);
  for (const a of ['fls', 'day1', 'day2']) for (const b of ['fls', 'day1', 'day2']) if (a !== b) t.ok(pairs.has(`${a}>${b}`), `${b} runs right after ${a} at least once`);
});

t.test('a failing step stops the rounds (a bench does not go on with a figure missing a run)', async (t) => {
  const ran: number[] = [];
  await t.rejects(interleaved([async () => void ran.push(0), async () => { throw new Error('boom'); }], 3), /boom/);
  t.same(ran, [0]);
});
