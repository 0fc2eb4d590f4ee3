// What every route module receives from buildServer().

import type { PolicyService } from '../../policy/policy-service.js';
import type { JobRunner } from '../jobs.js';
import type { ControlServices } from '../services.js';

export interface RouteDeps {
  services: ControlServices;
  jobs: JobRunner;
  /** Protection policies (issue 14); absent, their routes answer NOT_SUPPORTED. */
  policies?: PolicyService;
}
