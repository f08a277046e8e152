// tests/trace/ts/trace.mjs - one trace from the official TypeScript client through keel.
//
// Started by tests/trace/run. The official client, with the official OpenTelemetry interceptor
// (@temporalio/interceptors-opentelemetry), starts a keel.Procurement run on --task-queue and
// waits for its result; its spans go to the collector (--otlp, OTLP/HTTP protobuf). Then the
// trace of the client's StartWorkflow span is read back from Jaeger's query API (--jaeger) until
// the run's spans are there, and its shape is checked: one PASS/FAIL line per check, and
// "N passed, M failed" alone on the last line; exit 1 on any failure.
import { writeFileSync } from 'node:fs';
import { Connection, Client } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { Resource } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const need of ['address', 'namespace', 'task-queue', 'workflow-id', 'otlp', 'jaeger', 'input']) {
  if (!args[need]) {
    console.error(`trace.mjs: --${need} is required`);
    process.exit(2);
  }
}
const RESULT_TIMEOUT_MS = 120000;
const JAEGER_TIMEOUT_MS = 60000;

let passed = 0;
let failed = 0;
const check = (ok, what, detail = '') => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${what}${!ok && detail ? ` (${detail})` : ''}`);
  return ok;
};
const finish = () => {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
};

// ---- the client's tracer: spans to the collector, and kept here to learn the trace id ----
const memory = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
  resource: new Resource({ 'service.name': 'keel-trace-test-client' }),
});
provider.addSpanProcessor(new SimpleSpanProcessor(memory));
provider.addSpanProcessor(new SimpleSpanProcessor(new OTLPTraceExporter({ url: args.otlp })));
// the interceptor injects the active span's context: that needs a context manager
provider.register({ contextManager: new AsyncLocalStorageContextManager().enable() });

const connection = await Connection.connect({ address: args.address });
const client = new Client({
  connection,
  namespace: args.namespace,
  interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] },
});

const handle = await client.workflow.start('keel.Procurement', {
  taskQueue: args['task-queue'],
  workflowId: args['workflow-id'],
  args: [JSON.parse(args.input)],
});
const result = await Promise.race([
  handle.result(),
  new Promise((_, reject) => setTimeout(() => reject(new Error('no result in time')), RESULT_TIMEOUT_MS)),
]).catch((e) => ({ error: String(e) }));
check(!result.error, 'the procurement run completed', JSON.stringify(result).slice(0, 300));
await provider.forceFlush();
await connection.close();

const start = memory.getFinishedSpans().find((s) => s.name === 'StartWorkflow:keel.Procurement');
if (!check(start !== undefined, "the client's interceptor made StartWorkflow:keel.Procurement")) finish();
const traceId = start.spanContext().traceId;
const startSpanId = start.spanContext().spanId;
console.log(`trace id ${traceId}`);

// ---- the trace, from Jaeger ----
// Jaeger's HTTP query API: GET /api/traces/<id> -> {data: [{spans: [...], processes: {...}}]}
const wanted = (spans) =>
  spans.some((s) => s.operationName === 'RunWorkflow:keel.Procurement') &&
  spans.some((s) => s.operationName.startsWith('execute_tool create_purchase_order')) &&
  spans.some((s) => s.operationName === 'StartWorkflow:keel.Procurement');
let trace = null;
const deadline = Date.now() + JAEGER_TIMEOUT_MS;
let lastError = '';
while (Date.now() < deadline) {
  try {
    const r = await fetch(`${args.jaeger}/api/traces/${traceId}`);
    if (r.ok) {
      const body = await r.json();
      const t = body.data && body.data[0];
      if (t && wanted(t.spans)) {
        trace = t;
        // the workers export every 200 ms: give the last batch a moment, then read once more
        await new Promise((res) => setTimeout(res, 1500));
        const again = await (await fetch(`${args.jaeger}/api/traces/${traceId}`)).json();
        trace = again.data[0];
        break;
      }
      lastError = t ? `${t.spans.length} spans so far` : 'no trace yet';
    } else {
      lastError = `HTTP ${r.status}`;
    }
  } catch (e) {
    lastError = String(e);
  }
  await new Promise((res) => setTimeout(res, 500));
}
if (!check(trace !== null, 'Jaeger has the trace with the run, the model and the tool spans', lastError)) finish();

const spans = trace.spans;
const byId = new Map(spans.map((s) => [s.spanID, s]));
const parentOf = (s) => {
  const ref = (s.references || []).find((r) => r.refType === 'CHILD_OF');
  return ref ? byId.get(ref.spanID) : undefined;
};
const service = (s) => trace.processes[s.processID].serviceName;
const tag = (s, key) => {
  const t = (s.tags || []).find((x) => x.key === key);
  return t ? t.value : undefined;
};
const named = (prefix) => spans.filter((s) => s.operationName.startsWith(prefix));
console.log(`trace: ${spans.length} spans: ${[...new Set(spans.map((s) => s.operationName))].sort().join(', ')}`);

check(spans.every((s) => s.traceID === traceId), 'every span has the trace id of the client span');
const client_ = byId.get(startSpanId);
check(client_ && service(client_) === 'keel-trace-test-client', "the client's span is in the trace");
const runs = named('RunWorkflow:keel.Procurement');
check(runs.length === 1, 'one RunWorkflow:keel.Procurement span (never again on replay)', `${runs.length}`);
const run = runs[0];
check(run && parentOf(run) === client_, 'RunWorkflow:keel.Procurement is a child of StartWorkflow:keel.Procurement');
check(run && service(run) === 'keel-worker', 'RunWorkflow comes from keel-worker');
check(run && tag(run, 'temporalWorkflowId') === args['workflow-id'], 'RunWorkflow carries the workflow id');

const startActs = named('StartActivity:');
const runActs = named('RunActivity:');
check(startActs.length > 0, 'keel scheduled activities with StartActivity spans', `${startActs.length}`);
check(startActs.every((s) => parentOf(s) === run), 'every StartActivity is a child of RunWorkflow');
const startIds = startActs.map((s) => s.spanID);
check(new Set(startIds).size === startIds.length, 'StartActivity span ids are unique (no replay duplicates)');
check(runActs.length >= startActs.length, 'every scheduled activity ran', `${runActs.length} ran, ${startActs.length} scheduled`);
check(
  runActs.every((s) => {
    const p = parentOf(s);
    return p && p.operationName === `StartActivity:${s.operationName.slice('RunActivity:'.length)}`;
  }),
  'every RunActivity:<type> is a child of StartActivity:<type>',
);

const chats = named('chat ');
check(chats.length > 0, 'model calls have chat spans', `${chats.length}`);
check(
  chats.every((s) => parentOf(s) && parentOf(s).operationName === 'RunActivity:llm.chat'),
  'every chat span is a child of RunActivity:llm.chat',
);
const chat = chats[0];
if (chat) {
  check(tag(chat, 'gen_ai.operation.name') === 'chat', 'chat: gen_ai.operation.name = chat');
  check(tag(chat, 'gen_ai.request.model') !== undefined, 'chat: gen_ai.request.model');
  check(tag(chat, 'gen_ai.response.model') !== undefined, 'chat: gen_ai.response.model');
  check(Number(tag(chat, 'gen_ai.usage.input_tokens')) > 0, 'chat: gen_ai.usage.input_tokens > 0');
  check(tag(chat, 'gen_ai.usage.output_tokens') !== undefined, 'chat: gen_ai.usage.output_tokens');
  check(tag(chat, 'server.address') === '127.0.0.1', 'chat: server.address');
  check(tag(chat, 'gen_ai.input.messages') === undefined, 'chat: no message content without KEEL_TRACE_CONTENT');
  const all = JSON.stringify(spans);
  check(!all.includes(args['api-key'] || 'sk-keel-test-0123456789abcdef'), 'the API key is nowhere in the trace');
}
const tools = named('execute_tool ');
check(tools.length > 0, 'tool calls have execute_tool spans', `${tools.length}`);
check(
  tools.every((s) => {
    const p = parentOf(s);
    return p && p.operationName.startsWith('RunActivity:') && tag(s, 'gen_ai.tool.name') === s.operationName.slice(13);
  }),
  'every execute_tool <name> is a child of its RunActivity and names gen_ai.tool.name',
);
const po = tools.find((s) => s.operationName === 'execute_tool create_purchase_order');
check(po && tag(po, 'gen_ai.tool.call.id') !== undefined && tag(po, 'keel.idempotency_key') !== undefined,
  'the purchase order: execute_tool create_purchase_order with a call id and an idempotency key');

// ---- a run that waits for a person: query and signal under one client span ----
if (args['approval-input']) {
  const tracer = provider.getTracer('keel-trace-test');
  const connection2 = await Connection.connect({ address: args.address });
  const client2 = new Client({
    connection: connection2,
    namespace: args.namespace,
    interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] },
  });
  const id2 = `${args['workflow-id']}-approval`;
  let traceId2;
  const outcome = await tracer.startActiveSpan('procurement request with approval', async (root) => {
    traceId2 = root.spanContext().traceId;
    try {
      const h = await client2.workflow.start('keel.Procurement', {
        taskQueue: args['task-queue'],
        workflowId: id2,
        args: [JSON.parse(args['approval-input'])],
      });
      let stage = '';
      const until = Date.now() + 60000;
      while (stage !== 'approval' && Date.now() < until) {
        await new Promise((res) => setTimeout(res, 500));
        stage = await h.query('status').then((s) => s.stage, () => '');
      }
      if (stage !== 'approval') return { error: `stage ${stage}, not approval` };
      await h.signal('approve', JSON.parse(args['approve-input']));
      return await Promise.race([
        h.result(),
        new Promise((_, reject) => setTimeout(() => reject(new Error('no result in time')), RESULT_TIMEOUT_MS)),
      ]);
    } catch (e) {
      return { error: String(e) };
    } finally {
      root.end();
    }
  });
  check(!outcome.error, 'the run that waited for approval completed', JSON.stringify(outcome).slice(0, 300));
  await provider.forceFlush();
  await connection2.close();
  let t2 = null;
  const until2 = Date.now() + JAEGER_TIMEOUT_MS;
  while (Date.now() < until2) {
    try {
      const body = await (await fetch(`${args.jaeger}/api/traces/${traceId2}`)).json();
      const t = body.data && body.data[0];
      if (t && t.spans.some((s) => s.operationName === 'HandleSignal:approve') &&
          t.spans.some((s) => s.operationName === 'RunWorkflow:keel.Procurement')) {
        await new Promise((res) => setTimeout(res, 1500));
        t2 = (await (await fetch(`${args.jaeger}/api/traces/${traceId2}`)).json()).data[0];
        break;
      }
    } catch (e) {
      /* not yet */
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  if (check(t2 !== null, 'Jaeger has the approval run\'s trace with its signal')) {
    const ids = new Map(t2.spans.map((s) => [s.spanID, s]));
    const up = (s) => {
      const ref = (s.references || []).find((r) => r.refType === 'CHILD_OF');
      return ref ? ids.get(ref.spanID) : undefined;
    };
    const one = (n) => t2.spans.filter((s) => s.operationName === n);
    const sig = one('HandleSignal:approve');
    check(sig.length === 1 && up(sig[0]) && up(sig[0]).operationName === 'SignalWorkflow:approve',
      'HandleSignal:approve, once, is a child of the client\'s SignalWorkflow:approve');
    const q = one('HandleQuery:status');
    check(q.length > 0 && q.every((s) => up(s) && up(s).operationName === 'QueryWorkflow:status'),
      'HandleQuery:status spans are children of the client\'s QueryWorkflow:status');
    const runs2 = one('RunWorkflow:keel.Procurement');
    check(runs2.length === 1 && up(runs2[0]) && up(runs2[0]).operationName === 'StartWorkflow:keel.Procurement',
      'the approval run: one RunWorkflow under StartWorkflow');
    check(one('execute_tool create_purchase_order').length === 1, 'the approval run ordered: one create_purchase_order');
    if (args['save-trace']) writeFileSync(args['save-trace'], JSON.stringify(t2));
  }
}

// ---- an update: the validator refuses one decision, the handler takes the next ----
if (args['batch-requester']) {
  const connection4 = await Connection.connect({ address: args.address });
  const client4 = new Client({
    connection: connection4,
    namespace: args.namespace,
    interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] },
  });
  const tracer = provider.getTracer('keel-trace-test');
  let traceId4;
  await tracer.startActiveSpan('approval by update', async (root) => {
    traceId4 = root.spanContext().traceId;
    try {
      const h = await client4.workflow.start('keel.Approval', {
        taskQueue: args['task-queue'],
        workflowId: `${args['workflow-id']}-update`,
        args: [{ subject: 'trace test: 1 monitor', requester: 'cy@example.com', approvers: ['ana@example.com'] }],
      });
      const refused = await h.executeUpdate('decide', { args: [{ approver: 'cy@example.com', decision: 'approve' }] })
        .then(() => false, () => true);
      check(refused, "keel.Approval's validator refuses the requester's own decision");
      const status = await h.executeUpdate('decide', { args: [{ approver: 'ana@example.com', decision: 'approve' }] })
        .catch((e) => ({ error: String(e) }));
      const result = await h.result().catch((e) => ({ error: String(e) }));
      check(!status.error && result.decision === 'approved', 'the approver\'s update decided the request',
        JSON.stringify([status, result]).slice(0, 300));
    } finally {
      root.end();
    }
  });
  await provider.forceFlush();
  await connection4.close();
  let t4 = null;
  const until4 = Date.now() + JAEGER_TIMEOUT_MS;
  while (traceId4 && Date.now() < until4) {
    try {
      const t = (await (await fetch(`${args.jaeger}/api/traces/${traceId4}`)).json()).data[0];
      if (t.spans.some((s) => s.operationName === 'HandleUpdate:decide') &&
          t.spans.some((s) => s.operationName === 'RunWorkflow:keel.Approval')) {
        await new Promise((res) => setTimeout(res, 1500));
        t4 = (await (await fetch(`${args.jaeger}/api/traces/${traceId4}`)).json()).data[0];
        break;
      }
    } catch (e) {
      /* not yet */
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  if (check(t4 !== null, "Jaeger has the update's spans")) {
    const ids = new Map(t4.spans.map((s) => [s.spanID, s]));
    const up = (s) => {
      const ref = (s.references || []).find((r) => r.refType === 'CHILD_OF');
      return ref ? ids.get(ref.spanID) : undefined;
    };
    const all = (n) => t4.spans.filter((s) => s.operationName === n);
    const underClient = (s) => up(s) && up(s).operationName === 'StartWorkflowUpdate:decide';
    const validates = all('ValidateUpdate:decide');
    check(validates.length === 2 && validates.every(underClient),
      'ValidateUpdate:decide, once for each update, under the client\'s StartWorkflowUpdate:decide', `${validates.length}`);
    const tagOf = (s, key) => ((s.tags || []).find((x) => x.key === key) || {}).value;
    check(validates.filter((s) => tagOf(s, 'error') === true || tagOf(s, 'otel.status_code') === 'ERROR').length === 1,
      'the refused update\'s ValidateUpdate span is marked as an error');
    const handles = all('HandleUpdate:decide');
    check(handles.length === 1 && handles.every(underClient),
      'HandleUpdate:decide, once, only for the accepted update, under its StartWorkflowUpdate:decide', `${handles.length}`);
  }
}

// ---- a batch: keel starts a child and continues as new, and the trace follows both ----
// The runner put two pending requisitions of --batch-requester in keel's database; with
// "limit": 1 the batch's first run claims one, runs its keel.Procurement child and continues as
// new for the other.
if (args['batch-requester']) {
  const connection3 = await Connection.connect({ address: args.address });
  const client3 = new Client({
    connection: connection3,
    namespace: args.namespace,
    interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor()] },
  });
  const h = await client3.workflow.start('keel.BatchProcurement', {
    taskQueue: args['task-queue'],
    workflowId: `${args['workflow-id']}-batch`,
    args: [{ filter: { requester: args['batch-requester'] }, limit: 1, max_concurrent: 1 }],
  });
  const report = await Promise.race([
    h.result(),
    new Promise((_, reject) => setTimeout(() => reject(new Error('no result in time')), RESULT_TIMEOUT_MS)),
  ]).catch((e) => ({ error: String(e) }));
  check(!report.error && report.runs >= 2 && (report.approved || []).length === 2,
    'the batch ordered both requisitions over two or more runs', JSON.stringify(report).slice(0, 300));
  await provider.forceFlush();
  await connection3.close();
  const batchStart = memory.getFinishedSpans().find((s) => s.name === 'StartWorkflow:keel.BatchProcurement');
  const traceId3 = batchStart && batchStart.spanContext().traceId;
  let t3 = null;
  const until3 = Date.now() + JAEGER_TIMEOUT_MS;
  while (traceId3 && Date.now() < until3) {
    try {
      const t = (await (await fetch(`${args.jaeger}/api/traces/${traceId3}`)).json()).data[0];
      const n = (name) => t.spans.filter((s) => s.operationName === name).length;
      if (n('RunWorkflow:keel.BatchProcurement') >= 2 && n('RunWorkflow:keel.Procurement') >= 2) {
        await new Promise((res) => setTimeout(res, 1500));
        t3 = (await (await fetch(`${args.jaeger}/api/traces/${traceId3}`)).json()).data[0];
        break;
      }
    } catch (e) {
      /* not yet */
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  if (check(t3 !== null, "Jaeger has the batch's trace: its runs and its children's")) {
    const ids = new Map(t3.spans.map((s) => [s.spanID, s]));
    const up = (s) => {
      const ref = (s.references || []).find((r) => r.refType === 'CHILD_OF');
      return ref ? ids.get(ref.spanID) : undefined;
    };
    const all = (n) => t3.spans.filter((s) => s.operationName === n);
    const batchRuns = all('RunWorkflow:keel.BatchProcurement');
    const first = batchRuns.find((s) => up(s) && up(s).operationName === 'StartWorkflow:keel.BatchProcurement');
    check(first !== undefined, "the batch's first RunWorkflow is a child of the client's StartWorkflow");
    const cans = all('ContinueAsNew:keel.BatchProcurement');
    check(cans.length >= 1 && cans.every((s) => up(s) && up(s).operationName === 'RunWorkflow:keel.BatchProcurement'),
      'ContinueAsNew:keel.BatchProcurement is a child of the RunWorkflow that continued');
    check(batchRuns.length === cans.length + 1 &&
      batchRuns.filter((s) => s !== first).every((s) => up(s) && up(s).operationName === 'ContinueAsNew:keel.BatchProcurement'),
      'each later run of the batch is a child of the ContinueAsNew before it', `${batchRuns.length} runs, ${cans.length} continues`);
    const starts = all('StartChildWorkflow:keel.Procurement');
    check(starts.length === 2 && starts.every((s) => up(s) && up(s).operationName === 'RunWorkflow:keel.BatchProcurement'),
      'each StartChildWorkflow:keel.Procurement is a child of the batch run that started it', `${starts.length}`);
    const children = all('RunWorkflow:keel.Procurement');
    check(children.length === 2 && children.every((s) => up(s) && up(s).operationName === 'StartChildWorkflow:keel.Procurement'),
      "each child's RunWorkflow:keel.Procurement is a child of its StartChildWorkflow");
    check(all('execute_tool create_purchase_order').length === 2 &&
      all('execute_tool create_purchase_order').every((s) => {
        for (let p = up(s); p; p = up(p)) if (p.operationName === 'RunWorkflow:keel.Procurement') return true;
        return false;
      }),
      "both purchase orders' execute_tool spans sit under a child's RunWorkflow");
  }
}
finish();
