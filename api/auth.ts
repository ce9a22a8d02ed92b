// Authentication with scopes for every HTTP server: bearer tokens from a JSON file of SHA-256
// hashes, checked by one onRequest hook against the scope each route declares in its config.
//
// A route declares `config: { scope }`; a route without one must be on OPEN_ROUTES, or the server
// refuses to start (so a new route cannot be left unprotected by accident). Tokens are stored
// hashed so the file is not itself a secret; the presented token is hashed and compared with every
// entry in constant time (crypto.timingSafeEqual over equal-length digests, no early exit).
// Optionally, bearer JWTs from an identity provider are verified with jose (issuer, audience and
// signature against a JWKS file or URL); their `scope` (or `scp`) claim grants the same scopes.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { TidemarkError, type ErrorCode } from '../definitions/index.js';

/** What a token may be granted. `admin` grants every scope. */
export type Scope = 'features:read' | 'datasets:read' | 'monitor:read' | 'metrics:read' | 'log:write' | 'admin' | `push:${string}`;

/** What a route declares: a fixed scope, or `push`, which needs push:<the :source param> (or push:*). */
export type RouteScope = Exclude<Scope, `push:${string}`> | 'push';

declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: RouteScope;
  }
  interface FastifyInstance {
    /** Every route (`METHOD url`) and the scope it needs, or which open kind it is. */
    routeScopes: ReadonlyMap<string, RouteScope | `open:${'health' | 'preflight' | 'docs'}`>;
  }
  interface FastifyRequest {
    /** Name of the token that authenticated the request; null when auth is off or the route is open. */
    tokenName: string | null;
  }
}

/**
 * Routes open without a token. `health` routes (probes and scrapes) need metrics:read under
 * --protect-metrics; `preflight` (CORS OPTIONS, which browsers send without credentials) never does.
 */
export const OPEN_ROUTES: Readonly<Record<string, 'health' | 'preflight'>> = {
  'GET /healthz': 'health',
  'GET /metrics': 'health',
  'OPTIONS *': 'preflight',
};

/** Open routes by kind, OPEN_ROUTES, the API description (GET /openapi.json and the /docs page with its assets) and the dashboard's assets. */
function openRoute(id: string): 'health' | 'preflight' | 'docs' | undefined {
  // The dashboard's scripts and stylesheets hold no data: open like the API reference's.
  return OPEN_ROUTES[id] ?? (id === 'GET /openapi.json' || id === 'GET /docs' || id.startsWith('GET /docs/') || id.startsWith('GET /ui/assets/') ? 'docs' : undefined);
}

const FIXED_SCOPES = ['features:read', 'datasets:read', 'monitor:read', 'metrics:read', 'log:write', 'admin'] as const;
const PUSH_SCOPE = /^push:(\*|[A-Za-z0-9_.-]+)$/;

const TokenEntry = z.strictObject({
  name: z.string().min(1).max(200),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, 'must be the hex SHA-256 of the token (64 hex digits), e.g. from: printf %s "$TOKEN" | sha256sum'),
  scopes: z
    .array(z.string().refine(isScope, { message: `must be one of ${FIXED_SCOPES.join(', ')}, push:<source> or push:*` }))
    .min(1),
});
const TokenFile = z.array(TokenEntry).min(1, 'lists no token: give at least one {"name", "sha256", "scopes"} entry');

export interface AuthToken {
  name: string;
  digest: Buffer;
  scopes: ReadonlySet<string>;
}

export interface JwtConfig {
  issuer: string;
  audience: string;
  /** The issuer's public keys (jose's local or remote JWKS). */
  keys: JWTVerifyGetKey;
}

export interface AuthConfig {
  tokens: readonly AuthToken[];
  /** /healthz and /metrics need metrics:read too. */
  protectMetrics: boolean;
  /** Also accept JWTs of this issuer. */
  jwt?: JwtConfig | null;
}

function badTokens(file: string, message: string, details: Record<string, unknown> = {}): TidemarkError {
  return new TidemarkError('TM_AUTH_BAD_CONFIG', `auth tokens ${file}: ${message}`, { file, ...details });
}

/** Parse the token file's JSON text; errors name the entry (index and name) and the field. */
export function parseAuthTokens(text: string, file = 'file'): AuthToken[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw badTokens(file, `not JSON: ${(e as Error).message}`);
  }
  const parsed = TokenFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const [index, ...rest] = issue.path;
    if (typeof index !== 'number') throw badTokens(file, issue.path.length === 0 && !Array.isArray(json) ? 'must be a JSON list of {"name", "sha256", "scopes"} entries' : issue.message);
    const entry = json as unknown[];
    const name = (entry[index] as { name?: unknown } | null)?.name;
    const field = rest.length === 0 ? (issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : 'entry') : rest.join('.');
    throw badTokens(file, `entry ${index}${typeof name === 'string' ? ` (${name})` : ''}, field ${field}: ${issue.message}`, { entry: index, name: typeof name === 'string' ? name : null, field });
  }
  const tokens = parsed.data.map((e) => ({ name: e.name, digest: Buffer.from(e.sha256, 'hex'), scopes: new Set(e.scopes) }));
  tokens.forEach((t, i) => {
    const j = tokens.findIndex((u) => u.name === t.name || u.digest.equals(t.digest));
    if (j !== i) throw badTokens(file, `entry ${i} (${t.name}) repeats the ${tokens[j]!.name === t.name ? 'name' : 'sha256'} of entry ${j}: names and tokens must be unique`, { entry: i, name: t.name, field: tokens[j]!.name === t.name ? 'name' : 'sha256' });
  });
  return tokens;
}

export function loadAuthTokens(file: string): AuthToken[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw badTokens(file, `cannot read: ${(e as Error).message}`);
  }
  return parseAuthTokens(text, file);
}

export interface AuthFlags {
  authTokens?: string;
  protectMetrics?: boolean;
  jwtIssuer?: string;
  jwtAudience?: string;
  /** A JWKS file, or an http(s) URL to fetch it from. */
  jwtJwks?: string;
}

/** The JWKS of --jwt-jwks: fetched (and cached, refetched on an unknown key id) from a URL, or read once from a file. */
function jwksFrom(source: string): JWTVerifyGetKey {
  if (/^https?:\/\//.test(source)) return createRemoteJWKSet(new URL(source));
  let jwks: JSONWebKeySet;
  try {
    jwks = JSON.parse(readFileSync(source, 'utf8')) as JSONWebKeySet;
  } catch (e) {
    throw new TidemarkError('TM_AUTH_BAD_CONFIG', `--jwt-jwks ${source}: cannot read a JSON key set: ${(e as Error).message}`, { field: 'jwtJwks', file: source });
  }
  if (!Array.isArray(jwks?.keys)) throw new TidemarkError('TM_AUTH_BAD_CONFIG', `--jwt-jwks ${source}: not a JWKS (no "keys" list)`, { field: 'jwtJwks', file: source });
  return createLocalJWKSet(jwks);
}

/** The auth settings of a command, from --auth-tokens (or TIDEMARK_AUTH_TOKENS), the --jwt-* flags and --protect-metrics. */
export function authConfigFrom(opts: AuthFlags): AuthConfig | null {
  const jwtFlags = { jwtIssuer: '--jwt-issuer', jwtAudience: '--jwt-audience', jwtJwks: '--jwt-jwks' } as const;
  const given = (Object.keys(jwtFlags) as (keyof typeof jwtFlags)[]).filter((k) => opts[k] !== undefined && opts[k] !== '');
  if (given.length > 0 && given.length < 3) {
    const missing = (Object.keys(jwtFlags) as (keyof typeof jwtFlags)[]).filter((k) => !given.includes(k)).map((k) => jwtFlags[k]);
    throw new TidemarkError('TM_AUTH_BAD_CONFIG', `JWT verification needs --jwt-issuer, --jwt-audience and --jwt-jwks together: give ${missing.join(' and ')} too`, { field: 'jwt', missing });
  }
  const jwt = given.length === 3 ? { issuer: opts.jwtIssuer!, audience: opts.jwtAudience!, keys: jwksFrom(opts.jwtJwks!) } : null;
  const hasTokens = opts.authTokens !== undefined && opts.authTokens !== '';
  if (!hasTokens && !jwt) {
    if (opts.protectMetrics) throw new TidemarkError('TM_AUTH_BAD_CONFIG', '--protect-metrics needs tokens: give --auth-tokens <file> or TIDEMARK_AUTH_TOKENS (or the --jwt-* flags)', { field: 'protectMetrics' });
    return null;
  }
  return { tokens: hasTokens ? loadAuthTokens(opts.authTokens!) : [], protectMetrics: opts.protectMetrics === true, jwt };
}

function isScope(s: string): s is Scope {
  return (FIXED_SCOPES as readonly string[]).includes(s) || PUSH_SCOPE.test(s);
}

/**
 * The caller a JWT names (`jwt:<sub>`) with the scopes of its `scope` claim (space-separated, as
 * OAuth 2 has it) or `scp` (a list or a string); other scope names are ignored. Otherwise why it
 * is not valid (jose's code and message).
 */
export async function verifyJwt(jwt: JwtConfig, presented: string): Promise<{ token: AuthToken } | { reason: string }> {
  try {
    const { payload } = await jwtVerify(presented, jwt.keys, { issuer: jwt.issuer, audience: jwt.audience });
    const claim = payload.scope ?? payload.scp;
    const names = typeof claim === 'string' ? claim.split(' ') : Array.isArray(claim) ? claim.filter((c): c is string => typeof c === 'string') : [];
    return { token: { name: `jwt:${payload.sub ?? '(no sub)'}`, digest: Buffer.alloc(0), scopes: new Set(names.filter(isScope)) } };
  } catch (e) {
    return { reason: e instanceof joseErrors.JOSEError ? `${e.code}: ${e.message}` : 'not a JWT' };
  }
}

/** A compact JWS has three base64url parts. */
function looksLikeJwt(presented: string): boolean {
  return /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(presented);
}

/** The token whose hash equals the presented token's; every entry is compared, in constant time. */
export function findToken(tokens: readonly AuthToken[], presented: string): AuthToken | null {
  const digest = createHash('sha256').update(presented, 'utf8').digest();
  let found: AuthToken | null = null;
  for (const t of tokens) if (timingSafeEqual(digest, t.digest) && found === null) found = t;
  return found;
}

export function grants(token: AuthToken, needed: Scope): boolean {
  if (token.scopes.has('admin') || token.scopes.has(needed)) return true;
  return needed.startsWith('push:') && token.scopes.has('push:*');
}

/** The scope a request needs, or null when it is open. */
function scopeNeeded(request: FastifyRequest, auth: AuthConfig): Scope | null {
  if (request.is404) return null; // unknown routes answer 404 whoever asks
  const declared = request.routeOptions.config.scope;
  if (declared === 'push') return `push:${(request.params as { source?: string }).source ?? ''}`;
  if (declared !== undefined) return declared;
  const open = openRoute(routeId(request.method, request.routeOptions.url ?? ''));
  return open === 'health' && auth.protectMetrics ? 'metrics:read' : null;
}

/** The OPEN_ROUTES key of a route: HEAD routes are fastify's copies of GET routes. */
function routeId(method: string, url: string): string {
  return `${method === 'HEAD' ? 'GET' : method} ${url}`;
}

function bearerToken(header: string | undefined): string | null {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  return match ? match[1]! : null;
}

/**
 * Refuse routes that declare no scope and are not open, and record every route's scope in
 * `app.routeScopes` (the route test and the fuzzer read it). Call before any route is added:
 * onRoute hooks see only the routes added after them.
 */
export function declareRouteScopes(app: FastifyInstance): void {
  const scopes = new Map<string, RouteScope | `open:${'health' | 'preflight' | 'docs'}`>();
  app.decorate('routeScopes', scopes);
  app.decorateRequest('tokenName', null);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      const id = routeId(method, route.url);
      const open = openRoute(id);
      const scope = route.config?.scope;
      if (scope === undefined && open === undefined) {
        throw new Error(`route ${id} declares no scope: give it config: { scope: ... } (api/auth.ts) or add it to OPEN_ROUTES`);
      }
      scopes.set(`${method} ${route.url}`, scope ?? `open:${open!}`);
    }
  });
}

/**
 * Require a token with the route's scope on every request (when `auth` is given). Add it after
 * the CORS plugin, so that refusals still carry the CORS headers a browser needs to read them.
 */
export function requireTokens(app: FastifyInstance, auth: AuthConfig | null): void {
  if (!auth) return;
  // The hook answers refusals itself (rather than throwing) so that it works on any fastify app,
  // the materializer's included, whatever its error handler.
  app.addHook('onRequest', async (request, reply) => {
    const needed = scopeNeeded(request, auth);
    if (needed === null) return;
    const presented = bearerToken(request.headers.authorization);
    let token = presented === null ? null : findToken(auth.tokens, presented);
    let jwtReason: string | null = null;
    if (!token && presented !== null && auth.jwt && looksLikeJwt(presented)) {
      const verified = await verifyJwt(auth.jwt, presented);
      if ('token' in verified) token = verified.token;
      else jwtReason = verified.reason;
    }
    if (!token) {
      const message =
        presented === null
          ? `this route needs a token with scope ${needed}: send Authorization: Bearer <token>`
          : jwtReason !== null
            ? `the bearer JWT is not valid (${jwtReason})`
            : 'the bearer token is not one of the configured tokens';
      return reply.status(401).header('www-authenticate', 'Bearer').send({ statusCode: 401, error: 'Unauthorized', code: 'TM_AUTH_REQUIRED' satisfies ErrorCode, message, scope: needed });
    }
    if (!grants(token, needed)) {
      const message = `token ${token.name} lacks scope ${needed}, which ${request.method} ${request.routeOptions.url} needs`;
      return reply.status(403).send({ statusCode: 403, error: 'Forbidden', code: 'TM_AUTH_FORBIDDEN' satisfies ErrorCode, message, scope: needed, token: token.name });
    }
    request.tokenName = token.name;
  });
}

/** Both steps, for a server without CORS (the materializer's). */
export function installAuth(app: FastifyInstance, auth: AuthConfig | null): void {
  declareRouteScopes(app);
  requireTokens(app, auth);
}

/** A start-up warning for a server that anyone on the network can use, or null. */
export function openServerWarning(host: string, auth: AuthConfig | null): string | null {
  if (auth) return null;
  const loopback = host === 'localhost' || host === '::1' || /^127\./.test(host) || host === '::ffff:127.0.0.1';
  return loopback ? null : `warning: serving on ${host} without --auth-tokens: anyone who can reach this port can read features and datasets and push events; see README "Security"`;
}
