#!/usr/bin/env node
// Runs the benches: `pnpm bench` lists them, `pnpm bench <name> [args…]` runs bench/<name>/*.mjs one after the
// other (after `pnpm build`). Each bench runs its baseline side by side with tcw in the same run and prints ratios.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const benches = readdirSync(here).filter((d) => statSync(join(here, d)).isDirectory());
const [name, ...args] = process.argv.slice(2);
if (!name || !benches.includes(name)) {
  if (name) console.error(`no bench named ${name}`);
  console.log(`usage: pnpm bench <name> [args]\n\nbenches: ${benches.join(', ')}`);
  process.exit(name ? 64 : 0);
}
for (const file of readdirSync(join(here, name)).filter((f) => f.endsWith('.mjs'))) {
  console.log(`== bench/${name}/${file}`);
  const { status } = spawnSync(process.execPath, [join(here, name, file), ...args], { stdio: 'inherit' });
  if (status !== 0) process.exit(status ?? 1);
}
