// A strict parser for the XML the SVG builders write (no XML parser is installed): elements,
// quoted attributes, text and the five entities plus character references. It rejects what a
// real XML parser rejects in that subset (unbalanced or crossed tags, a bare & or <, duplicate
// attributes, characters XML forbids, content after the root) and, beyond that, any comment,
// CDATA, DOCTYPE or processing instruction, which the builders never write.

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** The element's own text (not its descendants'), entities decoded. */
  text: string;
}

const NAME = /[A-Za-z_][A-Za-z0-9_.:-]*/y;
const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const FORBIDDEN_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function decode(raw: string, at: number): string {
  return raw.replace(/&([^;]*);|&/g, (whole, body: string | undefined) => {
    if (body === undefined) throw new Error(`bare & near offset ${at}`);
    if (body in NAMED) return NAMED[body]!;
    const m = /^#(?:x([0-9a-fA-F]+)|([0-9]+))$/.exec(body);
    if (!m) throw new Error(`unknown entity ${whole} near offset ${at}`);
    const code = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2]!, 10);
    if (code === 0 || code > 0x10ffff) throw new Error(`bad character reference ${whole}`);
    return String.fromCodePoint(code);
  });
}

export function parseXml(source: string): XmlElement {
  const bad = FORBIDDEN_CHAR.exec(source);
  if (bad) throw new Error(`character U+${bad[0].charCodeAt(0).toString(16)} is not allowed in XML (offset ${bad.index})`);
  let i = 0;
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  const name = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(source);
    if (!m) throw new Error(`expected a name at offset ${i}: ${JSON.stringify(source.slice(i, i + 20))}`);
    i += m[0].length;
    return m[0];
  };
  const skipSpace = (): number => {
    const start = i;
    while (i < source.length && /\s/.test(source[i]!)) i++;
    return i - start;
  };
  while (i < source.length) {
    if (source[i] !== '<') {
      const end = source.indexOf('<', i);
      const raw = source.slice(i, end === -1 ? source.length : end);
      const parent = stack.at(-1);
      if (!parent) {
        if (raw.trim() !== '') throw new Error(`text outside the root element at offset ${i}`);
      } else {
        parent.text += decode(raw, i);
      }
      i = end === -1 ? source.length : end;
      continue;
    }
    if (source[i + 1] === '!' || source[i + 1] === '?') throw new Error(`unexpected markup ${JSON.stringify(source.slice(i, i + 12))} at offset ${i}`);
    if (source[i + 1] === '/') {
      i += 2;
      const closing = name();
      skipSpace();
      if (source[i] !== '>') throw new Error(`expected > after </${closing} at offset ${i}`);
      i++;
      const open = stack.pop();
      if (!open || open.name !== closing) throw new Error(`</${closing}> closes ${open ? `<${open.name}>` : 'nothing'}`);
      continue;
    }
    if (root !== null && stack.length === 0) throw new Error(`a second root element at offset ${i}`);
    i++;
    const element: XmlElement = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      const spaced = skipSpace() > 0;
      if (source.startsWith('/>', i) || source[i] === '>') break;
      if (!spaced) throw new Error(`expected whitespace before an attribute at offset ${i}`);
      const attr = name();
      if (source[i] !== '=') throw new Error(`attribute ${attr} without a value at offset ${i}`);
      const quote = source[i + 1];
      if (quote !== '"' && quote !== "'") throw new Error(`attribute ${attr} value is not quoted at offset ${i}`);
      const end = source.indexOf(quote, i + 2);
      if (end === -1) throw new Error(`attribute ${attr} value never ends`);
      const raw = source.slice(i + 2, end);
      if (raw.includes('<')) throw new Error(`< inside the value of ${attr}`);
      if (attr in element.attrs) throw new Error(`duplicate attribute ${attr} on <${element.name}>`);
      element.attrs[attr] = decode(raw, i);
      i = end + 1;
    }
    const parent = stack.at(-1);
    if (parent) parent.children.push(element);
    else root = element;
    if (source.startsWith('/>', i)) {
      i += 2;
    } else {
      i += 1;
      stack.push(element);
    }
  }
  if (stack.length > 0) throw new Error(`<${stack.at(-1)!.name}> is never closed`);
  if (!root) throw new Error('no root element');
  return root;
}

/** Every element below (and including) `node`, in document order. */
export function descendants(node: XmlElement): XmlElement[] {
  return [node, ...node.children.flatMap(descendants)];
}

export function classes(node: XmlElement): string[] {
  return (node.attrs.class ?? '').split(/\s+/).filter((c) => c !== '');
}

/** The elements carrying every one of the given classes. */
export function withClass(node: XmlElement, ...wanted: string[]): XmlElement[] {
  return descendants(node).filter((e) => wanted.every((c) => classes(e).includes(c)));
}

/** All text below a node, decoded. */
export function allText(node: XmlElement): string {
  return node.text + node.children.map(allText).join('');
}
