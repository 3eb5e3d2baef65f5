import { type ConfigProblem, createAjv, type JSONSchema, pointerToPath, toIssues } from '@tcw/core';

const ajv = createAjv();
const compiled = new WeakMap<JSONSchema, ReturnType<typeof ajv.compile>>();

/** Every problem of `value` against `schema`, each named by its config path under `prefix`. */
export function validateAgainst(schema: JSONSchema, value: unknown, prefix: string): ConfigProblem[] {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = ajv.compile(schema);
    compiled.set(schema, validate);
  }
  if (validate(value)) return [];
  return toIssues(validate.errors).map((issue) => ({
    path: pointerToPath(prefix, issue.pointer),
    message: issue.keyword === 'additionalProperties' ? 'unknown key' : issue.message,
  }));
}
