// Shared set-up for the browser tests: a static server for luci-app/ on
// 127.0.0.1 (python3 -m http.server, random free port), headless Chromium via
// playwright-core, and a page whose ubus calls are answered from a queue of
// documents, so each poll tick can be served a different fixture.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const here = dirname(fileURLToPath(import.meta.url));
export const appDir = join(here, '..');
// status.json and status-next.json come from a fresh capture in the namespace
// test bed when run.sh made one (MPBOND_STATUS_DIR), else from the committed
// capture in fixtures/.
const CAPTURED = ['status.json', 'status-next.json'];
export const fixtureDir = (name) =>
  (process.env.MPBOND_STATUS_DIR && CAPTURED.includes(name)) ? process.env.MPBOND_STATUS_DIR : join(here, 'fixtures');
export const fixture = (name) => JSON.parse(readFileSync(join(fixtureDir(name), name), 'utf8'));

const DEADLINE_MS = 15000;

/** Starts `python3 -m http.server 0` in luci-app/ and resolves with its base URL. */
export function startServer() {
  const proc = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', appDir],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill(); reject(new Error('http.server did not start')); }, DEADLINE_MS);
    let buf = '';
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = /port (\d+)/.exec(buf);
      if (m) { clearTimeout(timer); resolve({ proc, base: `http://127.0.0.1:${m[1]}` }); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`http.server exited ${code}`)); });
  });
}

export async function startBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    timeout: DEADLINE_MS,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/**
 * Opens the harness with `view` and answers each ubus call with the next entry
 * of `replies` (the last one repeats). An entry is a status document (ubus
 * status 0), `{ ubusStatus: N }` for a failed call, `{ rpcError: { code,
 * message } }` for a JSON-RPC error (uhttpd-mod-ubus answers an expired
 * session with -32002 "Access denied") or `{ httpStatus: N }`. Everything
 * that is not our server is aborted, so nothing leaves the machine.
 */
export async function openView(browser, base, view, replies) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const queue = replies.slice();
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (!url.startsWith(base + '/')) return route.abort();
    if (!url.endsWith('/ubus')) return route.continue();
    const req = route.request().postDataJSON();
    const next = queue.length > 1 ? queue.shift() : queue[0];
    if (next.httpStatus) return route.fulfill({ status: next.httpStatus, contentType: 'text/plain', body: 'denied' });
    const reply = next.rpcError ? { error: next.rpcError } : { result: next.ubusStatus ? [next.ubusStatus] : [0, next] };
    return route.fulfill({ contentType: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: req.id, ...reply }) });
  });
  await page.goto(`${base}/tests/harness/index.html?view=${view}`);
  await page.waitForFunction(() => document.body.dataset.ready || document.body.dataset.error, null, { timeout: DEADLINE_MS });
  const bootError = await page.evaluate(() => document.body.dataset.error || null);
  if (bootError) throw new Error('view failed to load: ' + bootError);
  return { page, errors };
}

/** Runs every function the view gave poll.add once, like one poll interval passing. */
export const tick = (page) => page.evaluate(() => window.standin.tick());
