// The dashboard's static assets, all served by tidemark itself (no CDN): the browser code bundled
// with esbuild from ui/client when first asked for (then kept in memory), its stylesheet, and
// uPlot's stylesheet from node_modules.
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const CLIENT_DIR = fileURLToPath(new URL('./client/', import.meta.url));

export interface Asset {
  contentType: string;
  body: string;
}

let bundle: Promise<Asset> | null = null;

/** ui/client/app.ts and uPlot as one minified ES module. */
export function clientBundle(): Promise<Asset> {
  bundle ??= build({
    entryPoints: [`${CLIENT_DIR}app.ts`],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2022',
    write: false,
    legalComments: 'none',
    tsconfig: `${CLIENT_DIR}tsconfig.json`,
    logLevel: 'silent',
  }).then(
    (result) => ({ contentType: 'text/javascript; charset=utf-8', body: result.outputFiles[0]!.text }),
    (e: unknown) => {
      bundle = null;
      throw e;
    },
  );
  return bundle;
}

/** The stylesheets served under /ui/assets/. */
export const STYLESHEETS = ['app.css', 'uPlot.min.css'] as const;

let styles: Record<string, Asset> | null = null;

/** app.css and uPlot.min.css by name. */
export function stylesheet(name: string): Asset | undefined {
  if (styles === null) {
    const require = createRequire(import.meta.url);
    styles = {
      'app.css': { contentType: 'text/css; charset=utf-8', body: readFileSync(`${CLIENT_DIR}app.css`, 'utf8') },
      'uPlot.min.css': { contentType: 'text/css; charset=utf-8', body: readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8') },
    };
  }
  return styles[name];
}
