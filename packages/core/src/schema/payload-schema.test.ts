import { describe, expect, it } from 'vitest';
import { FeatureNotSupportedError } from '../errors/feature-not-supported-error.js';
import { MalformedPayloadError } from '../errors/malformed-payload-error.js';
import { PayloadKeyConflictError } from '../errors/payload-key-conflict-error.js';
import { composePayloadSchema } from './payload-schema.js';

const engine = {
  owner: 'engine:docker',
  part: () => ({
    properties: { image: { type: 'string' }, command: { type: 'array', items: { type: 'string' } } },
    required: ['image'],
  }),
};
const env = {
  owner: 'plugin:env',
  part: () => ({ properties: { env: { type: 'object', additionalProperties: { type: 'string' } } } }),
};

describe('composePayloadSchema', () => {
  it('merges the parts into one closed object schema', () => {
    const composed = composePayloadSchema([engine, env]);
    expect(composed.schema).toMatchObject({
      type: 'object',
      additionalProperties: false,
      required: ['image'],
      properties: { image: { type: 'string' }, env: { type: 'object' } },
    });
    expect(composed.owners.get('env')).toBe('plugin:env');
    expect(composed.validate({ image: 'x', env: { A: 'b' } })).toEqual([]);
  });

  it('refuses a key claimed twice', () => {
    const clash = { owner: 'plugin:other', part: () => ({ properties: { env: { type: 'string' } } }) };
    expect(() => composePayloadSchema([engine, env, clash])).toThrow(PayloadKeyConflictError);
    expect(() => composePayloadSchema([engine, env, clash])).toThrow(
      /"env" is claimed by both plugin:env and plugin:other/,
    );
  });

  it('names the JSON pointer of every problem', () => {
    const composed = composePayloadSchema([engine, env]);
    const problems = composed.validate({ command: ['ls', 3], env: { A: 1 }, bogus: true });
    expect(problems).toEqual(
      expect.arrayContaining([
        { pointer: '/image', message: 'is required' },
        { pointer: '/command/1', message: 'must be string' },
        { pointer: '/env/A', message: 'must be string' },
        { pointer: '/bogus', message: 'this payload key does not exist on this worker' },
      ]),
    );
    expect(() => composed.assertValid({})).toThrow(MalformedPayloadError);
  });

  it('leaves out a part whose feature the engine lacks, and says why', () => {
    const needsEnv = {
      owner: 'plugin:env',
      keys: ['env'],
      part: () => {
        throw new FeatureNotSupportedError(
          'env',
          'needs engine capability env, which the script engine does not have',
        );
      },
    };
    const composed = composePayloadSchema([engine, needsEnv]);
    expect(Object.keys(composed.schema.properties as object)).toEqual(['image', 'command']);
    expect(composed.unsupported).toHaveLength(1);
    const [problem] = composed.validate({ image: 'x', env: {} });
    expect(problem?.pointer).toBe('/env');
    expect(problem?.message).toMatch(
      /does not exist on this worker \(plugin:env: needs engine capability env/,
    );
  });

  it('names the reason for keys that only the thrown error lists (a key the config leaves out)', () => {
    const reboot = {
      owner: 'plugin:reboot',
      part: () => {
        throw new FeatureNotSupportedError('task reboots', 'allowTaskReboots is false', { keys: ['reboot'] });
      },
    };
    const composed = composePayloadSchema([engine, reboot]);
    expect(composed.unsupported[0]?.keys).toEqual(['reboot']);
    const [problem] = composed.validate({ image: 'x', reboot: 'always' });
    expect(problem?.pointer).toBe('/reboot');
    expect(problem?.message).toBe(
      'this payload key does not exist on this worker (plugin:reboot: allowTaskReboots is false)',
    );
  });

  it('picks each owner its own keys', () => {
    const composed = composePayloadSchema([engine, env]);
    expect(composed.pick({ image: 'i', env: { A: 'b' } }, 'plugin:env')).toEqual({ env: { A: 'b' } });
    expect(composed.pick({ image: 'i', env: { A: 'b' } }, 'engine:docker')).toEqual({ image: 'i' });
  });

  it('names the offending property for a bad property name', () => {
    const named = {
      owner: 'plugin:env',
      part: () => ({
        properties: { env: { type: 'object', propertyNames: { pattern: '^[A-Z_]+$' } } },
      }),
    };
    const composed = composePayloadSchema([engine, named]);
    expect(composed.validate({ image: 'x', env: { 'bad-name': 'v', GOOD: 'v' } })).toEqual([
      { pointer: '/env/bad-name', message: 'is not a valid name here: it must match pattern "^[A-Z_]+$"' },
    ]);
  });

  it('escapes keys in pointers', () => {
    const composed = composePayloadSchema([engine]);
    expect(composed.validate({ image: 'x', 'a/b~c': 1 })[0]?.pointer).toBe('/a~1b~0c');
  });
});
