let installed = false;

/**
 * Filters out the `ExperimentalWarning` that Node 22 prints when `node:sqlite` is first loaded. Every other
 * warning still goes through. Safe to call more than once.
 */
export function suppressSqliteExperimentalWarning(): void {
  if (installed) return;
  installed = true;
  const original = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: unknown, ...rest: unknown[]) => {
    const text = typeof warning === 'string' ? warning : warning instanceof Error ? warning.message : '';
    const first = rest[0];
    const type =
      typeof first === 'string'
        ? first
        : first && typeof first === 'object' && 'type' in first
          ? String((first as { type: unknown }).type)
          : warning instanceof Error
            ? warning.name
            : '';
    if (type === 'ExperimentalWarning' && /SQLite/i.test(text)) return;
    original(warning, ...rest);
  }) as typeof process.emitWarning;
}
