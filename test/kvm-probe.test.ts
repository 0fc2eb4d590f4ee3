// The KVM probe instant recovery asks before it starts a VM (src/plugins/qemu/kvm-probe.ts).
// The probe program itself runs under real QEMU with TCG, so it is checked on every machine;
// KVM's own answer depends on the host (on this project's build hosts /dev/kvm exists but
// cannot run a Linux guest: a recovered VM under -accel kvm hung before its first console line),
// so the verdict rules are checked on the exits and messages QEMU gives.

import t from 'tap';
import fs from 'node:fs';
import { judgeProbe, kvmUsable, PROBE_EXIT, runProbe } from '../src/plugins/qemu/kvm-probe.js';

const qemu = fs.existsSync('/usr/bin/qemu-system-x86_64') ? false : 'qemu-system-x86_64 is missing';

t.test('the probe firmware exits QEMU with its status under TCG', { skip: qemu }, async (t) => {
  const t0 = Date.now();
  const v = await runProbe('qemu-system-x86_64', 'tcg', 20_000);
  t.same(v, { usable: true, reason: '' }, 'TCG runs the probe to its isa-debug-exit');
  t.ok(Date.now() - t0 < 20_000, 'within the limit');
});

t.test('verdicts', async (t) => {
  t.same(judgeProbe(PROBE_EXIT, ''), { usable: true, reason: '' });
  t.same(judgeProbe(PROBE_EXIT, 'qemu-system-x86_64: -accel kvm: some unrelated note\n'), { usable: true, reason: '' }, 'other stderr lines do not matter');
  const warned = judgeProbe(PROBE_EXIT, "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n");
  t.equal(warned.usable, false, 'a CPU model KVM cannot fill means TCG, even though the probe exited');
  t.match(warned.reason, /CPUID\.01H:ECX\.pni/, 'the reason quotes QEMU');
  t.match(warned.reason, /runs under TCG/);
  t.same(judgeProbe(PROBE_EXIT, "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.80000001H:ECX.svm [bit 2]\n"), { usable: true, reason: '' },
    "svm (AMD's virtualization, which Intel hosts lack) does not count");
  const both = judgeProbe(PROBE_EXIT, "w: host doesn't support requested feature: CPUID.80000001H:ECX.svm [bit 2]\nw: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\n");
  t.equal(both.usable, false, 'svm beside a real gap still means TCG');
  t.match(both.reason, /pni/, 'and names the real gap');
  const hung = judgeProbe(null, '');
  t.equal(hung.usable, false);
  t.match(hung.reason, /did not run a trivial guest within the time limit/);
  const aborted = judgeProbe(134, "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nAssertion `ret == cpu->kvm_msr_buf->nmsrs' failed.\n");
  t.equal(aborted.usable, false);
  t.match(aborted.reason, /QEMU exit 134: .*failed to set MSR/);
});

t.test('a QEMU that cannot be started gives a verdict, not an error', async (t) => {
  const v = await runProbe('/nonexistent/qemu-system-x86_64', 'kvm', 5000);
  t.equal(v.usable, false);
  t.match(v.reason, /ENOENT/);
});

t.test('kvmUsable asks once per binary and always answers', { skip: qemu }, async (t) => {
  const a = kvmUsable('qemu-system-x86_64');
  const b = kvmUsable('qemu-system-x86_64');
  const v = await a;
  t.same(await b, v, 'the same verdict');
  t.type(v.usable, 'boolean');
  if (!fs.existsSync('/dev/kvm')) t.match(v.reason, /no \/dev\/kvm/);
  else if (!v.usable) t.match(v.reason, /TCG/, `this host: ${v.reason}`);
  t.comment(`this host: ${v.usable ? 'KVM usable' : v.reason}`);
});
