import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  authenticate,
  authenticateCredentials,
  createTemporaryCredentials,
  expandScopes,
  satisfies,
  scopeMatch,
} from './auth.js';

describe('scopes', () => {
  it('matches equal scopes and *-suffixed prefixes only', () => {
    expect(scopeMatch('queue:claim-work:a/b', 'queue:claim-work:a/b')).toBe(true);
    expect(scopeMatch('queue:claim-work:a/*', 'queue:claim-work:a/b')).toBe(true);
    expect(scopeMatch('*', 'anything')).toBe(true);
    expect(scopeMatch('queue:claim-work:a/', 'queue:claim-work:a/b')).toBe(false);
    expect(scopeMatch('queue:claim-work:a/b*', 'queue:claim-work:a/')).toBe(false);
    // a required scope ending in * is matched literally
    expect(scopeMatch('queue:route:*', 'queue:route:x*')).toBe(true);
    expect(scopeMatch('queue:route:x', 'queue:route:x*')).toBe(false);
  });

  it('evaluates AllOf / AnyOf expressions', () => {
    const held = ['a:1', 'b:*'];
    expect(satisfies(held, { AllOf: ['a:1', 'b:2'] })).toBe(true);
    expect(satisfies(held, { AllOf: ['a:1', 'c:1'] })).toBe(false);
    expect(satisfies(held, { AnyOf: ['c:1', { AllOf: ['a:1', 'b:x'] }] })).toBe(true);
    expect(satisfies(held, { AnyOf: [] })).toBe(false);
    expect(satisfies(held, { AllOf: [] })).toBe(true);
  });
});

describe('roles', () => {
  const roles = new Map<string, string[]>([
    ['project:tcw', ['queue:create-task:*', 'assume:worker-pool:tcw/linux']],
    ['worker-pool:*', ['queue:claim-work:<..>', 'secrets:get:worker-pool:<..>']],
  ]);
  it('expands assume: scopes transitively, with <..> parameters', () => {
    const scopes = expandScopes(['assume:project:tcw'], roles);
    expect(scopes).toEqual(
      expect.arrayContaining([
        'assume:project:tcw',
        'queue:create-task:*',
        'assume:worker-pool:tcw/linux',
        'queue:claim-work:tcw/linux',
        'secrets:get:worker-pool:tcw/linux',
      ]),
    );
    expect(expandScopes(['queue:x'], roles)).toEqual(['queue:x']);
    expect(expandScopes(['assume:worker-pool:a*'], roles)).toContain('queue:claim-work:a*');
    expect(expandScopes(['*'], roles)).toContain('queue:create-task:*');
  });
});

describe('temporary credentials', () => {
  const issuer = { clientId: 'static/root', accessToken: 'root-token' };
  const lookup = (id: string) => (id === issuer.clientId ? { ...issuer, scopes: ['*'] } : undefined);

  it('rejects requests without a valid Hawk header as 401 and gives anonymous scopes without one', () => {
    const req = { method: 'GET', resource: '/api/queue/v1/task/x', host: '127.0.0.1', port: '80' };
    expect(authenticate({ ...req, authorization: undefined }, lookup, ['anon:*'])).toEqual({
      clientId: undefined,
      scopes: ['anon:*'],
    });
    expect(() => authenticate({ ...req, authorization: 'Basic abc' }, lookup, [])).toThrow(/Hawk/);
    const now = Math.floor(Date.now() / 1000);
    const stale = `Hawk id="static/root", ts="${now - 3600}", nonce="n", mac="m"`;
    expect(() => authenticate({ ...req, authorization: stale }, lookup, [])).toThrow(/Stale timestamp/);
  });

  it('names credentials and signs the certificate like taskcluster-client', () => {
    const creds = createTemporaryCredentials({
      clientId: 'task-client/x',
      start: new Date(0),
      expiry: new Date(1000),
      scopes: ['a', 'b'],
      credentials: issuer,
    });
    const cert = JSON.parse(creds.certificate);
    expect(creds.clientId).toBe('task-client/x');
    expect(cert).toMatchObject({
      version: 1,
      scopes: ['a', 'b'],
      start: 0,
      expiry: 1000,
      issuer: 'static/root',
    });
    expect(cert.seed).toHaveLength(44);
    expect(creds.accessToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const unnamed = createTemporaryCredentials({
      start: new Date(0),
      expiry: new Date(1000),
      scopes: [],
      credentials: issuer,
    });
    expect(unnamed.clientId).toBe('static/root');
    expect(JSON.parse(unnamed.certificate).issuer).toBeUndefined();
  });

  it('checks a Hawk payload hash when the client sends one', () => {
    const ts = String(Math.floor(Date.now() / 1000));
    const body = Buffer.from('{"a":1}');
    const hash = createHash('sha256')
      .update('hawk.1.payload\napplication/json\n')
      .update(body)
      .update('\n')
      .digest('base64');
    const resource = '/api/queue/v1/task/x';
    const normalized = `hawk.1.header\n${ts}\nn1\nPUT\n${resource}\n127.0.0.1\n80\n${hash}\n\n`;
    const mac = createHmac('sha256', issuer.accessToken).update(normalized).digest('base64');
    const authorization = `Hawk id="static/root", ts="${ts}", nonce="n1", hash="${hash}", mac="${mac}"`;
    const req = { method: 'PUT', resource, host: '127.0.0.1', port: '80', authorization };
    const ok = authenticate(
      { ...req, payload: { contentType: 'application/json; charset=utf-8', body } },
      lookup,
      [],
    );
    expect(ok.clientId).toBe('static/root');
    expect(() =>
      authenticate(
        { ...req, payload: { contentType: 'application/json', body: Buffer.from('{"a":2}') } },
        lookup,
        [],
      ),
    ).toThrow(/payload hash/);
  });
});

describe('in-process credentials: verified certificates are remembered', () => {
  const issuer = {
    clientId: 'issuer',
    accessToken: 'issuer-token-0123456789abcdefghijklmnop',
    scopes: ['queue:*'],
  };
  const now = Date.now();
  const temp = createTemporaryCredentials({
    start: new Date(now - 60_000),
    expiry: new Date(now + 3_600_000),
    scopes: ['queue:status:*'],
    credentials: issuer,
  });

  it('still checks the validity window, the signature and the issuer on every call', () => {
    const clients = new Map([[issuer.clientId, issuer]]);
    const lookup = (id: string) => clients.get(id);
    // first call: verified and remembered
    expect(authenticateCredentials(temp, lookup, [], now).scopes).toEqual(['queue:status:*']);
    // a second call at the same time: the same answer
    expect(authenticateCredentials(temp, lookup, [], now).scopes).toEqual(['queue:status:*']);
    // after the certificate expired (beyond the 5 min grace): refused although it was verified before
    expect(() => authenticateCredentials(temp, lookup, [], now + 3_600_000 + 6 * 60_000)).toThrow(/expiry/);
    // a forged certificate (scopes widened, signature kept) is a different text: verified, and refused
    const cert = JSON.parse(temp.certificate);
    const forged = { ...temp, certificate: JSON.stringify({ ...cert, scopes: ['*'] }) };
    expect(() => authenticateCredentials(forged, lookup, [], now)).toThrow(/signature/);
    // a wrong access token with the remembered certificate
    expect(() => authenticateCredentials({ ...temp, accessToken: 'x'.repeat(43) }, lookup, [], now)).toThrow(
      /access token/,
    );
    // the issuer's client changed (a new token): the certificate is checked again, and now fails
    clients.set(issuer.clientId, { ...issuer, accessToken: 'another-token-0123456789abcdefghijklmno' });
    expect(() => authenticateCredentials(temp, lookup, [], now)).toThrow(/signature/);
    // the issuer is gone
    clients.delete(issuer.clientId);
    expect(() => authenticateCredentials(temp, lookup, [], now)).toThrow(/unknown/);
  });
});
