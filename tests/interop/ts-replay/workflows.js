// The integration suite's LocalActivityTest workflow (tests/integration/test_local_activity.c),
// written for the TypeScript SDK: one local activity, its result completes the run.
import { proxyLocalActivities } from '@temporalio/workflow';

export async function LocalActivityTest(input) {
  const acts = proxyLocalActivities({ startToCloseTimeout: '10s' });
  try {
    return { ok: true, seq: 1, result: await acts[input.type](input.arg) };
  } catch (e) {
    return { ok: false };
  }
}
