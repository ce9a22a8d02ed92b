// Public surface of api/: the HTTP server, the CLI and the embedded quickstart.
export { buildServer } from './server.js';
export type { ServerOptions, HealthReport } from './server.js';
export { buildCli, main, summarizeRegistry } from './cli.js';
export { runQuickstart } from './quickstart.js';
export type { QuickstartOptions, QuickstartResult } from './quickstart.js';
