// The words an API client (and so the CLI) gets for a request the schemas refuse: our own,
// naming the field and what it must be, never AJV's ("body/name must NOT have fewer than 1
// characters"). control-bad-input.test.ts sends every bad input to every route and checks no
// answer carries the validator's words; this file pins the exact sentences.

import t from 'tap';
import { AUTH, testServer } from './helpers/control-server.js';

t.test('schema failures in our words, on every kind of route', async (t) => {
  const s = await testServer(t);
  await s.call('POST', '/api/v1/shares', { name: 'vms' });
  const send = async (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: string) => {
    const headers: Record<string, string> = { ...AUTH };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const res = await s.app.inject({ method, url, headers, payload });
    return { status: res.statusCode, error: (res.json() as { error: { code: string; message: string } }).error };
  };
  const cases: Array<[string, 'GET' | 'POST' | 'DELETE', string, string | undefined, string]> = [
    ['empty share name', 'POST', '/api/v1/shares', '{"name":""}', 'the share name must not be empty'],
    ['job id that is not one', 'GET', '/api/v1/jobs/nosuch', undefined, '"nosuch" is not a job id: job ids are 12 hex digits (vmvault jobs lists them)'],
    ['cancel with a bad id', 'DELETE', '/api/v1/jobs/xyz', undefined, '"xyz" is not a job id: job ids are 12 hex digits (vmvault jobs lists them)'],
    ['missing field', 'POST', '/api/v1/shares', '{}', 'the request body needs "name" (the share name)'],
    ['wrong type', 'POST', '/api/v1/shares', '{"name":5}', 'the share name must be a string, not number 5'],
    ['array body', 'POST', '/api/v1/shares', '[]', 'the request body must be a JSON object, not an array'],
    ['null body', 'POST', '/api/v1/shares/vms/snapshots', 'null', 'the request body must be a JSON object, not null'],
    ['unknown field', 'POST', '/api/v1/shares', '{"name":"a","nmae":"b"}', 'the request body has an unknown field "nmae"; it takes "name"'],
    ['bad JSON', 'POST', '/api/v1/shares', '{"name": ', 'the request body is not valid JSON'],
    ['empty JSON body', 'POST', '/api/v1/shares', '', 'the request says its body is JSON but sends none: send a JSON object, or no Content-Type'],
    ['empty snapshot name', 'POST', '/api/v1/shares/vms/snapshots', '{"name":""}', 'the snapshot name must not be empty'],
    ['empty clone name', 'POST', '/api/v1/shares/vms/snapshots/s/clone', '{"name":""}', 'the new share name must not be empty'],
    ['fastcopy without a target', 'POST', '/api/v1/shares/vms/fastcopy', '{"from":"a"}', 'the request body needs "to" (the target path)'],
    ['fastcopy empty source', 'POST', '/api/v1/shares/vms/fastcopy', '{"from":"","to":"b"}', 'the source path must not be empty'],
    ['verify full as a string', 'POST', '/api/v1/verify', '{"full":"yes"}', 'the full flag must be a boolean (true or false), not the string "yes"'],
    ['verify empty share', 'POST', '/api/v1/verify', '{"share":""}', 'the share name must not be empty'],
    ['gc with options', 'POST', '/api/v1/gc', '{"now":true}', 'the request body has an unknown field "now"; it takes no fields'],
    ['index rebuild with options', 'POST', '/api/v1/index/rebuild', '{"x":1}', 'the request body has an unknown field "x"; it takes no fields'],
    ['force not a boolean word', 'DELETE', '/api/v1/shares/vms?force=yes', undefined, 'the force parameter must be "true" or "false", not "yes"'],
    ['misspelt query parameter', 'DELETE', '/api/v1/shares/vms?forse=true', undefined, 'unknown query parameter "forse"; this route takes "force", "deleteSnapshots"'],
    ['query parameter where none is taken', 'GET', '/api/v1/stats?verbose=1', undefined, 'unknown query parameter "verbose"; this route takes none'],
  ];
  for (const [label, method, url, payload, message] of cases) {
    const r = await send(method, url, payload);
    t.same([r.status, r.error.code, r.error.message], [400, 'INVALID_ARGUMENT', message], label);
  }
  const long = await send('POST', '/api/v1/shares/vms/snapshots', JSON.stringify({ name: 5, extra: 'x'.repeat(1000) }));
  t.ok(long.error.message.length < 200, `a long value is not echoed whole: ${long.error.message.length} chars`);
});
