// Shared pieces of the browser tests (ui.test.mjs with the tiny test model, e2e.test.mjs with the
// demo model, both on the real engine in www/pkg): the Chromium launch, the dev server as a child process, and waiting on the page's
// `hearth:*` events.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(WEB, '..');
export const ARTIFACTS = path.join(REPO, 'test-artifacts');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Headless Chromium here gets a SwiftShader WebGPU adapter from --enable-unsafe-webgpu alone
// (verified on Chromium 156, Debian 12): no Vulkan or ANGLE flags are needed, and adding
// --use-angle=swiftshader only slows adapter creation. WebGPU also needs a secure context, which
// http://127.0.0.1 is. The other flags keep a test browser from reaching out to the network.
export const BASE_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-dev-shm-usage',
];
export const WEBGPU_ARGS = ['--enable-unsafe-webgpu'];

const EVENTS = ['engine-ready', 'engine-error', 'models', 'import-progress', 'import-done', 'import-error',
  'load-progress', 'loaded', 'load-error', 'reply', 'reply-error'];

/** Starts web/serve.mjs as a child process on a free port; resolves once it prints its URL. */
export async function startServer({ testHooks = true, pkgDir, modelsDir } = {}) {
  const args = [path.join(WEB, 'serve.mjs'), '--port', '0', '--exit-with-parent'];
  if (testHooks) args.push('--test-hooks');
  if (pkgDir) args.push('--pkg', pkgDir);
  if (modelsDir) args.push('--models', modelsDir);
  // stdin is a pipe the server watches (--exit-with-parent): an interrupted test run, however it
  // ends, does not leave its server behind.
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const logs = [];
  let out = '';
  const url = await new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        const m = /^Hearth: (\S+)/.exec(line);
        if (m) resolve(m[1]);
        else if (line.startsWith('{')) logs.push(JSON.parse(line));
      }
    });
    child.on('exit', (code) => reject(new Error(`serve.mjs exited early (${code})`)));
  });
  return {
    url,
    logs,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Launches Chromium with a fresh profile; every page records the app's hearth:* events. */
export async function launch({ webgpu = true, viewport = { width: 1280, height: 860 } } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...BASE_ARGS, ...(webgpu ? WEBGPU_ARGS : [])],
    viewport,
  });
  await ctx.addInitScript((names) => {
    window.__hearth = [];
    for (const name of names) {
      document.addEventListener(`hearth:${name}`, (e) => window.__hearth.push({ name, detail: e.detail, t: performance.now() }));
    }
  }, EVENTS);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  return {
    ctx,
    page,
    problems,
    async close() {
      await ctx.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Events recorded on the current document (they reset on navigation). */
export const events = (page) => page.evaluate(() => window.__hearth);

/**
 * Waits until the page has recorded event `name` (past `since` events) matching `pred`'s source
 * (a function body over `e`, evaluated in the page), and returns it. Fails fast on `failOn` events.
 */
export async function waitEvent(page, name, { since = 0, timeout = 60_000, failOn = [] } = {}) {
  const handle = await page.waitForFunction(({ name, since, failOn }) => {
    const list = window.__hearth.slice(since);
    return list.find((e) => e.name === name) ?? list.find((e) => failOn.includes(e.name)) ?? null;
  }, { name, since, failOn }, { timeout, polling: 100 });
  const e = await handle.jsonValue();
  if (e.name !== name) throw new Error(`expected hearth:${name}, got hearth:${e.name}: ${JSON.stringify(e.detail)}`);
  return e;
}

export const eventCount = async (page) => (await events(page)).length;

/** Types a question, sends it with Enter, and returns {text, detail} of the finished reply. */
export async function ask(page, question, { timeout = 120_000 } = {}) {
  const since = await eventCount(page);
  await page.getByLabel('Message').fill(question);
  await page.getByLabel('Message').press('Enter');
  const e = await waitEvent(page, 'reply', { since, timeout, failOn: ['reply-error'] });
  // The reply is the bubble's text nodes; a status note, if any, is a child element.
  const text = await page.locator('.msg.assistant').last().evaluate((n) =>
    [...n.childNodes].filter((c) => c.nodeType === Node.TEXT_NODE).map((c) => c.data).join(''));
  return { text, detail: e.detail };
}

/** Sets generation settings through the settings form (as a user would). */
export async function setSettings(page, values) {
  const panel = page.locator('#settings-panel');
  if (!(await panel.evaluate((d) => d.open))) await panel.locator('summary').click();
  for (const [name, value] of Object.entries(values)) {
    await page.locator(`#settings [name="${name}"]`).fill(String(value));
  }
}

/**
 * Imports a URL through the page's URL field, with the server cutting the connection after
 * `dropAfter` bytes once, and resumes it if the import stopped. Returns what happened.
 */
export async function importInterrupted(page, server, file, dropAfter, { timeout = 300_000 } = {}) {
  const url = `${server.url}models/${file}?dropAfter=${dropAfter}`;
  const since = await eventCount(page);
  const t0 = Date.now();
  await page.getByLabel('GGUF URL').fill(url);
  await page.locator('#url-form button[type=submit]').click();
  const first = await page.waitForFunction((since) => window.__hearth.slice(since).find((e) => e.name === 'import-done' || e.name === 'import-error'), since, { timeout, polling: 100 });
  const outcome = await first.jsonValue();
  let storedAtStop = null;
  let resumeSince = null;
  if (outcome.name === 'import-error') {
    // The importer gave up at the drop: what it stored must be kept, and Resume must continue.
    const item = page.locator(`#models li[data-id="${file}"]`);
    storedAtStop = Number(await item.getAttribute('data-stored-bytes'));
    resumeSince = await eventCount(page);
    await item.getByRole('button', { name: /^Resume/ }).click();
    await waitEvent(page, 'import-done', { since: resumeSince, timeout, failOn: ['import-error'] });
  }
  const importMs = Date.now() - t0;
  const all = await events(page);
  const progress = all.slice(resumeSince ?? since).filter((e) => e.name === 'import-progress').map((e) => e.detail.bytes);
  return { outcome: outcome.name, storedAtStop, resumedProgress: resumeSince === null ? null : progress, importMs };
}

export function ensureArtifacts() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
