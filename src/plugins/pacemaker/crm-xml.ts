// Reading what Pacemaker's tools print: `crm_mon -1 --output-as=xml` (the cluster's live state,
// a `<pacemaker-result>` document) and `cibadmin --query --scope resources` (the configured
// resources, for the `vmvault-vm` attribute that ties a resource to a VM; crm_mon does not show
// attributes). Both are untrusted input: output of another program, on another host, relayed
// by an agent. Anything malformed or surprising is refused with PLUGIN_FAILED naming what was
// wrong, never half-read into a state that would steer a restore.
//
// Parsed with fast-xml-parser (validated for well-formedness first; it expands no external
// entities). Elements become { $: attributes, child: [elements] } (every child an array), so the
// walk below needs no guesses about which elements repeat.

import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { vmError } from '../../errors.js';
import type { HaClusterState, HaResourceState } from './ha-state.js';

/** The attribute that names the VM a resource runs (an instance or meta attribute). */
export const VM_ATTRIBUTE = 'vmvault-vm';

/** Biggest document accepted (a large cluster's crm_mon is some hundreds of KiB). */
export const MAX_XML_BYTES = 8 << 20;

/** Roles crm_mon reports (Pacemaker 2.1; Master/Slave are the pre-2.1 names). */
const ROLES = new Set(['Started', 'Stopped', 'Starting', 'Stopping', 'Promoted', 'Unpromoted', 'Master', 'Slave', 'Migrating', 'Unknown']);

interface El {
  $?: Record<string, string>;
  '#text'?: string;
  [child: string]: unknown;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributesGroupName: '$',
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  processEntities: true,
  htmlEntities: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  textNodeName: '#text',
  alwaysCreateTextNode: false,
  isArray: (_tag, _path, _leaf, isAttribute) => !isAttribute,
  maxNestedTags: 64,
});

function bad(what: string, message: string): never {
  throw vmError('PLUGIN_FAILED', `pacemaker: ${what}: ${message}`, { plugin: 'pacemaker' });
}

function parse(xml: unknown, what: string): Record<string, unknown> {
  if (typeof xml !== 'string') bad(what, 'the output is not text');
  if (Buffer.byteLength(xml) > MAX_XML_BYTES) bad(what, `the output is larger than ${MAX_XML_BYTES} bytes`);
  if (xml.trim() === '') bad(what, 'the output is empty');
  // Pacemaker never prints a DTD; one here could only declare entities to expand.
  if (/<!DOCTYPE|<!ENTITY/i.test(xml)) bad(what, 'the output declares a DOCTYPE or entities; refused');
  const ok = XMLValidator.validate(xml);
  if (ok !== true) bad(what, `the output is not well-formed XML (${ok.err.msg} at line ${ok.err.line})`);
  try {
    return parser.parse(xml) as Record<string, unknown>;
  } catch (err) {
    bad(what, `the output could not be parsed (${(err as Error).message})`);
  }
}

function children(el: El | undefined, tag: string): El[] {
  const v = el?.[tag];
  if (v === undefined) return [];
  if (!Array.isArray(v)) return [];
  // A text-only element parses as a string; give it the element shape.
  return v.map((c) => (typeof c === 'string' ? { '#text': c } : (c as El)));
}

function one(el: El | undefined, tag: string, what: string): El | undefined {
  const list = children(el, tag);
  if (list.length > 1) bad(what, `<${tag}> appears ${list.length} times, expected at most once`);
  return list[0];
}

function attr(el: El, name: string): string | undefined {
  const v = el.$?.[name];
  return typeof v === 'string' ? v : undefined;
}

function bool(el: El, name: string, what: string, dflt?: boolean): boolean {
  const v = attr(el, name);
  if (v === undefined) {
    if (dflt !== undefined) return dflt;
    bad(what, `attribute ${name} is missing`);
  }
  if (v === 'true') return true;
  if (v === 'false') return false;
  bad(what, `attribute ${name}="${v}" is neither true nor false`);
}

/** A name Pacemaker accepts as an XML ID (resource and node ids). */
export const ID_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$/;

function id(el: El, name: string, what: string): string {
  const v = attr(el, name);
  if (v === undefined || v === '') bad(what, `attribute ${name} is missing`);
  if (!ID_PATTERN.test(v)) bad(what, `${name}="${v.slice(0, 80)}" is not a name Pacemaker would give`);
  return v;
}

/**
 * `crm_mon -1 --output-as=xml` into the cluster's state. `vms` maps resource ids to the VM each
 * names (from `resourceVms` of the CIB's resources); resources absent from it have no `vm`.
 */
export function parseCrmMon(xml: string, vms: Map<string, string> = new Map()): HaClusterState {
  const what = 'crm_mon --output-as=xml';
  const doc = parse(xml, what);
  const roots = children(doc as El, 'pacemaker-result');
  if (roots.length !== 1 || Object.keys(doc).length !== 1) bad(what, 'the document is not one <pacemaker-result>');
  const root = roots[0];
  const status = one(root, 'status', what);
  if (status) {
    const code = attr(status, 'code');
    if (code !== undefined && code !== '0') {
      const errors = children(one(status, 'errors', what), 'error').map((e) => (e['#text'] ?? '').trim()).filter((s) => s !== '');
      throw vmError(
        'PLUGIN_FAILED',
        `pacemaker: crm_mon failed (${attr(status, 'message') ?? `code ${code}`})${errors.length ? `: ${errors.join('; ')}` : ''}`,
        { plugin: 'pacemaker', status: code },
      );
    }
  }
  const summary = one(root, 'summary', what);
  if (!summary) bad(what, 'there is no <summary>');
  const dcEl = one(summary, 'current_dc', what);
  if (!dcEl) bad(what, 'there is no <current_dc> in the summary');
  const dcPresent = bool(dcEl, 'present', `${what} <current_dc>`);
  const dc = dcPresent ? id(dcEl, 'name', `${what} <current_dc>`) : undefined;
  const quorate = dcPresent ? bool(dcEl, 'with_quorum', `${what} <current_dc>`) : false;

  const nodesEl = one(root, 'nodes', what);
  if (!nodesEl) bad(what, 'there is no <nodes>');
  const nodes: HaClusterState['nodes'] = [];
  const seenNodes = new Set<string>();
  for (const n of children(nodesEl, 'node')) {
    const name = id(n, 'name', `${what} <node>`);
    if (seenNodes.has(name)) bad(what, `node ${name} is listed twice`);
    seenNodes.add(name);
    nodes.push({ name, online: bool(n, 'online', `${what} node ${name}`) });
  }

  const resources: HaResourceState[] = [];
  const seen = new Set<string>();
  const walk = (parent: El | undefined, depth: number, inherited: { managed: boolean }): void => {
    if (depth > 8) bad(what, 'resources are nested deeper than 8 levels');
    for (const r of children(parent, 'resource')) {
      const rid = id(r, 'id', `${what} <resource>`);
      const w = `${what} resource ${rid}`;
      const role = attr(r, 'role');
      if (role === undefined || !ROLES.has(role)) bad(w, `role="${String(role).slice(0, 40)}" is not a role Pacemaker reports`);
      const agent = attr(r, 'resource_agent');
      if (agent === undefined || agent === '' || agent.length > 200) bad(w, 'resource_agent is missing');
      const targetRole = attr(r, 'target_role');
      if (targetRole !== undefined && !ROLES.has(targetRole)) bad(w, `target_role="${targetRole.slice(0, 40)}" is not a role`);
      const running = children(r, 'node').map((n) => id(n, 'name', `${w} <node>`));
      for (const n of running) if (!seenNodes.has(n)) bad(w, `it runs on node ${n}, which <nodes> does not list`);
      // A clone's instances share the primitive's id (with :N); one entry per instance.
      const key = `${rid}@${running.join(',')}`;
      if (seen.has(key)) bad(w, 'it is listed twice');
      seen.add(key);
      const baseId = rid.replace(/:\d+$/, '');
      const vm = vms.get(baseId);
      resources.push({
        resource: rid,
        ...(vm !== undefined ? { vm } : {}),
        agent,
        role: role === 'Master' ? 'Promoted' : role === 'Slave' ? 'Unpromoted' : role,
        ...(targetRole !== undefined ? { targetRole } : {}),
        managed: inherited.managed && bool(r, 'managed', w, true),
        failed: bool(r, 'failed', w, false),
        ...(running.length > 0 ? { node: running[0] } : {}),
      });
    }
    for (const tag of ['group', 'clone', 'bundle']) {
      for (const g of children(parent, tag)) {
        id(g, 'id', `${what} <${tag}>`);
        walk(g, depth + 1, { managed: inherited.managed && bool(g, 'managed', `${what} <${tag}>`, true) });
      }
    }
  };
  walk(one(root, 'resources', what), 0, { managed: true });

  // crm_mon names no cluster (corosync's cluster_name is not in its output): `cluster` stays unset.
  return { ...(dc !== undefined ? { dc } : {}), quorate, nodes, resources };
}

/**
 * `cibadmin --query --scope resources` into resource id -> VM, from each primitive's own
 * `vmvault-vm` instance or meta attribute. A tag on a group or clone is not inherited: the
 * appliance stops and starts one primitive per VM, so the tag goes on that primitive.
 */
export function resourceVms(xml: string): Map<string, string> {
  const what = 'cibadmin --query --scope resources';
  const doc = parse(xml, what);
  const roots = children(doc as El, 'resources');
  if (roots.length !== 1 || Object.keys(doc).length !== 1) bad(what, 'the document is not one <resources>');
  const out = new Map<string, string>();
  const vmOf = (el: El, w: string): string | undefined => {
    let found: string | undefined;
    for (const set of [...children(el, 'meta_attributes'), ...children(el, 'instance_attributes')]) {
      for (const nv of children(set, 'nvpair')) {
        if (attr(nv, 'name') !== VM_ATTRIBUTE) continue;
        const v = attr(nv, 'value');
        if (v === undefined || v === '' || v.length > 255 || /[\0/]/.test(v)) bad(w, `${VM_ATTRIBUTE}="${String(v).slice(0, 80)}" is not a VM name`);
        if (found !== undefined && found !== v) bad(w, `${VM_ATTRIBUTE} names two VMs (${found}, ${v})`);
        found = v;
      }
    }
    return found;
  };
  const walk = (parent: El, depth: number): void => {
    if (depth > 8) bad(what, 'resources are nested deeper than 8 levels');
    for (const p of children(parent, 'primitive')) {
      const rid = id(p, 'id', `${what} <primitive>`);
      const vm = vmOf(p, `${what} primitive ${rid}`);
      if (vm !== undefined) out.set(rid, vm);
    }
    for (const tag of ['group', 'clone', 'master', 'bundle']) {
      for (const g of children(parent, tag)) {
        id(g, 'id', `${what} <${tag}>`);
        walk(g, depth + 1);
      }
    }
  };
  walk(roots[0], 0);
  return out;
}

/**
 * The resource that runs a VM: the one whose `vmvault-vm` names it, else the one whose id is the
 * VM's name and which names no other VM. Two resources naming one VM is a configuration error.
 */
export function resourceOfVm(state: HaClusterState, vm: string): HaResourceState | undefined {
  const tagged = state.resources.filter((r) => r.vm === vm);
  const ids = new Set(tagged.map((r) => r.resource.replace(/:\d+$/, '')));
  if (ids.size > 1) {
    throw vmError('CONFLICT', `pacemaker: resources ${[...ids].join(', ')} all name VM ${vm} (${VM_ATTRIBUTE}); one VM is one resource`, { plugin: 'pacemaker', vm });
  }
  if (tagged.length > 0) return tagged[0];
  return state.resources.find((r) => r.resource === vm && r.vm === undefined);
}
