// What every route module receives from buildServer().

import type { AgentPool } from '../../backup/agent-pool.js';
import type { PolicyService } from '../../policy/policy-service.js';
import type { GroupControl } from '../group-types.js';
import type { JobRunner } from '../jobs.js';
import type { ControlServices } from '../services.js';

export interface RouteDeps {
  services: ControlServices;
  jobs: JobRunner;
  /** The external agents (issue 12); absent: the agent routes answer NOT_SUPPORTED. */
  agents?: AgentPool;
  /** Protection policies (issue 14); absent, their routes answer NOT_SUPPORTED. */
  policies?: PolicyService;
  /** VM groups (issue 13); absent, their routes answer NOT_SUPPORTED. */
  groups?: GroupControl;
}
