// Whether KVM can run a recovered VM here, asked of QEMU itself before an instant recovery
// starts one.
//
// /dev/kvm existing is not enough. Nested or partial KVM (seen on this project's build hosts)
// opens /dev/kvm, runs trivial code, and yet cannot give QEMU's default CPU model the features
// it promises (QEMU warns "host doesn't support requested feature: CPUID.01H:ECX.pni"): a
// Linux guest then hangs before its first console line, and the recovery would wait for an
// agent that never answers. `-cpu host` on such a host aborts QEMU instead.
//
// The probe boots a 64 KiB "BIOS" whose reset vector writes one byte to an isa-debug-exit
// port: QEMU exits with (byte << 1) | 1 = 85. KVM is used only when that exit comes within the
// time limit AND QEMU printed no warning about missing CPU features, save `svm`: the default
// model (qemu64) asks for AMD's virtualization extension, which every Intel host lacks and no
// recovered guest needs, so that warning is common on healthy hosts. Anything else means TCG,
// with the reason in the recovery's log. One probe per QEMU binary per process (~60 ms).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface KvmVerdict {
  usable: boolean;
  /** Why not, in words for the job log ('' when usable). */
  reason: string;
}

const PORT = 0xf4;
const EXIT_BYTE = 0x2a;
/** isa-debug-exit's exit status for EXIT_BYTE. */
export const PROBE_EXIT = (EXIT_BYTE << 1) | 1;
const MISSING_FEATURE = /host doesn't support requested feature[^\n]*/g;
/** Missing features that do not make KVM unfit (see the top of this file). */
const HARMLESS = /\.svm \[/;

/** The probe firmware: hlt everywhere, and at the reset vector (last 16 bytes) `mov al, 0x2a;
 * out 0xf4, al; hlt; jmp $`. */
export function probeFirmware(): Buffer {
  const b = Buffer.alloc(64 * 1024, 0xf4);
  Buffer.from([0xb0, EXIT_BYTE, 0xe6, PORT, 0xf4, 0xeb, 0xfe]).copy(b, 0xfff0);
  return b;
}

/** QEMU's arguments for the probe under `accel` ('kvm' or 'tcg'). */
export function probeArgs(accel: string, firmware: string): string[] {
  return [
    '-accel', accel, '-machine', 'pc', '-nodefaults', '-no-user-config', '-display', 'none',
    '-m', '16', '-bios', firmware, '-device', `isa-debug-exit,iobase=0x${PORT.toString(16)},iosize=1`,
  ];
}

/** The verdict from how the probe ended. `status` null: it did not exit in time. */
export function judgeProbe(status: number | null, stderr: string): KvmVerdict {
  if (status === null) return { usable: false, reason: 'KVM did not run a trivial guest within the time limit: the VM runs under TCG (software emulation)' };
  const missing = (stderr.match(MISSING_FEATURE) ?? []).filter((m) => !HARMLESS.test(m));
  if (missing.length > 0) return { usable: false, reason: `KVM cannot give the VM's CPU model its features (QEMU: "${missing[0].trim()}"): the VM runs under TCG (software emulation)` };
  if (status !== PROBE_EXIT) {
    const said = stderr.trim().split('\n').slice(-2).join(' / ');
    return { usable: false, reason: `KVM probe failed (QEMU exit ${status}${said ? `: ${said}` : ''}): the VM runs under TCG (software emulation)` };
  }
  return { usable: true, reason: '' };
}

/** Runs the probe under `accel`; resolves with its verdict, never rejects. */
export async function runProbe(qemuBinary: string, accel: string, timeoutMs = 5000): Promise<KvmVerdict> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'vmvault-kvm-probe-'));
  try {
    const fw = path.join(dir, 'probe.bin');
    await fs.promises.writeFile(fw, probeFirmware());
    const ended = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
      let stderr = '';
      const child = spawn(qemuBinary, probeArgs(accel, fw), { stdio: ['ignore', 'ignore', 'pipe'] });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (stderr.length < 16384) stderr += d;
      });
      child.on('error', (err) => {
        clearTimeout(timer);
        resolve({ status: -1, stderr: err.message });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ status: signal ? null : code, stderr });
      });
    });
    return judgeProbe(ended.status, ended.stderr);
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

const verdicts = new Map<string, Promise<KvmVerdict>>();

/** Whether a VM started by `qemuBinary` should use KVM: no /dev/kvm means no; otherwise the probe
 * decides, once per binary per process. */
export function kvmUsable(qemuBinary: string): Promise<KvmVerdict> {
  if (!fs.existsSync('/dev/kvm')) return Promise.resolve({ usable: false, reason: 'no /dev/kvm: the VM runs under TCG (software emulation)' });
  let v = verdicts.get(qemuBinary);
  if (!v) {
    v = runProbe(qemuBinary, 'kvm');
    verdicts.set(qemuBinary, v);
  }
  return v;
}
