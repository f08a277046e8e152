// The peer benchmark's workflow types for the TypeScript SDK worker (bundled by worker.mjs):
// the same names and behaviour as the Go and keel workers (tools/bench-peers/keel).
import { condition, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';

const { noop } = proxyActivities({ startToCloseTimeout: '10 seconds' });

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

export const BenchToolLoop = BenchChain;
