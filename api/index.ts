// Public surface of api/: the HTTP server, the CLI and the embedded quickstart.
export { buildServer } from './server.js';
export type { ServerOptions, HealthReport } from './server.js';
export { buildCli, main, summarizeRegistry } from './cli.js';
export { runQuickstart } from './quickstart.js';
export type { QuickstartOptions, QuickstartResult } from './quickstart.js';
export type { QuickstartMonitorResult } from './quickstart-monitor.js';
export { authConfigFrom, loadAuthTokens, parseAuthTokens, OPEN_ROUTES } from './auth.js';
export type { AuthConfig, AuthFlags, AuthToken, JwtConfig, RouteScope, Scope } from './auth.js';
export { DEFAULT_LIMITS, LIMIT_FLAGS } from './limits.js';
export type { ApiLimits } from './limits.js';
