// Public surface of ui/: the dashboard (HTML pages under /ui/, their assets, and the /monitor
// alert links), served by the API server; the SVG builders are exported for tests and pages.
export { dashboardRoutes } from './routes.js';
export type { DashboardOptions } from './routes.js';
export { clientBundle } from './assets.js';
