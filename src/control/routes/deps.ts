// What every route module receives from buildServer().

import type { JobRunner } from '../jobs.js';
import type { ControlServices } from '../services.js';

export interface RouteDeps {
  services: ControlServices;
  jobs: JobRunner;
}
