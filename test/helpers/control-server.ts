// A control-plane server over the in-memory test double, closed when the test ends.

import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { AgentPool } from '../../src/backup/agent-pool.js';
import { buildServer } from '../../src/control/server.js';
import { MemoryServices } from './memory-services.js';
import { tmpDir } from './tmpdir.js';

export const TOKEN = 'c0ffee'.repeat(10) + 'abcd';
export const AUTH = { authorization: `Bearer ${TOKEN}` };

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface TestServer {
  app: FastifyInstance;
  services: MemoryServices;
  /** An authenticated request; `body` is sent as JSON when given. */
  call(method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown): Promise<LightMyRequestResponse>;
}

export async function testServer(t: Teardown, opts: { bodyLimit?: number; agents?: AgentPool } = {}): Promise<TestServer> {
  const services = new MemoryServices();
  await services.openVms(tmpDir(t));
  const app = await buildServer(services, { token: TOKEN, bodyLimit: opts.bodyLimit, agents: opts.agents });
  t.teardown(() => app.close());
  return {
    app,
    services,
    call: (method, url, body) =>
      app.inject({
        method,
        url,
        headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
        payload: body === undefined ? undefined : JSON.stringify(body),
      }),
  };
}

/** Polls a job until it has ended. */
export async function waitForJob(s: TestServer, id: string, timeoutMs = 5000): Promise<Record<string, any>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const job = (await s.call('GET', `/api/v1/jobs/${id}`)).json();
    if (job.state !== 'queued' && job.state !== 'running') return job;
    if (Date.now() > until) throw new Error(`job ${id} still ${job.state} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
