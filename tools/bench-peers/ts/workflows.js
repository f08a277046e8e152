// The peer benchmark's workflow types for the TypeScript SDK worker (bundled by worker.mjs):
// the same names and behaviour as the Go and keel workers (tools/bench-peers/keel).
import { condition, defineSignal, proxyActivities, proxyLocalActivities, setHandler } from '@temporalio/workflow';

const { noop, toolstep } = proxyActivities({ startToCloseTimeout: '10 seconds' });
const local = proxyLocalActivities({ startToCloseTimeout: '10 seconds' });

export async function BenchOneActivity(input) {
  return await noop(input);
}

const go = defineSignal('go');

export async function BenchSignalWait(input) {
  let signalled = false;
  setHandler(go, () => {
    signalled = true;
  });
  await condition(() => signalled);
  return input;
}

export async function BenchChain(input) {
  const n = input?.n ?? 0;
  let out = { n, step: 0 };
  for (let i = 1; i <= n; i++) {
    out = await noop({ n, step: i });
  }
  return out;
}

// The tool loops: n "toolstep" activities one after the other, each given the previous one's
// result ({end_us, gaps_us}); complete with the last one's (n-1 gaps).
async function toolLoop(step, input) {
  const n = input?.n ?? 0;
  let out = { end_us: 0, gaps_us: [] };
  for (let i = 1; i <= n; i++) {
    out = await step(out);
  }
  return out;
}

export async function BenchToolLoop(input) {
  return await toolLoop(toolstep, input);
}

export async function BenchToolLoopLocal(input) {
  return await toolLoop(local.toolstep, input);
}
