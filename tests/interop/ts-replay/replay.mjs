// Replay keel-written histories (keelctl workflow history) with the TypeScript SDK's replayer.
import { Worker } from '@temporalio/worker';
import fs from 'node:fs';
import path from 'node:path';

const workflowsPath = path.join(path.dirname(new URL(import.meta.url).pathname), 'workflows.js');
let failed = 0;
for (const f of process.argv.slice(2)) {
  const history = JSON.parse(fs.readFileSync(f, 'utf8'));
  try {
    await Worker.runReplayHistory({ workflowsPath }, history, path.basename(f, '.json'));
    console.log(`ok ${f}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${f}: ${e && e.message}`);
  }
}
process.exit(failed ? 1 : 0);
