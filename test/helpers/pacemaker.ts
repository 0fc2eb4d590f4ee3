// A real Pacemaker cluster for tests: N nodes (default 3), each a network namespace on one
// bridge, running Debian's corosync (knet) and pacemakerd, as ../shared/RESEARCH-vm-backup.md
// records. Each node runs under `ip netns exec NS unshare -m -u` with its own tmpfs over /run,
// /var/lib/pacemaker, /var/lib/corosync, /var/log/{pacemaker,corosync} and /dev/shm, and its own
// corosync.conf bound over /etc/corosync, so the nodes share nothing but the bridge. The CIB is
// pre-seeded (stonith-enabled=false, dc-deadtime=2s: a DC in ~6 s instead of ~20 s).
//
// The cluster's tools run inside a node with `nsenter -t <pacemakerd pid> -m -n -u` (`prefix`).
// kill(node) SIGKILLs every process of that node (the ones in its mount namespace: all started
// here), as a host that loses power. Teardown does the same for every node, whatever happened,
// then deletes the namespaces and the bridge. Free of src/ imports, like the other helpers.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { runTool } from './run-tool.js';
import { tmpDir } from './tmpdir.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface PcmkNode {
  name: string;
  /** Its network namespace. */
  ns: string;
  ip: string;
  /** pacemakerd's PID (the process `ip netns exec ... unshare ... sh` became). */
  pid: number;
  /** argv prefix that runs a tool in this node's namespaces (crm_mon, crm_resource, cibadmin). */
  prefix: string[];
  alive: boolean;
}

export interface PcmkCluster {
  nodes: PcmkNode[];
  node(name: string): PcmkNode;
  /** Runs a tool on a live node (the first by default); throws on a non-zero exit. */
  exec(argv: string[], on?: PcmkNode): Promise<string>;
  /** Adds an ocf:pacemaker:Dummy primitive, tagged `vmvault-vm=VM` (meta) when `vm` is given. */
  addDummy(id: string, vm?: string, opts?: { node?: string }): Promise<void>;
  /** Waits until crm_mon (on a live node) shows `pred` true of its XML. */
  waitFor(what: string, pred: (xml: string) => boolean, timeoutMs?: number): Promise<string>;
  /** Powers a node off: SIGKILL of every process in it. */
  kill(node: PcmkNode): Promise<void>;
}

export function pacemakerAvailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'a Pacemaker cluster in namespaces needs root';
  for (const tool of ['corosync', 'pacemakerd', 'crm_mon', 'nsenter', 'unshare', 'ip']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed (apt-get install pacemaker corosync)`;
    }
  }
  return undefined;
}

const NODE_SCRIPT = `#!/bin/sh
# $1 node name, $2 its config directory (corosync.conf, cib.xml). Runs in fresh mount and UTS
# namespaces: everything mounted here vanishes with the node.
set -e
hostname "$1"
for d in /run /var/lib/pacemaker /var/lib/corosync /var/log/pacemaker /var/log/corosync /dev/shm; do
  mount -t tmpfs -o mode=0755 tmpfs "$d"
done
chmod 1777 /dev/shm
mount --bind "$2" /etc/corosync
for d in cib pengine blackbox cores; do mkdir -p /var/lib/pacemaker/$d; done
cp "$2/cib.xml" /var/lib/pacemaker/cib/cib.xml
chmod 0750 /var/lib/pacemaker/cib; chmod 0600 /var/lib/pacemaker/cib/cib.xml
chown -R hacluster:haclient /var/lib/pacemaker /var/log/pacemaker
mkdir -p /run/crm; chown hacluster:haclient /run/crm
corosync -f > /var/log/corosync/stdout.log 2>&1 &
i=0
while ! corosync-cfgtool -s > /dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 200 ] && { echo "corosync did not start"; cat /var/log/corosync/stdout.log; exit 3; }
  sleep 0.1
done
exec pacemakerd
`;

function corosyncConf(cluster: string, nodes: Array<{ name: string; ip: string }>): string {
  const list = nodes.map((n, i) => `  node {\n    name: ${n.name}\n    nodeid: ${i + 1}\n    ring0_addr: ${n.ip}\n  }\n`).join('');
  // token 1000 ms: a lost node is noticed in ~1-2 s instead of ~4 s (failover tests wait for it).
  return `totem {\n  version: 2\n  cluster_name: ${cluster}\n  transport: knet\n  crypto_cipher: none\n  crypto_hash: none\n  token: 1000\n}\nquorum {\n  provider: corosync_votequorum\n}\nlogging {\n  to_stderr: yes\n  to_syslog: no\n}\nnodelist {\n${list}}\n`;
}

const CIB = `<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-stonith-enabled" name="stonith-enabled" value="false"/>
        <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources/>
    <constraints/>
  </configuration>
  <status/>
</cib>
`;

let seq = 0;

async function ip(args: string[]): Promise<void> {
  const r = await runTool('ip', args, { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
}

/** Every PID whose mount namespace is `mnt` (a `mnt:[...]` link text). */
function pidsIn(mnt: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/ns/mnt`) === mnt) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

async function killAllIn(mnt: string): Promise<void> {
  for (let round = 0; round < 50; round++) {
    const pids = pidsIn(mnt);
    if (pids.length === 0) return;
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function startPacemakerCluster(t: Teardown, opts: { nodes?: number } = {}): Promise<PcmkCluster> {
  const count = opts.nodes ?? 3;
  const dir = tmpDir(t, 'vmvault-pcmk-');
  const tag = `${(process.pid % 46656).toString(36)}${seq++}`;
  const bridge = `vpb${tag}`;
  const subnet = `10.234.${(process.pid + seq * 37) % 250}`;
  const nodes: PcmkNode[] = [];
  const mnts = new Map<PcmkNode, string>();
  const children: ChildProcess[] = [];

  t.teardown(async () => {
    for (const n of nodes) {
      const mnt = mnts.get(n);
      if (mnt !== undefined) await killAllIn(mnt);
    }
    // A node that failed before it was listed: its own mount namespace only, never ours.
    const own = nsOf(process.pid);
    for (const c of children) {
      if (c.exitCode !== null || c.pid === undefined || nodes.some((n) => n.pid === c.pid)) continue;
      const mnt = nsOf(c.pid);
      if (mnt !== undefined && mnt !== own) await killAllIn(mnt);
      else {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
    }
    for (let i = 1; i <= count; i++) {
      await runTool('ip', ['netns', 'del', `vph${tag}-${i}`], { timeoutMs: 20_000 });
      await runTool('ip', ['link', 'del', `vpv${tag}${i}`], { timeoutMs: 20_000 });
    }
    await runTool('ip', ['link', 'del', bridge], { timeoutMs: 20_000 });
  });

  await ip(['link', 'add', bridge, 'type', 'bridge']);
  await ip(['link', 'set', bridge, 'up']);
  const specs = Array.from({ length: count }, (_, i) => ({ name: `node${i + 1}`, ip: `${subnet}.${i + 1}`, ns: `vph${tag}-${i + 1}`, veth: `vpv${tag}${i + 1}`, peer: `vpp${tag}${i + 1}` }));
  fs.writeFileSync(path.join(dir, 'node.sh'), NODE_SCRIPT, { mode: 0o755 });
  for (const s of specs) {
    await ip(['netns', 'add', s.ns]);
    await ip(['link', 'add', s.veth, 'type', 'veth', 'peer', 'name', s.peer]);
    await ip(['link', 'set', s.veth, 'master', bridge]);
    await ip(['link', 'set', s.veth, 'up']);
    await ip(['link', 'set', s.peer, 'netns', s.ns]);
    await ip(['-n', s.ns, 'addr', 'add', `${s.ip}/24`, 'dev', s.peer]);
    await ip(['-n', s.ns, 'link', 'set', s.peer, 'up']);
    await ip(['-n', s.ns, 'link', 'set', 'lo', 'up']);
    const conf = path.join(dir, s.name);
    fs.mkdirSync(conf);
    fs.writeFileSync(path.join(conf, 'corosync.conf'), corosyncConf(`vv${tag}`, specs));
    fs.writeFileSync(path.join(conf, 'cib.xml'), CIB);
  }
  for (const s of specs) {
    const child = spawn('ip', ['netns', 'exec', s.ns, 'unshare', '-m', '-u', '--propagation', 'private', path.join(dir, 'node.sh'), s.name, path.join(dir, s.name)], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    children.push(child);
    let err = '';
    child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    child.on('exit', () => {
      const n = nodes.find((x) => x.pid === child.pid);
      if (n) n.alive = false;
    });
    if (child.pid === undefined) throw new Error(`node ${s.name} did not start: ${err}`);
    const pid = child.pid;
    // The node is up once the shell became pacemakerd (exec keeps the PID).
    const deadline = Date.now() + 30_000;
    for (;;) {
      const comm = (() => {
        try {
          return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        } catch {
          return '';
        }
      })();
      if (comm === 'pacemakerd') break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`node ${s.name} did not start pacemakerd: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const node: PcmkNode = { name: s.name, ns: s.ns, ip: s.ip, pid, prefix: ['nsenter', '-t', String(pid), '-m', '-n', '-u'], alive: true };
    nodes.push(node);
    mnts.set(node, nsOf(pid)!);
  }

  const live = (): PcmkNode => {
    const n = nodes.find((x) => x.alive);
    if (!n) throw new Error('no node of the cluster is alive');
    return n;
  };
  const exec = async (argv: string[], on?: PcmkNode): Promise<string> => {
    const n = on ?? live();
    const r = await runTool(n.prefix[0], [...n.prefix.slice(1), ...argv], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`${argv.join(' ')} on ${n.name}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  };
  const waitFor = async (what: string, pred: (xml: string) => boolean, timeoutMs = 60_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      const n = live();
      const r = await runTool(n.prefix[0], [...n.prefix.slice(1), 'crm_mon', '-1', '--output-as=xml'], { timeoutMs: 30_000 });
      last = r.stdout;
      if (r.code === 0 && pred(last)) return last;
      if (Date.now() > deadline) throw new Error(`the cluster did not reach "${what}" in ${timeoutMs / 1000} s; crm_mon says:\n${last}${r.stderr}`);
      await new Promise((res) => setTimeout(res, 250));
    }
  };
  const cluster: PcmkCluster = {
    nodes,
    node: (name) => {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no node ${name}`);
      return n;
    },
    exec,
    waitFor,
    addDummy: async (id, vm, o = {}) => {
      const meta = vm === undefined ? '' : `<meta_attributes id="${id}-meta"><nvpair id="${id}-vmvault-vm" name="vmvault-vm" value="${vm}"/></meta_attributes>`;
      await exec(['cibadmin', '--create', '-o', 'resources', '--xml-text', `<primitive id="${id}" class="ocf" provider="pacemaker" type="Dummy">${meta}</primitive>`]);
      if (o.node !== undefined) {
        await exec(['cibadmin', '--create', '-o', 'constraints', '--xml-text', `<rsc_location id="${id}-prefers" rsc="${id}" node="${o.node}" score="100"/>`]);
      }
    },
    kill: async (node) => {
      const mnt = mnts.get(node);
      node.alive = false;
      if (mnt !== undefined) await killAllIn(mnt);
    },
  };
  // All nodes online under one DC.
  await waitFor(`a DC and ${count} nodes online`, (x) => /<current_dc present="true"/.test(x) && (x.match(/<node name="[^"]+" id="\d+" online="true"/g) ?? []).length === count);
  return cluster;
}

function nsOf(pid: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
  } catch {
    return undefined;
  }
}
