// Prints the final "N passed, N failed" line for .ci/run from vitest's JSON reports; usage: node scripts/ci-summary.mjs <report.json> <vitest-exit-code> [<report.json> <exit-code> …]
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
if (args.length === 0) args.push('.tmp/vitest.json', '1');

// When vitest dies before collecting (e.g. globalSetup throws) the report lists no files, so fall
// back to the test files on disk: each counts as one failure rather than silently vanishing.
function testFilesOnDisk(dir = 'test') {
  let n = 0;
  let entries = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += testFilesOnDisk(p);
    else if (e.name.endsWith('.test.ts')) n += 1;
  }
  return n;
}

function count(reportPath, vitestExit) {
  let report = null;
  try {
    report = JSON.parse(fs.readFileSync(reportPath, 'utf8'));
  } catch {
    report = null;
  }
  let passed = 0;
  let failed = 0;
  if (report) {
    passed = report.numPassedTests ?? 0;
    failed = report.numFailedTests ?? 0;
    for (const file of report.testResults ?? []) {
      if (file.status !== 'failed') continue;
      const results = file.assertionResults ?? [];
      if (results.some((a) => a.status === 'failed')) continue;
      // The file failed without a failing test: it did not load, or a hook failed and its tests were
      // skipped. Those tests never ran, so they count as failures (at least one per file).
      failed += Math.max(1, results.filter((a) => a.status !== 'passed').length);
    }
  }
  if (vitestExit !== 0 && passed + failed === 0) failed = Math.max(1, testFilesOnDisk());
  return { passed, failed };
}

let passed = 0;
let failed = 0;
let worstExit = 0;
for (let i = 0; i < args.length; i += 2) {
  const vitestExit = Number(args[i + 1] ?? '1') || 0;
  const r = count(args[i], vitestExit);
  passed += r.passed;
  failed += r.failed;
  if (vitestExit !== 0 && worstExit === 0) worstExit = vitestExit;
}

console.log(`${passed} passed, ${failed} failed`);
// Exit status for the caller: vitest's own code, but never success when something failed or nothing ran.
process.exitCode = worstExit !== 0 ? worstExit : failed > 0 || passed === 0 ? 1 : 0;
