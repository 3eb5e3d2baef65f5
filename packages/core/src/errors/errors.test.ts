import { describe, expect, it } from 'vitest';
import {
  errorOutcome,
  FatalError,
  HookTimeoutError,
  InternalError,
  MalformedPayloadError,
  PluginError,
  ResourceUnavailableError,
  TcwError,
} from './index.js';

describe('errors', () => {
  it('carry stable codes and are detected across copies of core', () => {
    const error = new MalformedPayloadError([{ pointer: '/image', message: 'must be string' }]);
    expect(error.code).toBe('ERR_MALFORMED_PAYLOAD');
    expect(error.message).toBe('/image: must be string');
    expect(TcwError.isInstance(error)).toBe(true);
    // an error from another copy of @tcw/core: same marker, different class
    const foreign = Object.assign(new Error('x'), {
      [Symbol.for('tcw.error')]: true,
      code: 'ERR_MALFORMED_PAYLOAD',
    });
    expect(TcwError.isInstance(foreign)).toBe(true);
    expect(MalformedPayloadError.isMalformedPayload(foreign)).toBe(true);
    expect(TcwError.isInstance(new Error('plain'))).toBe(false);
  });

  it('merge malformed payload problems', () => {
    const merged = MalformedPayloadError.merge([
      new MalformedPayloadError([{ pointer: '/a', message: 'bad' }]),
      new MalformedPayloadError('no pointer here'),
    ]);
    expect(merged.problems).toHaveLength(2);
    expect(merged.message).toBe('/a: bad\nno pointer here');
  });

  it.each([
    [new MalformedPayloadError('x'), 'exception', 'malformed-payload', false],
    [new ResourceUnavailableError('x'), 'exception', 'resource-unavailable', false],
    [new InternalError('x'), 'exception', 'internal-error', false],
    [new FatalError('x'), 'exception', 'internal-error', true],
    [new HookTimeoutError('p', 'prepare', 10), 'exception', 'internal-error', true],
    [new Error('unexpected'), 'exception', 'internal-error', false],
    ['a string', 'exception', 'internal-error', false],
  ])('map %s to a resolution', (error, state, reason, fatal) => {
    const outcome = errorOutcome(error);
    expect(outcome.resolution).toEqual({ state, reason });
    expect(outcome.fatal).toBe(fatal);
  });

  it('judge a plugin error by what it wraps and name the plugin', () => {
    const outcome = errorOutcome(
      new PluginError(
        'artifacts',
        'stopped',
        new MalformedPayloadError('/artifacts/0/path: leaves the task directory'),
      ),
    );
    expect(outcome.resolution).toEqual({ state: 'exception', reason: 'malformed-payload' });
    expect(outcome.message).toContain('plugin artifacts failed in stopped');
    expect(errorOutcome(new PluginError('x', 'prepare', new FatalError('boom'))).fatal).toBe(true);
  });
});
