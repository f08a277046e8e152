#!/usr/bin/env node
// tools/trace-diagram.mjs — draw one trace, as Jaeger's query API returns it, as a waterfall.
//
//   node tools/trace-diagram.mjs TRACE.json OUT.svg [--text OUT.txt]
//
// TRACE.json is the body of GET /api/traces/<trace id> (or its data[0]). The SVG has one row per
// span, parents above their children in start order: the span's name indented by its depth,
// its service, and a bar placed on the trace's time axis (colour by service); the text form is
// the same tree with durations, as docs/observability.md shows it. tests/trace/run draws the
// trace it checked, so the picture in the docs is made from a real run
// (docs/images/procurement-trace.svg). Needs nothing but node.
import { readFileSync, writeFileSync } from 'node:fs';

const [input, output, ...rest] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node tools/trace-diagram.mjs TRACE.json OUT.svg [--text OUT.txt]');
  process.exit(2);
}
const textOut = rest[0] === '--text' ? rest[1] : undefined;

let trace;
try {
  trace = JSON.parse(readFileSync(input, 'utf8'));
} catch (e) {
  console.error(`trace-diagram: ${input}: ${e.message}`);
  process.exit(1);
}
if (trace && trace.data) trace = trace.data[0];
if (!trace || !Array.isArray(trace.spans) || trace.spans.length === 0) {
  console.error(`trace-diagram: ${input}: no spans`);
  process.exit(1);
}
const service = (s) => (trace.processes[s.processID] || {}).serviceName || s.processID;
const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
const parentId = (s) => {
  const ref = (s.references || []).find((r) => r.refType === 'CHILD_OF' && byId.has(r.spanID));
  return ref ? ref.spanID : null;
};
const children = new Map();
const roots = [];
for (const s of trace.spans) {
  const p = parentId(s);
  if (p === null) roots.push(s);
  else (children.get(p) || children.set(p, []).get(p)).push(s);
}
const order = (list) => list.sort((a, b) => a.startTime - b.startTime || a.operationName.localeCompare(b.operationName));

// Depth-first rows; `lead` is the tree drawing for the text form.
const rows = [];
const walk = (s, depth, lead, last) => {
  rows.push({ s, depth, lead: depth === 0 ? '' : lead + (last ? '└─ ' : '├─ ') });
  const kids = order(children.get(s.spanID) || []);
  kids.forEach((k, i) => walk(k, depth + 1, depth === 0 ? '' : lead + (last ? '   ' : '│  '), i === kids.length - 1));
};
order(roots).forEach((r) => walk(r, 0, '', true));

const t0 = Math.min(...trace.spans.map((s) => s.startTime));
const t1 = Math.max(...trace.spans.map((s) => s.startTime + s.duration));
const total = Math.max(t1 - t0, 1);
const ms = (us) => (us / 1000).toFixed(1);

if (textOut) {
  const width = Math.max(...rows.map((r) => [...(r.lead + r.s.operationName)].length)) + 2;
  const svcWidth = Math.max(...rows.map((r) => service(r.s).length)) + 2;
  const lines = rows.map((r) => {
    const name = r.lead + r.s.operationName;
    return name + ' '.repeat(width - [...name].length) + service(r.s).padEnd(svcWidth) + `${ms(r.s.duration)} ms`.padStart(10);
  });
  writeFileSync(textOut, lines.join('\n') + '\n');
}

const esc = (x) => String(x).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const palette = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#b07aa1'];
const services = [...new Set(rows.map((r) => service(r.s)))];
const colour = (svc) => palette[services.indexOf(svc) % palette.length];
const rowH = 18, top = 48, nameW = 350, svcW = 170, barX = nameW + svcW, barW = 560, W = barX + barW + 90;
const H = top + rows.length * rowH + 40;
const out = [];
out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
  `font-family="DejaVu Sans Mono, monospace" font-size="11">`);
out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
out.push(`<text x="8" y="18" font-size="13" font-weight="bold">trace ${esc(trace.traceID)}: ` +
  `${rows.length} spans, ${ms(total)} ms</text>`);
out.push(`<text x="8" y="38" fill="#555">span</text><text x="${nameW}" y="38" fill="#555">service</text>`);
for (let i = 0; i <= 4; i++) {
  const x = barX + (barW * i) / 4;
  out.push(`<line x1="${x}" y1="${top - 6}" x2="${x}" y2="${H - 30}" stroke="#e4e4e4"/>`);
  out.push(`<text x="${x}" y="38" fill="#555" text-anchor="middle">${ms((total * i) / 4)} ms</text>`);
}
rows.forEach((r, i) => {
  const y = top + i * rowH;
  if (i % 2 === 0) out.push(`<rect x="0" y="${y}" width="${W}" height="${rowH}" fill="#f6f8fa"/>`);
  const x = barX + ((r.s.startTime - t0) / total) * barW;
  const w = Math.max((r.s.duration / total) * barW, 1.5);
  out.push(`<text x="${8 + r.depth * 14}" y="${y + 13}">${esc(r.s.operationName)}</text>`);
  out.push(`<text x="${nameW}" y="${y + 13}" fill="#555">${esc(service(r.s))}</text>`);
  out.push(`<rect x="${x.toFixed(1)}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" rx="2" ` +
    `fill="${colour(service(r.s))}"><title>${esc(r.s.operationName)}: ${ms(r.s.duration)} ms</title></rect>`);
  out.push(`<text x="${(x + w + 4).toFixed(1)}" y="${y + 13}" fill="#333">${ms(r.s.duration)} ms</text>`);
});
services.forEach((svc, i) => {
  const x = 8 + i * 220;
  out.push(`<rect x="${x}" y="${H - 22}" width="12" height="12" fill="${colour(svc)}"/>`);
  out.push(`<text x="${x + 18}" y="${H - 12}">${esc(svc)}</text>`);
});
out.push('</svg>');
writeFileSync(output, out.join('\n') + '\n');
console.log(`trace-diagram: ${rows.length} spans -> ${output}${textOut ? ` and ${textOut}` : ''}`);
