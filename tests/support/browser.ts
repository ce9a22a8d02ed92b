// A real browser for the dashboard tests: Debian's chromium driven by playwright-core (no browser
// download). `npm test`'s pretest installs chromium; without it these tests fail with the install
// command, never skip. Every page is opened with a route guard that aborts any request leaving the
// loopback origin and records it, so a test can prove the dashboard needs nothing from outside.
import { chromium, type Browser, type Page } from 'playwright-core';
import { requireExecutable } from './services.js';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!process.env.CHROMIUM_PATH) requireExecutable('chromium', 'chromium', 'set CHROMIUM_PATH to a Chromium or Chrome binary');
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    // --no-sandbox: these machines run the suite as root, where Chromium's sandbox refuses to start.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

export interface GuardedPage {
  page: Page;
  /** URLs the page tried to load from another origin (aborted). */
  outside: string[];
  /** Uncaught page errors and console errors. */
  errors: string[];
  close(): Promise<void>;
}

/** A page whose requests may only go to `origin`; everything else is aborted and recorded. */
export async function guardedPage(browser: Browser, origin: string): Promise<GuardedPage> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const outside: string[] = [];
  const errors: string[] = [];
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`) || url === origin || url.startsWith('data:')) return route.continue();
    outside.push(url);
    return route.abort();
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return { page, outside, errors, close: () => context.close() };
}
