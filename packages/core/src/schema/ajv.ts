import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';

type AddFormats = (ajv: Ajv2020) => Ajv2020;
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ??
  addFormatsModule) as unknown as AddFormats;

/** A JSON Schema (draft 2020-12) as a plain object. */
export type JSONSchema = Record<string, unknown>;

export interface SchemaIssue {
  /** JSON pointer of the offending value ('' for the root). */
  pointer: string;
  message: string;
  keyword: string;
}

/** A fresh validator instance: draft 2020-12, all errors, the standard formats. */
export function createAjv(): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: false, allowUnionTypes: true });
  addFormats(ajv);
  return ajv;
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

interface AjvErrorLike {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  /** Set by ajv on errors about a property's name (under `propertyNames`). */
  propertyName?: string;
}

/** Turns ajv errors into issues that name the JSON pointer of the offending field. */
export function toIssues(errors: readonly AjvErrorLike[] | null | undefined): SchemaIssue[] {
  const issues: SchemaIssue[] = [];
  const seen = new Set<string>();
  for (const e of errors ?? []) {
    let pointer = e.instancePath;
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'propertyNames') {
      // the error about the name itself follows (it carries `propertyName`); it says more
      continue;
    }
    if (e.propertyName !== undefined) {
      pointer = `${pointer}/${escapePointer(e.propertyName)}`;
      message = `is not a valid name here: it ${message}`;
    } else if (e.keyword === 'required') {
      pointer = `${pointer}/${escapePointer(String(e.params.missingProperty))}`;
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      pointer = `${pointer}/${escapePointer(String(e.params.additionalProperty))}`;
      message = 'is not allowed here';
    } else if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) {
      message = `must be one of ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    } else if (e.keyword === 'if') {
      continue;
    }
    const key = `${pointer}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    issues.push({ pointer, message, keyword: e.keyword });
  }
  return issues;
}

/** `/engines/script/command` → `engines.script.command` (how config keys are named in messages). */
export function pointerToPath(prefix: string, pointer: string): string {
  const parts = pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const all = [...(prefix ? [prefix] : []), ...parts];
  return all.map((p, i) => (/^\d+$/.test(p) ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}
