import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { unauthorized } from './errors.js';
import { slugid } from './ids.js';

/** A scope expression: a scope, or `{AllOf: [...]}` / `{AnyOf: [...]}`. */
export type ScopeExpr = string | { AllOf: ScopeExpr[] } | { AnyOf: ScopeExpr[] };

export interface Credentials {
  clientId: string;
  accessToken: string;
  certificate?: string;
}

export interface StaticClient {
  clientId: string;
  accessToken: string;
  scopes: string[];
}

/** Does one held scope satisfy one required scope (equal, or a `*`-suffixed prefix)? */
export function scopeMatch(held: string, required: string): boolean {
  if (held === required) return true;
  return held.endsWith('*') && required.startsWith(held.slice(0, -1));
}

export function hasScope(scopes: readonly string[], required: string): boolean {
  return scopes.some((s) => scopeMatch(s, required));
}

export function satisfies(scopes: readonly string[], expr: ScopeExpr): boolean {
  if (typeof expr === 'string') return hasScope(scopes, expr);
  if ('AllOf' in expr) return expr.AllOf.every((e) => satisfies(scopes, e));
  return expr.AnyOf.some((e) => satisfies(scopes, e));
}

/** The smallest unsatisfied part of an expression, for error messages. */
export function unsatisfied(scopes: readonly string[], expr: ScopeExpr): ScopeExpr | undefined {
  if (satisfies(scopes, expr)) return undefined;
  if (typeof expr === 'string') return expr;
  if ('AllOf' in expr) {
    const missing = expr.AllOf.filter((e) => !satisfies(scopes, e)).map((e) => unsatisfied(scopes, e)!);
    return missing.length === 1 ? missing[0] : { AllOf: missing };
  }
  return expr;
}

export function formatExpr(expr: ScopeExpr): string {
  return typeof expr === 'string' ? expr : JSON.stringify(expr);
}

/**
 * Expands `assume:<roleId>` scopes through roles, like the auth service: a role whose id ends in `*` is granted to
 * every `assume:` scope that it matches, and `<..>` in its scopes is replaced by the part the `*` matched.
 */
export function expandScopes(
  scopes: readonly string[],
  roles: ReadonlyMap<string, readonly string[]>,
): string[] {
  if (roles.size === 0) return [...scopes];
  const result = new Set(scopes);
  const queue = [...scopes];
  for (let guard = 0; queue.length > 0 && guard < 10_000; guard++) {
    const scope = queue.shift()!;
    if (!scope.startsWith('assume:') && scope !== '*' && !'assume:'.startsWith(scope.slice(0, -1))) continue;
    for (const [roleId, roleScopes] of roles) {
      let param: string | undefined;
      if (roleId.endsWith('*')) {
        const prefix = `assume:${roleId.slice(0, -1)}`;
        if (
          scope.endsWith('*') &&
          (prefix.startsWith(scope.slice(0, -1)) || scope.slice(0, -1).startsWith(prefix))
        ) {
          param = scope.slice(0, -1).startsWith(prefix) ? `${scope.slice(prefix.length, -1)}*` : '*';
        } else if (!scope.endsWith('*') && scope.startsWith(prefix)) {
          param = scope.slice(prefix.length);
        } else continue;
      } else if (!scopeMatch(scope, `assume:${roleId}`)) continue;
      for (const rs of roleScopes) {
        const granted = param !== undefined && rs.includes('<..>') ? rs.replace('<..>', param) : rs;
        if (!result.has(granted)) {
          result.add(granted);
          queue.push(granted);
        }
      }
    }
  }
  return [...result];
}

function hmacB64(key: string, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64');
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

export interface Certificate {
  version: number;
  scopes: string[];
  start: number;
  expiry: number;
  seed: string;
  signature: string;
  issuer?: string;
}

/** Same algorithm as taskcluster-client's createTemporaryCredentials (§4 of the protocol reference). */
export function createTemporaryCredentials(options: {
  clientId?: string;
  start: Date;
  expiry: Date;
  scopes: string[];
  credentials: { clientId: string; accessToken: string };
}): Required<Credentials> {
  const named = options.clientId !== undefined && options.clientId !== options.credentials.clientId;
  const cert: Certificate = {
    version: 1,
    scopes: [...options.scopes],
    start: options.start.getTime(),
    expiry: options.expiry.getTime(),
    seed: slugid() + slugid(),
    signature: '',
  };
  if (named) cert.issuer = options.credentials.clientId;
  cert.signature = certificateSignature(
    options.credentials.accessToken,
    cert,
    named ? options.clientId : undefined,
  );
  return {
    clientId: named ? options.clientId! : options.credentials.clientId,
    accessToken: temporaryAccessToken(options.credentials.accessToken, cert.seed),
    certificate: JSON.stringify(cert),
  };
}

function certificateSignature(issuerToken: string, cert: Certificate, name: string | undefined): string {
  const lines = [`version:${cert.version}`];
  if (name !== undefined) lines.push(`clientId:${name}`, `issuer:${cert.issuer}`);
  lines.push(`seed:${cert.seed}`, `start:${cert.start}`, `expiry:${cert.expiry}`, 'scopes:');
  return hmacB64(issuerToken, lines.join('\n') + '\n' + cert.scopes.join('\n'));
}

function temporaryAccessToken(issuerToken: string, seed: string): string {
  return createHmac('sha256', issuerToken).update(seed).digest('base64url');
}

interface HawkAttributes {
  id: string;
  ts: string;
  nonce: string;
  mac: string;
  ext?: string;
  hash?: string;
}

function parseHawkHeader(header: string): HawkAttributes {
  const m = /^\s*Hawk\s+(.*)$/i.exec(header);
  if (!m) throw unauthorized('Authorization header is not a Hawk header');
  const attrs: Record<string, string> = {};
  const re = /(\w+)="([^"\\]*)"\s*(?:,\s*|$)/g;
  const rest = m[1] ?? '';
  let consumed = 0;
  for (let a = re.exec(rest); a; a = re.exec(rest)) {
    if (a.index !== consumed) throw unauthorized('Bad Hawk header syntax');
    attrs[a[1]!] = a[2]!;
    consumed = re.lastIndex;
  }
  if (consumed !== rest.length) throw unauthorized('Bad Hawk header syntax');
  for (const k of ['id', 'ts', 'nonce', 'mac'] as const) {
    if (!attrs[k]) throw unauthorized(`Hawk header lacks the ${k} attribute`);
  }
  return attrs as unknown as HawkAttributes;
}

function hawkMac(
  key: string,
  a: { ts: string; nonce: string; method: string; resource: string; host: string; port: string },
  hash: string | undefined,
  ext: string | undefined,
  type = 'header',
): string {
  let normalized =
    `hawk.1.${type}\n${a.ts}\n${a.nonce}\n${a.method.toUpperCase()}\n${a.resource}\n` +
    `${a.host.toLowerCase()}\n${a.port}\n${hash ?? ''}\n`;
  if (ext) normalized += ext.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  normalized += '\n';
  return hmacB64(key, normalized);
}

/** A certificate whose signature and scopes were checked, by client lookup (one per queue), by clientId + text. */
interface VerifiedCertificate {
  issuerId: string;
  /** the issuer's client as it was checked: another object (a changed or removed client) means check again */
  issuer: StaticClient;
  key: string;
  scopes: string[];
  start: number;
  expiry: number;
}
const verifiedCertificates = new WeakMap<object, Map<string, VerifiedCertificate>>();
const VERIFIED_CACHE_SIZE = 1024;

function checkValidity(cert: { start: number; expiry: number }, now: number): void {
  if (cert.start > now + CERT_GRACE_MS) throw unauthorized('ext.certificate.start > now');
  if (cert.expiry < now - CERT_GRACE_MS) throw unauthorized('ext.certificate.expiry < now');
}

/**
 * The key (access token) and scopes of a caller: a static client's, or those of temporary credentials whose
 * certificate is checked like the auth service does (signature, issuer, validity, the issuer's scopes).
 */
function clientKey(
  clientId: string,
  certificate: Certificate | string | undefined,
  lookupClient: (clientId: string) => StaticClient | undefined,
  now: number,
  expand: (scopes: readonly string[]) => string[],
): { key: string; scopes: string[] } {
  let key: string;
  let scopes: string[];
  if (typeof certificate === 'string') {
    // the same temporary credentials come with every call of a task run: check the signature once, then only
    // the validity window (and that the issuer is still the same client)
    const cached = verifiedCertificates.get(lookupClient)?.get(`${clientId}\n${certificate}`);
    if (cached && lookupClient(cached.issuerId) === cached.issuer) {
      checkValidity(cached, now);
      return { key: cached.key, scopes: cached.scopes };
    }
  }
  if (certificate !== undefined) {
    let cert = certificate;
    if (typeof cert === 'string') {
      try {
        cert = JSON.parse(cert) as Certificate;
      } catch {
        throw unauthorized('ext.certificate is not valid JSON');
      }
    }
    if (
      typeof cert !== 'object' ||
      cert === null ||
      cert.version !== 1 ||
      !Array.isArray(cert.scopes) ||
      typeof cert.seed !== 'string' ||
      cert.seed.length !== 44 ||
      typeof cert.start !== 'number' ||
      typeof cert.expiry !== 'number' ||
      typeof cert.signature !== 'string'
    ) {
      throw unauthorized('ext.certificate is malformed');
    }
    checkValidity(cert, now);
    if (cert.expiry - cert.start > 31 * 24 * 3600 * 1000) {
      throw unauthorized('ext.certificate cannot last longer than 31 days');
    }
    const issuerId = cert.issuer ?? clientId;
    if (cert.issuer !== undefined && cert.issuer === clientId) {
      throw unauthorized('ext.certificate.issuer must differ from the supplied clientId');
    }
    const issuer = lookupClient(issuerId);
    if (!issuer) throw unauthorized(`ext.certificate issuer \`${issuerId}\` is unknown`);
    const expected = certificateSignature(
      issuer.accessToken,
      cert,
      cert.issuer !== undefined ? clientId : undefined,
    );
    if (!safeEqual(expected, cert.signature)) throw unauthorized('ext.certificate.signature is not valid');
    if (cert.issuer !== undefined && !hasScope(issuer.scopes, `auth:create-client:${clientId}`)) {
      throw unauthorized(`issuer \`${issuerId}\` lacks auth:create-client:${clientId}`);
    }
    for (const s of cert.scopes) {
      if (typeof s !== 'string' || !hasScope(issuer.scopes, s)) {
        throw unauthorized(`ext.certificate issuer \`${issuerId}\` does not have sufficient scopes`);
      }
    }
    key = temporaryAccessToken(issuer.accessToken, cert.seed);
    scopes = expand(cert.scopes);
    if (typeof certificate === 'string') {
      let cache = verifiedCertificates.get(lookupClient);
      if (!cache) {
        cache = new Map();
        verifiedCertificates.set(lookupClient, cache);
      }
      if (cache.size >= VERIFIED_CACHE_SIZE) cache.delete(cache.keys().next().value!);
      cache.set(`${clientId}\n${certificate}`, {
        issuerId,
        issuer,
        key,
        scopes,
        start: cert.start,
        expiry: cert.expiry,
      });
    }
  } else {
    const client = lookupClient(clientId);
    if (!client) throw unauthorized(`Client \`${clientId}\` is unknown`);
    key = client.accessToken;
    scopes = [...client.scopes];
  }

  return { key, scopes };
}

/**
 * Checks credentials handed over in-process (the embedded worker's calls, no HTTP): the same client lookup,
 * certificate checks and scopes as `authenticate`, with the access token compared instead of a Hawk MAC.
 */
export function authenticateCredentials(
  credentials: { clientId: string; accessToken: string; certificate?: string | Certificate | undefined },
  lookupClient: (clientId: string) => StaticClient | undefined,
  anonymousScopes: readonly string[],
  now = Date.now(),
  expand: (scopes: readonly string[]) => string[] = (x) => [...x],
): AuthResult {
  const certificate =
    credentials.certificate === '' || credentials.certificate === null ? undefined : credentials.certificate;
  const { key, scopes } = clientKey(credentials.clientId, certificate, lookupClient, now, expand);
  if (typeof credentials.accessToken !== 'string' || !safeEqual(key, credentials.accessToken)) {
    throw unauthorized('Bad access token');
  }
  return { clientId: credentials.clientId, scopes: [...scopes, ...anonymousScopes] };
}

export interface AuthenticateRequest {
  method: string;
  /** Path plus query, exactly as sent. */
  resource: string;
  host: string;
  port: string;
  authorization: string | undefined;
  /** The request body and content type, to check a Hawk payload hash when the client sent one. */
  payload?: { contentType: string | undefined; body: Buffer };
}

export interface AuthResult {
  clientId: string | undefined;
  scopes: string[];
}

const SKEW_MS = 15 * 60 * 1000;
const CERT_GRACE_MS = 5 * 60 * 1000;

/**
 * Checks a request's Hawk header (or bewit) like the Taskcluster auth service: MAC, timestamp skew (15 min), the
 * `ext` certificate of temporary credentials and `authorizedScopes`. Returns the caller's effective scopes
 * (plus the anonymous scopes).
 */
export function authenticate(
  req: AuthenticateRequest,
  lookupClient: (clientId: string) => StaticClient | undefined,
  anonymousScopes: readonly string[],
  now = Date.now(),
  expand: (scopes: readonly string[]) => string[] = (x) => [...x],
): AuthResult {
  let resource = req.resource;
  let attrs: HawkAttributes;
  let type = 'header';
  const bewitMatch = /([?&])bewit=([^&]*)(&|$)/.exec(resource);
  if (bewitMatch) {
    if (req.authorization) throw unauthorized('Multiple authentications (header and bewit)');
    const parts = Buffer.from(decodeURIComponent(bewitMatch[2]!), 'base64url').toString('utf8').split('\\');
    if (parts.length !== 4) throw unauthorized('Invalid bewit structure');
    const [id, exp, mac, ext] = parts as [string, string, string, string];
    if (Number(exp) * 1000 <= now) throw unauthorized('Access expired');
    attrs = { id, ts: exp, nonce: '', mac, ...(ext ? { ext } : {}) };
    type = 'bewit';
    resource = resource.replace(bewitMatch[0], bewitMatch[3] ? bewitMatch[1]! : '');
  } else if (!req.authorization) {
    return { clientId: undefined, scopes: [...anonymousScopes] };
  } else {
    attrs = parseHawkHeader(req.authorization);
    const ts = Number(attrs.ts) * 1000;
    if (!Number.isFinite(ts) || Math.abs(ts - now) > SKEW_MS) throw unauthorized('Stale timestamp');
  }

  let ext: { certificate?: Certificate | string; authorizedScopes?: string[] } = {};
  if (attrs.ext) {
    try {
      ext = JSON.parse(Buffer.from(attrs.ext, 'base64').toString('utf8'));
    } catch {
      throw unauthorized('Failed to parse ext');
    }
    if (typeof ext !== 'object' || ext === null) throw unauthorized('ext must be a JSON object');
  }

  const clientId = attrs.id;
  const { key, scopes: granted } = clientKey(clientId, ext.certificate, lookupClient, now, expand);
  let scopes = granted;

  const expectedMac = hawkMac(
    key,
    {
      ts: attrs.ts,
      nonce: attrs.nonce,
      method: type === 'bewit' ? 'GET' : req.method,
      resource,
      host: req.host,
      port: req.port,
    },
    type === 'bewit' ? undefined : attrs.hash,
    attrs.ext,
    type,
  );
  if (!safeEqual(expectedMac, attrs.mac)) throw unauthorized('Bad mac');
  if (type === 'header' && attrs.hash !== undefined && req.payload) {
    const mime = (req.payload.contentType ?? '').split(';')[0]!.trim().toLowerCase();
    const hash = createHash('sha256')
      .update(`hawk.1.payload\n${mime}\n`)
      .update(req.payload.body)
      .update('\n')
      .digest('base64');
    if (!safeEqual(hash, attrs.hash)) throw unauthorized('Bad payload hash');
  }

  if (ext.authorizedScopes !== undefined) {
    if (!Array.isArray(ext.authorizedScopes) || ext.authorizedScopes.some((s) => typeof s !== 'string')) {
      throw unauthorized('ext.authorizedScopes must be an array of strings');
    }
    for (const s of ext.authorizedScopes) {
      if (!hasScope(scopes, s)) throw unauthorized('Supplied credentials do not satisfy authorizedScopes');
    }
    scopes = expand(ext.authorizedScopes);
  }
  return { clientId, scopes: [...scopes, ...anonymousScopes] };
}
