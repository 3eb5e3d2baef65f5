// An example script for the script engine: reads the task's payload (JSON) on stdin, validates what the schema
// cannot, writes its output to stdout (the task log) and an artifact to ./artifacts/public/.
import { mkdirSync, writeFileSync } from 'node:fs';

let input = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) input += chunk;
const { name, greeting = 'Hello', times = 1 } = JSON.parse(input);

if (name.trim().toLowerCase() === 'nobody') {
  process.stderr.write('there is nobody to greet: give a name\n');
  process.exit(2); // exception: malformed-payload
}

const lines = Array.from({ length: times }, () => `${greeting}, ${name}!`);
for (const line of lines) process.stdout.write(`${line}\n`);

mkdirSync('artifacts/public', { recursive: true });
writeFileSync(
  'artifacts/public/greeting.json',
  JSON.stringify({ taskId: process.env.TASK_ID, runId: Number(process.env.RUN_ID), lines }, null, 2),
);
process.exit(name === 'failure' ? 1 : 0);
