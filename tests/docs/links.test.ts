// The README and docs/ are read by someone who cloned the repository and nothing else: every link
// they hold points to a file of the repository that exists, none leaves it (no ../shared, no web
// address), and the README links the three documents of docs/.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const DOCS = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** The targets of Markdown links and images, `[text](target)`, without any #fragment. */
function linkTargets(markdown: string): string[] {
  return [...markdown.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!);
}

describe('documentation links', () => {
  it('the README links docs/semantics.md, docs/architecture.md and docs/operations.md', () => {
    const targets = linkTargets(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    for (const doc of ['docs/semantics.md', 'docs/architecture.md', 'docs/operations.md']) expect(targets).toContain(doc);
  });

  for (const file of DOCS) {
    it(`${file}: every link is a file of this repository that exists`, () => {
      const text = readFileSync(join(ROOT, file), 'utf8');
      expect(text).not.toMatch(/\.\.\/shared|SEMANTICS\.md|ARCHITECTURE\.md/);
      const targets = linkTargets(text);
      if (file === 'README.md') expect(targets.length).toBeGreaterThan(5);
      for (const target of targets) {
        expect(target, `${file}: ${target}`).not.toMatch(/^[a-z][a-z0-9+.-]*:|^\/\/|^\//i);
        const path = target.split('#')[0]!;
        if (path === '') continue; // a link within the file
        const absolute = resolve(ROOT, dirname(file), decodeURIComponent(path));
        expect(relative(ROOT, absolute).startsWith('..'), `${file}: ${target} leaves the repository`).toBe(false);
        expect(existsSync(absolute), `${file}: ${target} does not exist`).toBe(true);
      }
    });
  }
});
