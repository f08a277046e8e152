// tests/webui/webui.mjs - read one workflow run from the Temporal Web UI in headless Chromium.
//
// tests/webui/run starts the run and calls this with what the operator must see:
//   --ui URL --namespace NS --chromium PATH --workflow-id ID --run-id RUN
//   --expect-input TEXT...            in the Input panel of the Event History tab
//   --expect-search-attribute K=V...  in the Search Attributes tab ("K": "V")
//   --expect-query NAME:K=V...        in the Queries tab, after running query NAME ("K": "V")
//   --expect-call-stack TEXT...       in the Call Stack tab (keel's __stack_trace answer)
//   --expect-sdk TEXT                 the run's "Workflow SDK" in its header ("Keel 0.1.0": the
//                                     sdk_metadata of keel's task completions)
//   --expect-current-details TEXT...  in the run's Current Details (User Metadata tab: the
//                                     __temporal_workflow_metadata answer's currentDetails)
//   --expect-event TEXT...            in the Event History (timer and activity summaries)
//   --expect-worker TEXT...           in the run's Workers tab (the heartbeating worker's
//                                     identity, SDK...), and in the namespace's Workers page
//   --screenshot FILE                 the Event History page, with the User Metadata and Workers
//                                     tabs and the Call Stack, Queries and Search Attributes
//                                     panels of the same run below it
// Every check reads the page's text, the way an operator reads it; each prints one PASS or FAIL
// line, and the exit status is 1 if any failed.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const WAIT_MS = 30000; // one panel: the UI asks the server, the server asks the worker
const VIEWPORT = { width: 1440, height: 900 }; // wide enough for the run's tabs on one line
const MAX_SHOT_PX = 6000;

function parseArgs(argv) {
  const a = {
    expectInput: [],
    expectSearchAttribute: [],
    expectQuery: [],
    expectCallStack: [],
    expectCurrentDetails: [],
    expectEvent: [],
    expectWorker: [],
  };
  const lists = new Set(Object.keys(a));
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (!flag.startsWith('--') || value === undefined) usage(`bad argument '${flag}'`);
    const key = flag.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (lists.has(key)) a[key].push(value);
    else a[key] = value;
  }
  for (const k of ['ui', 'namespace', 'chromium', 'workflowId', 'runId', 'screenshot']) {
    if (!a[k]) usage(`missing --${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
  }
  return a;
}

function usage(why) {
  console.error(`webui.mjs: ${why} (see the comment at the top of tests/webui/webui.mjs)`);
  process.exit(2);
}

let failed = 0;
function check(name, ok, detail) {
  if (ok) console.log(`PASS ${name}`);
  else {
    failed++;
    console.log(`FAIL ${name}: ${detail}`);
  }
}

// `"key": "value"` as the UI's JSON view prints it (two-space indentation, one member a line).
const member = (k, v) => `"${k}": ${JSON.stringify(v)}`;

// The text of a read-only code panel (the UI's JSON views are text boxes named after the panel),
// once it contains every one of `wanted`, or whatever it shows after WAIT_MS.
async function panelText(page, name, wanted) {
  const box = page.getByRole('textbox', { name, exact: true }).first();
  try {
    await box.waitFor({ timeout: WAIT_MS });
  } catch {
    return null;
  }
  const deadline = Date.now() + WAIT_MS;
  let text = '';
  for (;;) {
    text = await box.innerText();
    if (wanted.every((w) => text.includes(w)) || Date.now() > deadline) return text;
    await page.waitForTimeout(250);
  }
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The text around the first `near` in t (or its start), for a FAIL line.
function excerptAround(t, near) {
  const i = Math.max(0, t.indexOf(near));
  return JSON.stringify(t.slice(Math.max(0, i - 200), i + 600));
}

// The element's text once ok(text) holds, or whatever it shows after WAIT_MS.
async function textUntil(loc, ok) {
  const deadline = Date.now() + WAIT_MS;
  let text = '';
  for (;;) {
    try {
      text = await loc.first().innerText();
    } catch {
      text = '';
    }
    if (ok(text) || Date.now() > deadline) return text;
    await loc.page().waitForTimeout(250);
  }
}

const excerpt = (t) => (t === null ? '(panel not found)' : JSON.stringify(t.slice(0, 600)));

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const base =
    `${a.ui.replace(/\/$/, '')}/namespaces/${encodeURIComponent(a.namespace)}` +
    `/workflows/${encodeURIComponent(a.workflowId)}/${encodeURIComponent(a.runId)}`;
  // /dev/shm is small in containers; Chromium then uses /tmp for shared memory.
  const args = ['--disable-dev-shm-usage'];
  // Chromium's sandbox needs an unprivileged user namespace, which root does not get.
  if (process.getuid && process.getuid() === 0) args.push('--no-sandbox');
  const browser = await chromium.launch({ executablePath: a.chromium, headless: true, args });
  const shots = [];
  let t0 = Date.now();
  const took = (what) => {
    console.log(`webui: ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    t0 = Date.now();
  };
  try {
    const page = await browser.newPage({ viewport: VIEWPORT });
    console.log(`webui: Chromium ${browser.version()}, ${base}/history`);

    // The Event History tab: the run's header and its Input panel.
    await page.goto(`${base}/history`, { waitUntil: 'load' });
    const input = await panelText(page, 'Input', a.expectInput);
    for (const want of a.expectInput) {
      check(`Input panel shows ${JSON.stringify(want)}`, input?.includes(want), excerpt(input));
    }
    const header = await page.locator('main').innerText();
    check(
      `page names the run ${a.workflowId} and says Running`,
      header.includes(a.workflowId) && header.includes(a.runId) && /\bRunning\b/.test(header),
      JSON.stringify(header.slice(0, 400)),
    );
    // The header: which SDK ran the run (sdk_metadata), shown as "Workflow SDK  Keel 0.1.0".
    if (a.expectSdk) {
      const re = new RegExp(
        'Workflow SDK\\s*' + a.expectSdk.split(/\s+/).map(escapeRe).join('\\s*'),
      );
      const text = await textUntil(page.locator('main'), (t) => re.test(t));
      check(`header says Workflow SDK ${a.expectSdk}`, re.test(text), excerptAround(text, 'SDK'));
    }
    // The event history: timers and activities named by their summaries.
    for (const want of a.expectEvent) {
      const text = await textUntil(page.locator('main'), (t) => t.includes(want));
      check(`Event History shows ${JSON.stringify(want)}`, text.includes(want), excerptAround(text, 'Timer'));
    }
    shots.push({ title: 'Event History', png: await wholePageShot(page) });
    took('Event History tab');

    // Current Details (the User Metadata tab): the workflow's one-line state, keel's answer to
    // __temporal_workflow_metadata (its currentDetails).
    if (a.expectCurrentDetails.length) {
      await page.goto(`${base}/user-metadata`, { waitUntil: 'load' });
      // The UI renders the details as Markdown in an iframe of their own: read the frames too.
      const text = await textUntil(page.locator('main'), (t) => t.includes('Current Details'));
      const deadline = Date.now() + WAIT_MS;
      let shown = '';
      while (!a.expectCurrentDetails.every((w) => shown.includes(w)) && Date.now() < deadline) {
        await page.waitForTimeout(250);
        shown = '';
        for (const f of page.frames()) {
          if (f === page.mainFrame()) continue;
          shown += await f.locator('body').innerText().catch(() => '');
        }
      }
      for (const want of a.expectCurrentDetails) {
        check(
          `Current Details show ${JSON.stringify(want)}`,
          text.includes('Current Details') && shown.includes(want),
          `${excerptAround(text, 'Current Details')}; frames: ${JSON.stringify(shown.slice(0, 400))}`,
        );
      }
      shots.push({ title: 'User Metadata: Current Details', png: await wholePageShot(page) });
      took('User Metadata tab');
    }

    // The run's Workers tab: the worker's heartbeat (identity, SDK, status), not only its polls.
    if (a.expectWorker.length) {
      await page.goto(`${base}/workers`, { waitUntil: 'load' });
      const text = await textUntil(page.locator('main'), (t) => a.expectWorker.every((w) => t.includes(w)));
      for (const want of a.expectWorker) {
        check(`Workers tab shows ${JSON.stringify(want)}`, text.includes(want), excerptAround(text, 'Worker'));
      }
      check(
        'Workers tab has heartbeats',
        !text.includes('No Workers Sending Heartbeats'),
        excerptAround(text, 'Heartbeats'),
      );
      shots.push({ title: 'Workers', png: await wholePageShot(page) });
      took('Workers tab');
      const ns = `${a.ui.replace(/\/$/, '')}/namespaces/${encodeURIComponent(a.namespace)}/workers`;
      await page.goto(ns, { waitUntil: 'load' });
      const all = await textUntil(page.locator('main'), (t) => t.includes(a.expectWorker[0]));
      check(
        `namespace Workers page lists ${JSON.stringify(a.expectWorker[0])}`,
        all.includes(a.expectWorker[0]),
        excerptAround(all, 'Worker'),
      );
      took('namespace Workers page');
    }

    // The Call Stack tab: keel answers __stack_trace with where the run stands.
    if (a.expectCallStack.length) {
      await page.goto(`${base}/call-stack`, { waitUntil: 'load' });
      const stack = await panelText(page, 'Call Stack', a.expectCallStack);
      for (const want of a.expectCallStack) {
        check(`Call Stack tab shows ${JSON.stringify(want)}`, stack?.includes(want), excerpt(stack));
      }
      if (stack !== null) console.log(`webui: call stack: ${stack.trim()}`);
      shots.push({ title: 'Call Stack', png: await panelShot(page, 'Call Stack') });
      took('Call Stack tab');
    }

    // The Queries tab: pick each query, run it, read its result.
    const byQuery = new Map();
    for (const q of a.expectQuery) {
      const m = /^([^:]+):([^=]+)=(.*)$/.exec(q);
      if (!m) usage(`--expect-query wants NAME:KEY=VALUE, got '${q}'`);
      if (!byQuery.has(m[1])) byQuery.set(m[1], []);
      byQuery.get(m[1]).push(member(m[2], m[3]));
    }
    for (const [name, wanted] of byQuery) {
      await page.goto(`${base}/query`, { waitUntil: 'load' });
      const result = await runQuery(page, name, wanted);
      for (const want of wanted) {
        check(`Queries tab: ${name} shows ${want}`, result?.includes(want), excerpt(result));
      }
      shots.push({ title: `Queries: ${name}`, png: await panelShot(page, 'Query Result') });
      took(`Queries tab (${name})`);
    }

    // The Search Attributes tab.
    if (a.expectSearchAttribute.length) {
      const wanted = a.expectSearchAttribute.map((kv) => {
        const i = kv.indexOf('=');
        if (i < 1) usage(`--expect-search-attribute wants KEY=VALUE, got '${kv}'`);
        return member(kv.slice(0, i), kv.slice(i + 1));
      });
      await page.goto(`${base}/search-attributes`, { waitUntil: 'load' });
      const attrs = await panelText(page, 'Search Attributes', wanted);
      for (const want of wanted) {
        check(`Search Attributes tab shows ${want}`, attrs?.includes(want), excerpt(attrs));
      }
      shots.push({ title: 'Search Attributes', png: await panelShot(page, 'Search Attributes') });
      took('Search Attributes tab');
    }

    await saveScreenshot(browser, a, shots);
    took('screenshot written');
  } finally {
    await browser.close();
  }
  console.log(failed ? `webui: ${failed} check(s) failed` : 'webui: all checks passed');
  process.exit(failed ? 1 : 0);
}

// Select the query in the Query Type menu (the first one is preselected), run it, and return the
// Query Result panel's text.
async function runQuery(page, name, wanted) {
  const select = page.getByTestId('query-select-button');
  try {
    await select.waitFor({ timeout: WAIT_MS });
  } catch {
    return null;
  }
  if ((await page.getByTestId('query-select').inputValue()) !== name) {
    await select.click();
    await page.getByRole('option', { name, exact: true }).click();
  }
  await page.getByRole('button', { name: 'Run Query' }).click();
  return panelText(page, 'Query Result', wanted);
}

// The whole page: the Web UI scrolls its content in an inner element (#content-wrapper), not
// the document, so the viewport grows to that element's height first (up to MAX_SHOT_PX).
async function wholePageShot(page) {
  const height = await page.evaluate(() => {
    const el = document.getElementById('content-wrapper') || document.documentElement;
    return el.scrollHeight;
  });
  const size = page.viewportSize();
  await page.setViewportSize({ width: size.width, height: Math.min(Math.max(height, size.height), MAX_SHOT_PX) });
  await page.waitForTimeout(500); // the event table renders the rows that came into view
  const png = await page.screenshot({ fullPage: true });
  await page.setViewportSize(size);
  return png;
}

// The tab strip and the named panel below it, as the operator sees them (the run's header is
// already in the first capture).
async function panelShot(page, name) {
  const box = async (loc) => ((await loc.count()) ? loc.boundingBox() : null);
  const tabs = await box(page.getByRole('tablist').first());
  const panel = await box(page.getByRole('textbox', { name, exact: true }).first());
  const main = await box(page.locator('main'));
  if (!tabs || !panel || !main) return page.screenshot(); // a check failed already: show what is there
  const y = Math.max(0, tabs.y - 12);
  return page.screenshot({
    clip: { x: main.x, y, width: main.width, height: panel.y + panel.height + 16 - y },
  });
}

// One image: the captures of the run's tabs, one below the other, each under its tab's name,
// laid out and photographed by the same browser.
async function saveScreenshot(browser, a, shots) {
  const page = await browser.newPage({ viewport: { width: VIEWPORT.width + 34, height: 900 } });
  const esc = (s) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const parts = shots
    .map(
      (s) =>
        `<h2>${esc(s.title)}</h2><img src="data:image/png;base64,${s.png.toString('base64')}">`,
    )
    .join('');
  await page.setContent(
    `<!doctype html><html><head><style>
       body { margin: 0; padding: 12px 16px; font: 14px sans-serif; background: #e5e7eb; }
       h1 { font-size: 18px; margin: 4px 0 8px; } h2 { font-size: 15px; margin: 16px 0 6px; }
       img { display: block; border: 1px solid #9ca3af; background: white; }
     </style></head><body>
     <h1>Temporal Web UI: ${esc(a.workflowId)} / ${esc(a.runId)} (tests/webui/run)</h1>
     ${parts}</body></html>`,
    { waitUntil: 'load' },
  );
  mkdirSync(dirname(a.screenshot), { recursive: true });
  await page.screenshot({ path: a.screenshot, fullPage: true });
  console.log(`webui: screenshot saved to ${a.screenshot}`);
}

main().catch((e) => {
  console.log(`FAIL webui.mjs: ${e.stack || e}`);
  process.exit(1);
});
