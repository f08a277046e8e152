// The official TypeScript client (@temporalio/client) against keel's interop worker.
//
//   node interop.mjs        (run by tests/interop/run)
//
// Environment: TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE (default "default"),
// KEEL_TASK_QUEUE (required: the queue the interop worker polls).
//
// Prints one line per case, "PASS typescript <case> (<ms> ms)" or
// "FAIL typescript <case>: <what was expected and what came>", and exits 1 if any case failed.
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import {
  ApplicationFailure,
  Client,
  Connection,
  WorkflowFailedError,
  WorkflowUpdateFailedError,
} from '@temporalio/client';

const LANG = 'typescript';
const WORKFLOW_TYPE = 'InteropGreeting';
const CASE_TIMEOUT_MS = 20_000; // 5 cases and the connect stay below the runner's 120 s

const address = process.env.TEMPORAL_ADDRESS || '127.0.0.1:7233';
const namespace = process.env.TEMPORAL_NAMESPACE || 'default';
const taskQueue = process.env.KEEL_TASK_QUEUE;
if (!taskQueue) {
  console.error('interop.mjs: KEEL_TASK_QUEUE is not set');
  process.exit(2);
}

// What the clients send: strings that need escaping, non-ASCII text, numbers of several kinds,
// nesting, null and booleans - everything must come back exactly as sent.
const input = {
  name: 'Zoë 東京 🚀',
  client: LANG,
  count: 42,
  ratio: 1.5,
  negative: -7,
  maxSafeInteger: 9007199254740991,
  ok: true,
  nothing: null,
  tags: ['a', 'b', ''],
  nested: { deep: { list: [1, { y: 'z' }, []], empty: {} } },
  tricky: 'quote " backslash \\ newline \n tab \t html <a & b> control \u0001 end',
};
const approval = { by: 'ana', comment: 'looks good ✓', level: 2 };
const rejection = { by: 'bob', reason: 'over budget' };
const renamed = 'Renée "大阪" 🌸'; // what the update "rename" sets: non-ASCII, and a quote

class Mismatch extends Error {}

const isObject = (v) => typeof v === 'object' && v !== null;
const show = (v) => (v === undefined ? 'nothing' : JSON.stringify(v));

// Where got differs from expected: ["path: expected X, got Y", ...].
function differences(expected, got, path, out = []) {
  if (isDeepStrictEqual(got, expected)) return out;
  if (isObject(expected) && isObject(got) && Array.isArray(expected) === Array.isArray(got)) {
    const keys = new Set([...Object.keys(expected), ...Object.keys(got)]);
    for (const k of keys) differences(expected[k], got[k], `${path}.${k}`, out);
  } else {
    out.push(`${path}: expected ${show(expected)}, got ${show(got)}`);
  }
  return out;
}

function expectEqual(what, expected, got) {
  const diffs = differences(expected, got, what);
  if (diffs.length > 0) {
    throw new Mismatch(diffs.join('; '));
  }
}

function expectedResult(workflowId, name = input.name) {
  return {
    greeting: `Hello, ${name}!`,
    approvedBy: approval.by,
    input,
    approval,
    workflowId,
    attempt: 1,
  };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function startOptions(workflowId) {
  // The server ends a run that a failing test left behind.
  return { taskQueue, workflowId, args: [input], workflowExecutionTimeout: '60s' };
}

const newId = (name) => `interop-${LANG}-${name}-${randomUUID()}`;

// start, then signal approve: the result is the activity's greeting.
async function startSignalResult(client) {
  const id = newId('start-signal');
  const handle = await client.workflow.start(WORKFLOW_TYPE, startOptions(id));
  await handle.signal('approve', approval);
  expectEqual('result', expectedResult(id), await handle.result());
}

// signal-with-start: the signal arrives in the run's first workflow task.
async function signalWithStart(client) {
  const id = newId('signal-with-start');
  const handle = await client.workflow.signalWithStart(WORKFLOW_TYPE, {
    ...startOptions(id),
    signal: 'approve',
    signalArgs: [approval],
  });
  expectEqual('result', expectedResult(id), await handle.result());
}

// query while the run waits, then let it finish.
async function query(client) {
  const id = newId('query');
  const handle = await client.workflow.start(WORKFLOW_TYPE, startOptions(id));
  expectEqual('query "stage" before approve', 'waiting for approval', await handle.query('stage'));
  await handle.signal('approve', approval);
  expectEqual('result', expectedResult(id), await handle.result());
  expectEqual('query "stage" after completion', 'done', await handle.query('stage'));
}

// signal reject: the run fails with keel's application failure.
async function reject(client) {
  const id = newId('reject');
  const handle = await client.workflow.start(WORKFLOW_TYPE, startOptions(id));
  await handle.signal('reject', rejection);
  let result;
  try {
    result = await handle.result();
  } catch (err) {
    if (!(err instanceof WorkflowFailedError)) throw err;
    const cause = err.cause;
    if (!(cause instanceof ApplicationFailure)) {
      throw new Mismatch(`failure cause: expected an ApplicationFailure, got ${cause?.constructor?.name}: ${cause?.message}`);
    }
    expectEqual('failure type', 'Rejected', cause.type);
    expectEqual('failure nonRetryable', true, cause.nonRetryable);
    let message;
    try {
      message = JSON.parse(cause.message);
    } catch {
      throw new Mismatch(`failure message: expected the reject argument as JSON, got ${JSON.stringify(cause.message)}`);
    }
    expectEqual('failure message (parsed)', rejection, message);
    return;
  }
  throw new Mismatch(`result: expected WorkflowFailedError, got a result ${JSON.stringify(result)}`);
}

// Send update "rename" with arg and expect it to fail: a WorkflowUpdateFailedError whose cause is
// an ApplicationFailure of `type` with `text` in its message.
async function expectUpdateFailure(handle, what, arg, type, text) {
  let result;
  try {
    result = await handle.executeUpdate('rename', { args: [arg] });
  } catch (err) {
    if (!(err instanceof WorkflowUpdateFailedError)) throw err;
    const cause = err.cause;
    if (!(cause instanceof ApplicationFailure)) {
      throw new Mismatch(`${what}: failure cause: expected an ApplicationFailure, got ${cause?.constructor?.name}: ${cause?.message}`);
    }
    expectEqual(`${what}: failure type`, type, cause.type);
    if (typeof cause.message !== 'string' || !cause.message.includes(text)) {
      throw new Mismatch(`${what}: failure message: expected it to contain ${JSON.stringify(text)}, got ${JSON.stringify(cause.message)}`);
    }
    return;
  }
  throw new Mismatch(`${what}: expected WorkflowUpdateFailedError, got a result ${JSON.stringify(result)}`);
}

// update "rename" while the run waits: answered with the old and the new name; the validator
// rejects an empty name; a name too long for the workflow's state fails in its handler; then
// the greeting uses the new name.
async function update(client) {
  const id = newId('update');
  const handle = await client.workflow.start(WORKFLOW_TYPE, startOptions(id));
  const answer = await handle.executeUpdate('rename', { args: [{ name: renamed }] });
  expectEqual('update "rename" result', { previous: input.name, name: renamed }, answer);
  await expectUpdateFailure(handle, 'update "rename" with an empty name', { name: '' }, 'UpdateRejected',
    'rename needs a non-empty string name');
  await expectUpdateFailure(handle, 'update "rename" with a 600-byte name', { name: 'x'.repeat(600) },
    'NameTooLong', 'more than 511');
  await handle.signal('approve', approval);
  expectEqual('result', expectedResult(id, renamed), await handle.result());
}

const cases = [
  ['start-signal-result', startSignalResult],
  ['signal-with-start', signalWithStart],
  ['query', query],
  ['reject', reject],
  ['update', update],
];

async function main() {
  const connection = await withTimeout(Connection.connect({ address }), 15_000, `connect to ${address}`);
  const client = new Client({ connection, namespace });
  let failed = 0;
  try {
    for (const [name, run] of cases) {
      const t0 = Date.now();
      try {
        await withTimeout(run(client), CASE_TIMEOUT_MS, name);
        console.log(`PASS ${LANG} ${name} (${Date.now() - t0} ms)`);
      } catch (err) {
        failed++;
        const detail = err instanceof Mismatch ? err.message : `${err?.name}: ${err?.message}${err?.cause ? ` (cause: ${err.cause.message})` : ''}`;
        console.log(`FAIL ${LANG} ${name}: ${detail}`);
      }
    }
  } finally {
    await connection.close();
  }
  return failed;
}

main().then(
  (failed) => process.exit(failed ? 1 : 0),
  (err) => {
    console.log(`FAIL ${LANG} setup: ${err?.stack || err}`);
    process.exit(1);
  },
);
