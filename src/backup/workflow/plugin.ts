// The workflow engine's view of plug-ins. The types live in plugins/plugin-api.ts so that a
// plug-in (a lower layer) can implement them without importing backup/.
export type { ActionName, ActionContext, Plugin, WorkflowTarget } from '../../plugins/plugin-api.js';
export { undoOf } from '../../plugins/plugin-api.js';
