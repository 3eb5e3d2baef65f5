import type { EngineCapabilities } from '../engine/v1/capabilities.js';
import { FeatureNotSupportedError } from '../errors/feature-not-supported-error.js';
import { MalformedPayloadError, type PayloadProblem } from '../errors/malformed-payload-error.js';
import { PayloadKeyConflictError } from '../errors/payload-key-conflict-error.js';
import { createAjv, type JSONSchema, toIssues } from './ajv.js';

/** One part's contribution to the payload schema: its own top-level keys. */
export interface PayloadSchemaPart {
  properties: Record<string, JSONSchema>;
  required?: string[];
  /** Shared definitions, referenced as `#/$defs/<name>`; names must be unique across parts. */
  $defs?: Record<string, JSONSchema>;
}

/** A contributor to the composed payload schema (the engine, or an enabled plugin). */
export interface SchemaContributor {
  /** `engine:docker`, `plugin:env` */
  owner: string;
  /** Returns the part, or throws `FeatureNotSupportedError` when the engine lacks what it needs. */
  part(): PayloadSchemaPart | undefined;
  /** Keys the contributor would own, for the message when its part is unsupported. */
  keys?: readonly string[];
}

interface Unsupported {
  owner: string;
  keys: readonly string[];
  reason: string;
}

export interface ComposedPayloadSchema {
  /** The whole payload schema (publish it, `tcw schema` prints it). */
  readonly schema: JSONSchema;
  /** Which contributor owns each top-level key. */
  readonly owners: ReadonlyMap<string, string>;
  /** Contributors left out because the engine lacks a feature, with their reasons. */
  readonly unsupported: readonly Unsupported[];
  /** Every problem of the payload, each naming its JSON pointer; empty when valid. */
  validate(payload: unknown): PayloadProblem[];
  /** Validates, throwing one `MalformedPayloadError` that lists every problem. */
  assertValid(payload: unknown): void;
  /** The owner's own keys of a payload. */
  pick(payload: Record<string, unknown>, owner: string): Record<string, unknown>;
}

/**
 * Composes the payload schema from the engine's part and each enabled plugin's part. A key claimed twice throws
 * `PayloadKeyConflictError` (at startup); a part whose feature the engine lacks is left out, so its keys are
 * rejected as "this payload key does not exist on this worker"; unknown keys are rejected.
 */
export function composePayloadSchema(
  contributors: readonly SchemaContributor[],
  options: { title?: string } = {},
): ComposedPayloadSchema {
  const properties: Record<string, JSONSchema> = {};
  const required: string[] = [];
  const defs: Record<string, JSONSchema> = {};
  const owners = new Map<string, string>();
  const unsupported: Unsupported[] = [];

  for (const contributor of contributors) {
    let part: PayloadSchemaPart | undefined;
    try {
      part = contributor.part();
    } catch (error) {
      if (FeatureNotSupportedError.isFeatureNotSupported(error)) {
        const keys = [...new Set([...(contributor.keys ?? []), ...error.keys])];
        unsupported.push({ owner: contributor.owner, keys, reason: error.message });
        continue;
      }
      throw error;
    }
    if (!part) continue;
    for (const [key, schema] of Object.entries(part.properties)) {
      const existing = owners.get(key);
      if (existing) throw new PayloadKeyConflictError(key, existing, contributor.owner);
      owners.set(key, contributor.owner);
      properties[key] = schema;
    }
    for (const key of part.required ?? []) {
      if (!(key in part.properties)) {
        throw new TypeError(`${contributor.owner} requires payload key "${key}" but does not define it`);
      }
      required.push(key);
    }
    for (const [name, def] of Object.entries(part.$defs ?? {})) {
      if (name in defs) throw new TypeError(`$defs/${name} is defined twice (by ${contributor.owner})`);
      defs[name] = def;
    }
  }

  const schema: JSONSchema = {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: options.title ?? 'tcw task payload',
    type: 'object',
    properties,
    ...(required.length ? { required } : {}),
    additionalProperties: false,
    ...(Object.keys(defs).length ? { $defs: defs } : {}),
  };

  const validateFn = createAjv().compile(schema);
  const unsupportedByKey = new Map<string, Unsupported>();
  for (const u of unsupported) for (const k of u.keys) unsupportedByKey.set(k, u);

  function validate(payload: unknown): PayloadProblem[] {
    if (validateFn(payload)) return [];
    return toIssues(validateFn.errors).map((issue) => {
      const topLevelUnknown =
        issue.keyword === 'additionalProperties' && issue.pointer.split('/').length === 2;
      if (!topLevelUnknown) return { pointer: issue.pointer, message: issue.message };
      const key = issue.pointer.slice(1).replace(/~1/g, '/').replace(/~0/g, '~');
      const why = unsupportedByKey.get(key);
      return {
        pointer: issue.pointer,
        message: why
          ? `this payload key does not exist on this worker (${why.owner}: ${why.reason})`
          : 'this payload key does not exist on this worker',
      };
    });
  }

  return {
    schema,
    owners,
    unsupported,
    validate,
    assertValid(payload) {
      const problems = validate(payload);
      if (problems.length) throw new MalformedPayloadError(problems);
    },
    pick(payload, owner) {
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(payload)) if (owners.get(key) === owner) out[key] = value;
      return out;
    },
  };
}

/** A contributor for engines: its part needs no capability. */
export function engineContributor(engine: {
  name: string;
  payloadSchema(): PayloadSchemaPart;
}): SchemaContributor {
  return { owner: `engine:${engine.name}`, part: () => engine.payloadSchema() };
}

export type { EngineCapabilities };
