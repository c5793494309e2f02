// Drives headless Debian chromium through examples/web for tests/browser.rs.
//
//   node examples/web/test/browser.mjs '{"runs": [{"name": "a", "url": "http://…/?autorun=1&…",
//        "screenshot": "target/browser-artifacts/a.png"}], "chromium": "/usr/bin/chromium"}'
//
// Optional: "args" (more chromium flags, e.g. --host-resolver-rules to map test host names to
// 127.0.0.1) and "ignore_https_errors" (test certificates), used by tests/cloudfront_browser.rs.
//
// Each run gets its own browser with a fresh profile. Prints one JSON document on stdout:
// {"runs": [{name, result (the page's #result JSON), console: [...], failed: [...],
// responses: [...], screenshot}]}; a page that shows no result in time gets result
// {state: "timeout"}. Exits non-zero only when the browser itself fails.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const spec = JSON.parse(process.argv[2] ?? '{}');
const executablePath = spec.chromium ?? '/usr/bin/chromium';
const timeout = spec.timeout_ms ?? 30000;
const args = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

async function once(run) {
  const profile = mkdtempSync(join(tmpdir(), 'presignd-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath, headless: true, args: [...args, ...(spec.args ?? [])],
    ignoreHTTPSErrors: spec.ignore_https_errors ?? false,
    viewport: { width: 1100, height: 1100 },
  });
  const log = { name: run.name, console: [], failed: [], responses: [], screenshot: run.screenshot };
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.on('console', (m) => log.console.push(`${m.type()}: ${m.text()}`));
    page.on('requestfailed', (r) =>
      log.failed.push({ method: r.method(), url: r.url(), error: r.failure()?.errorText ?? '' }));
    page.on('response', (r) =>
      log.responses.push({ method: r.request().method(), url: r.url(), status: r.status() }));
    page.on('pageerror', (e) => log.console.push(`pageerror: ${e.message}`));
    await page.goto(run.url, { timeout });
    try {
      await page.waitForSelector('#result[data-state="done"], #result[data-state="error"]', { timeout });
      log.result = JSON.parse(await page.locator('#result').textContent());
    } catch (e) {
      // A page that never finishes still reports what it logged (the test prints the run).
      if (e.name !== 'TimeoutError') throw e;
      log.result = { state: 'timeout', steps: await page.locator('#steps').textContent().catch(() => null) };
    }
    log.summary = await page.locator('#summary').textContent();
    if (run.screenshot) {
      mkdirSync(dirname(run.screenshot), { recursive: true });
      await page.screenshot({ path: run.screenshot, fullPage: true });
    }
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  return log;
}

const runs = [];
for (const run of spec.runs ?? []) runs.push(await once(run));
process.stdout.write(JSON.stringify({ runs }, null, 2) + '\n');
