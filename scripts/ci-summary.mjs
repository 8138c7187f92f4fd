// Prints the final "N passed, N failed" line for .ci/run from vitest's JSON report; usage: node scripts/ci-summary.mjs <report.json> <vitest-exit-code>
import fs from 'node:fs';
import path from 'node:path';

const [reportPath = '.tmp/vitest.json', exitArg = '1'] = process.argv.slice(2);
const vitestExit = Number(exitArg) || 0;

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

console.log(`${passed} passed, ${failed} failed`);
// Exit status for the caller: vitest's own code, but never success when something failed or nothing ran.
process.exitCode = vitestExit !== 0 ? vitestExit : failed > 0 || passed === 0 ? 1 : 0;
