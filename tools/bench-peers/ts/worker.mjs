// bench-peers-ts: the official TypeScript SDK worker of keel's peer benchmark.
//
//   node worker.mjs bundle FILE          bundle workflows.js into FILE (done once, by make)
//   node worker.mjs worker QUEUE         serve the benchmark's workflows on QUEUE until SIGTERM
//   node worker.mjs replay FILE N        replay the JSON history in FILE N times after a warm-up,
//                                        print {"runs_ms":[...]}
//
// The worker and the replayer load the prebuilt bundle (KEEL_BENCH_TS_BUNDLE, default
// workflow-bundle.js next to this file), so neither times webpack. The worker keeps the SDK's
// defaults except maxCachedWorkflows (2000, so that the 1,000 open runs of the signal burst stay
// cached, as keel's and Go's do). Environment: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { bundleWorkflowCode, NativeConnection, Runtime, Worker } from '@temporalio/worker';

const here = dirname(fileURLToPath(import.meta.url));
const bundlePath = process.env.KEEL_BENCH_TS_BUNDLE || join(here, 'workflow-bundle.js');
const version = createRequire(import.meta.url)('@temporalio/worker/package.json').version;
// Wall clock in microseconds (CLOCK_REALTIME at the process's start plus the monotonic clock).
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const activities = {
  noop: async (input) => input,
  // The tool loops' step: start minus the previous step's end appended to the gaps (docs/performance.md).
  toolstep: async (input) => {
    const start = nowUs();
    const gaps = [...(input?.gaps_us ?? [])];
    if (input?.end_us > 0) gaps.push(start - input.end_us);
    return { end_us: nowUs(), gaps_us: gaps };
  },
};

function quiet() {
  Runtime.install({ logger: new (class { log() {} trace() {} debug() {} info() {} warn() {} error() {} })() });
}

async function bundle(out) {
  const { code } = await bundleWorkflowCode({ workflowsPath: join(here, 'workflows.js'), logger: undefined });
  writeFileSync(out, code);
}

async function worker(queue) {
  quiet();
  const connection = await NativeConnection.connect({
    address: process.env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
  });
  const w = await Worker.create({
    connection,
    namespace: process.env.TEMPORAL_NAMESPACE || 'default',
    taskQueue: queue,
    workflowBundle: { codePath: bundlePath },
    activities,
    maxCachedWorkflows: 2000,
  });
  const running = w.run();
  console.log(`bench-peers-worker: ready on task queue ${queue} (@temporalio/worker ${version})`);
  await running;
  await connection.close();
}

async function replay(path, n) {
  quiet();
  const text = readFileSync(path, 'utf8');
  const code = readFileSync(bundlePath, 'utf8');
  const pulled = [];
  // One replay worker for all the replays (runReplayHistories); each is timed from its JSON
  // parse to its result.
  function* histories() {
    for (let i = 0; i <= n; i++) {
      pulled.push(performance.now());
      yield { workflowId: `replay-${i}`, history: JSON.parse(text) };
    }
  }
  const runs = [];
  let i = 0;
  for await (const r of Worker.runReplayHistories({ workflowBundle: { code } }, histories())) {
    const t = performance.now();
    if (r.error) throw r.error;
    if (i > 0) runs.push(Number((t - pulled[i]).toFixed(3)));
    i++;
  }
  if (i !== n + 1) throw new Error(`replayed ${i} of ${n + 1} histories`);
  console.log(JSON.stringify({ runs_ms: runs }));
}

const [cmd, a, b] = process.argv.slice(2);
try {
  if (cmd === 'bundle' && a) await bundle(a);
  else if (cmd === 'worker' && a) await worker(a);
  else if (cmd === 'replay' && a && Number(b) > 0) await replay(a, Number(b));
  else {
    console.error('usage: node worker.mjs bundle FILE | worker QUEUE | replay FILE N');
    process.exit(2);
  }
} catch (e) {
  console.error(`bench-peers-ts: ${e?.stack || e}`);
  process.exit(1);
}
