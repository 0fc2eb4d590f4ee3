// The Pacemaker plug-in's reading of crm_mon and cibadmin XML, on documents captured from the
// real three-node cluster of test/helpers/pacemaker.ts (test/fixtures/pacemaker/: a tagged
// primitive, an untagged one stopped by target-role, an unmanaged one, a group and a clone), and
// on malformed and surprising documents, which must be refused with a clear PLUGIN_FAILED and
// never half-read.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isVmvaultError } from '../src/errors.js';
import { MAX_XML_BYTES, parseCrmMon, resourceOfVm, resourceVms } from '../src/plugins/pacemaker/crm-xml.js';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'pacemaker');
const read = (name: string): string => fs.readFileSync(path.join(fixtures, name), 'utf8');

t.test('a real three-node crm_mon and its CIB resources', async (t) => {
  const vms = resourceVms(read('cib-resources.xml'));
  t.same([...vms], [['res-web01', 'web01']], 'only the primitive tagged vmvault-vm names a VM (a group tag is not inherited)');
  const s = parseCrmMon(read('crm_mon-3nodes.xml'), vms);
  t.equal(s.dc, 'node1');
  t.equal(s.quorate, true);
  t.same(s.nodes, [
    { name: 'node1', online: true },
    { name: 'node2', online: true },
    { name: 'node3', online: true },
  ]);
  const web = s.resources.find((r) => r.resource === 'res-web01');
  t.same(web, { resource: 'res-web01', vm: 'web01', agent: 'ocf:pacemaker:Dummy', role: 'Started', managed: false, failed: false, node: 'node1' });
  const db = s.resources.find((r) => r.resource === 'db01');
  t.same(db, { resource: 'db01', agent: 'ocf:pacemaker:Dummy', role: 'Stopped', targetRole: 'Stopped', managed: true, failed: false }, 'stopped: no node');
  t.same(s.resources.filter((r) => r.resource.startsWith('app01-')).map((r) => `${r.resource}@${r.node}`), ['app01-ip@node2', 'app01-svc@node2'], 'group members');
  t.same(s.resources.filter((r) => r.resource === 'pingd').map((r) => r.node).sort(), ['node1', 'node2', 'node3'], 'one entry per clone instance');

  t.equal(resourceOfVm(s, 'web01')?.resource, 'res-web01', 'tied by vmvault-vm');
  t.equal(resourceOfVm(s, 'db01')?.resource, 'db01', 'else by id = VM name');
  t.equal(resourceOfVm(s, 'nosuch'), undefined, 'a VM with no resource');
  // A resource whose id is a VM's name but whose tag names another VM is that other VM's.
  const s2 = parseCrmMon(read('crm_mon-3nodes.xml'), new Map([['db01', 'web02']]));
  t.equal(resourceOfVm(s2, 'db01'), undefined);
  t.equal(resourceOfVm(s2, 'web02')?.resource, 'db01');
  // Two resources naming one VM is a configuration error, said as such.
  const s3 = parseCrmMon(read('crm_mon-3nodes.xml'), new Map([['db01', 'web01'], ['res-web01', 'web01']]));
  t.throws(() => resourceOfVm(s3, 'web01'), /resources db01, res-web01 all name VM web01|resources res-web01, db01 all name VM web01/);
});

t.test('crm_mon that could not reach the cluster says why', async (t) => {
  const err = (() => {
    try {
      parseCrmMon(read('crm_mon-not-connected.xml'));
    } catch (e) {
      return e;
    }
  })();
  t.ok(isVmvaultError(err, 'PLUGIN_FAILED'));
  t.match((err as Error).message, /crm_mon failed \(Not connected\): error: Could not connect to launcher: Connection refused; crm_mon: Connection to cluster failed/);
});

t.test('malformed and surprising XML is refused, clearly', async (t) => {
  const good = read('crm_mon-3nodes.xml');
  const cases: Array<[string, string, RegExp]> = [
    ['empty', '', /output is empty/],
    ['not XML', 'Segmentation fault\n', /not well-formed XML|not one <pacemaker-result>/],
    ['truncated', good.slice(0, good.length / 2), /not well-formed XML/],
    ['another root', '<cib><status/></cib>', /not one <pacemaker-result>/],
    ['two roots', '<pacemaker-result/><pacemaker-result/>', /not well-formed|not one <pacemaker-result>/],
    ['no summary', '<pacemaker-result><nodes/></pacemaker-result>', /no <summary>/],
    ['no nodes', good.replace(/<nodes>[\s\S]*?<\/nodes>/, ''), /no <nodes>/],
    ['a DTD with entities', `<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>${good}`, /DOCTYPE or entities; refused/],
    ['an unknown role', good.replace('role="Stopped" target_role', 'role="Exploded" target_role'), /role="Exploded" is not a role/],
    ['a bad boolean', good.replace('online="true"', 'online="yes"'), /online="yes" is neither true nor false/],
    ['a node id with a slash', good.replace('<node name="node3"', '<node name="../../etc"'), /is not a name Pacemaker would give/],
    ['a resource on an unlisted node', good.replace('<node name="node1" id="1" cached="true"/>', '<node name="node9" id="9" cached="true"/>'), /runs on node node9, which <nodes> does not list/],
    ['a node listed twice', good.replace(/(<node name="node1"[^>]*\/>)/, '$1$1'), /node node1 is listed twice/],
    ['a resource listed twice', good.replace(/(<resource id="db01"[^>]*\/>)/, '$1$1'), /listed twice/],
    ['two summaries', good.replace('<summary>', '<summary></summary><summary>'), /<summary> appears 2 times/],
    ['no agent', good.replace('id="db01" resource_agent="ocf:pacemaker:Dummy"', 'id="db01"'), /resource_agent is missing/],
    ['nested too deep', `<pacemaker-result><summary><current_dc present="false"/></summary><nodes/><resources>${'<group id="g">'.repeat(12)}${'</group>'.repeat(12)}</resources></pacemaker-result>`, /nested deeper than 8/],
    ['too big', `<pacemaker-result>${' '.repeat(MAX_XML_BYTES)}</pacemaker-result>`, /larger than/],
  ];
  for (const [name, xml, msg] of cases) {
    try {
      parseCrmMon(xml);
      t.fail(`${name}: accepted`);
    } catch (err) {
      t.ok(isVmvaultError(err, 'PLUGIN_FAILED'), `${name}: PLUGIN_FAILED (${(err as Error).message})`);
      t.match((err as Error).message, msg, name);
      t.match((err as Error).message, /^pacemaker: /, `${name}: names the plug-in`);
    }
  }
  const cibCases: Array<[string, string, RegExp]> = [
    ['another root', '<cib/>', /not one <resources>/],
    ['a VM name with a slash', '<resources><primitive id="a" class="ocf" type="Dummy"><meta_attributes id="m"><nvpair id="n" name="vmvault-vm" value="../x"/></meta_attributes></primitive></resources>', /is not a VM name/],
    ['two VMs on one primitive', '<resources><primitive id="a" class="ocf" type="Dummy"><meta_attributes id="m"><nvpair id="n" name="vmvault-vm" value="x"/></meta_attributes><instance_attributes id="i"><nvpair id="n2" name="vmvault-vm" value="y"/></instance_attributes></primitive></resources>', /names two VMs \(x, y\)/],
    ['a bad id', '<resources><primitive id="a b" class="ocf" type="Dummy"/></resources>', /is not a name Pacemaker would give/],
  ];
  for (const [name, xml, msg] of cibCases) {
    t.throws(() => resourceVms(xml), msg, name);
  }
  // An instance attribute ties as well as a meta attribute does.
  t.same([...resourceVms('<resources><primitive id="a" class="ocf" type="Dummy"><instance_attributes id="i"><nvpair id="n" name="vmvault-vm" value="vm7"/></instance_attributes></primitive></resources>')], [['a', 'vm7']]);
});
