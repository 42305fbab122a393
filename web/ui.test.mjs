// The page in a real browser with a fake engine (web/fake-pkg): `node --test web/ui.test.mjs`.
// It needs no wasm build, so it checks now what does not depend on the Rust side: the page, the
// worker protocol, the resumable import over a really interrupted HTTP download, settings kept
// across visits, multi-turn history, stop, text-only rendering and the offline service worker.
// e2e.test.mjs runs the same journey with the real engine.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WEB, REPO, startServer, launch, waitEvent, eventCount, ask, setSettings, importInterrupted, ensureArtifacts } from './helpers.mjs';

const MODEL = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const modelPath = path.join(REPO, 'models', MODEL);
const haveModel = fs.existsSync(modelPath);
const skip = haveModel ? false : `models/${MODEL} is missing (run scripts/fetch-model.sh)`;

let server, browser;

before(async () => {
  server = await startServer({ testHooks: true, pkgDir: path.join(WEB, 'fake-pkg') });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('without WebGPU the page says which browsers work', async () => {
  const b = await launch({ webgpu: false });
  try {
    await b.page.goto(server.url);
    await b.page.locator('#nogpu').waitFor({ state: 'visible', timeout: 30_000 });
    const text = await b.page.locator('#nogpu').innerText();
    for (const s of ['Chrome or Edge 113+', 'Chrome 121+ on Android', 'Safari 26+', 'Firefox 141+ on Windows', 'enable-unsafe-webgpu']) {
      assert.ok(text.includes(s), `missing "${s}"`);
    }
    assert.match(text, /no GPU adapter|does not expose WebGPU/);
    await b.page.screenshot({ path: path.join(ensureArtifacts(), 'ui-no-webgpu.png'), fullPage: true });
  } finally {
    await b.close();
  }
});

test('a new build replaces the offline copy when the user accepts the update', async () => {
  // A built pkg/ (fake engine, a stand-in wasm, a build version) in a temporary folder.
  const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-pkg-'));
  fs.copyFileSync(path.join(WEB, 'fake-pkg', 'hearth.js'), path.join(pkg, 'hearth.js'));
  fs.writeFileSync(path.join(pkg, 'hearth_bg.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  const stamp = (v) => fs.writeFileSync(path.join(pkg, 'build-version.js'), `self.HEARTH_BUILD = "${v}";\n`);
  stamp('build-one');
  const srv = await startServer({ pkgDir: pkg });
  const b = await launch();
  try {
    const { page } = b;
    await page.goto(srv.url);
    await waitEvent(page, 'engine-ready', { failOn: ['engine-error'] });
    const keys = () => page.evaluate(async () => (await caches.keys()).filter((k) => k.startsWith('hearth-shell-')));
    await page.waitForFunction(() => /Build build-one\./.test(document.getElementById('build').textContent));
    assert.deepEqual(await keys(), ['hearth-shell-build-one']);

    stamp('build-two');
    await page.reload();
    await page.locator('#update').waitFor({ state: 'visible', timeout: 30_000 });
    // Until accepted, the page keeps running the old build (cache-first shell).
    assert.match(await page.locator('#build').innerText(), /build-one/);
    await Promise.all([page.waitForEvent('load'), page.locator('#update').click()]);
    await page.waitForFunction(() => /Build build-two\./.test(document.getElementById('build').textContent), null, { timeout: 30_000 });
    assert.deepEqual(await keys(), ['hearth-shell-build-two'], 'the old cache is deleted');
  } finally {
    await b.close();
    await srv.stop();
    fs.rmSync(pkg, { recursive: true, force: true });
  }
});

test('the whole journey with the fake engine', { skip }, async (t) => {
  browser = await launch();
  const { page } = browser;
  const size = fs.statSync(modelPath).size;

  await t.test('the page starts and finds a WebGPU adapter', async () => {
    await page.goto(server.url);
    const e = await waitEvent(page, 'engine-ready', { failOn: ['engine-error'] });
    assert.ok(e.detail.engine, 'no engine: WebGPU missing in the test browser?');
    assert.equal(await page.locator('#nogpu').isHidden(), true);
    assert.match(await page.locator('#status').innerText(), /GPU: fake engine/);
    assert.equal(await page.getByLabel('Message').isDisabled(), true, 'chat must wait for a model');
  });

  await t.test('an interrupted import resumes from where it stopped', async () => {
    const dropAfter = Math.floor(size * 0.45);
    const r = await importInterrupted(page, server, MODEL, dropAfter);
    assert.equal(r.outcome, 'import-error', 'the fake importer reports a dropped download');
    assert.ok(r.storedAtStop > 0 && r.storedAtStop <= dropAfter, `kept ${r.storedAtStop} bytes`);
    assert.ok(r.resumedProgress.length > 0);
    assert.ok(r.resumedProgress[0] >= r.storedAtStop, `resumed at ${r.resumedProgress[0]}, not from 0`);
    const resumed = server.logs.filter((l) => l.event === 'model-request' && l.range);
    assert.ok(resumed.some((l) => l.range === `bytes=${r.storedAtStop}-` && l.status === 206), JSON.stringify(resumed));
    const item = page.locator(`#models li[data-id="${MODEL}"]`);
    assert.equal(await item.getAttribute('data-complete'), 'true');
    assert.equal(Number(await item.getAttribute('data-stored-bytes')), size);
  });

  await t.test('it loads after importing and the chat answers', async () => {
    await waitEvent(page, 'loaded', { timeout: 120_000, failOn: ['load-error'] });
    await setSettings(page, { temperature: 0, system: '' });
    const { text, detail } = await ask(page, 'What is the capital of France?');
    assert.equal(text, 'The capital of France is Paris.');
    assert.equal(detail.result.finishReason, 'stop');
    assert.match(await page.locator('#perf').innerText(), /decode [\d.]+ tok\/s/);
  });

  await t.test('multi-turn: the history goes back to the engine', async () => {
    const { text } = await ask(page, 'And Germany?');
    assert.match(text, /^You said: And Germany\? \(turn 2, temperature 0\)$/);
  });

  await t.test('model output is text, never HTML', async () => {
    const { text } = await ask(page, '<img src=x onerror="window.__pwned=1"><b>bold</b>');
    assert.ok(text.includes('<img src=x'));
    assert.equal(await page.locator('#transcript img, #transcript b').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
  });

  await t.test('stop ends generation early and keeps the partial reply', async () => {
    const since = await eventCount(page);
    await page.getByLabel('Message').fill('Say something long');
    await page.getByLabel('Message').press('Enter');
    await page.waitForFunction(() => (document.querySelector('.msg.assistant.streaming')?.textContent.length ?? 0) > 20);
    await page.getByRole('button', { name: 'Stop' }).click();
    const e = await waitEvent(page, 'reply', { since });
    assert.equal(e.detail.result.finishReason, 'aborted');
    assert.match(await page.locator('.msg.assistant').last().innerText(), /\(stopped\)/);
    assert.equal(await page.getByRole('button', { name: 'Send' }).isVisible(), true);
  });

  await t.test('new chat starts a fresh history', async () => {
    await page.getByRole('button', { name: 'New chat' }).click();
    assert.equal(await page.locator('.msg').count(), 0);
    const { text } = await ask(page, 'Hello');
    assert.match(text, /\(turn 1,/);
  });

  await t.test('pause keeps a partial import; delete removes it', async () => {
    const since = await eventCount(page);
    // A second copy from another URL (throttled to ~4 s): a new id, since the source differs.
    await page.getByLabel('GGUF URL').fill(`${server.url}models/${MODEL}?rate=25000000`);
    await page.locator('#url-form button[type=submit]').click();
    await page.waitForFunction((since) => window.__hearth.slice(since).some((e) => e.name === 'import-progress' && e.detail.bytes > 0), since);
    await page.getByRole('button', { name: 'Pause' }).click();
    const e = await waitEvent(page, 'import-error', { since, failOn: ['import-done'] });
    assert.equal(e.detail.paused, true);
    assert.match(await page.locator('#import-text').innerText(), /Paused/);
    const partial = page.locator('#models li[data-complete="false"]');
    assert.equal(await partial.count(), 1);
    assert.notEqual(await partial.getAttribute('data-id'), MODEL);
    assert.ok(Number(await partial.getAttribute('data-stored-bytes')) > 0);
    page.once('dialog', (d) => d.accept());
    await partial.getByRole('button', { name: /^Delete/ }).click();
    await page.waitForFunction(() => !document.querySelector('#models li[data-complete="false"]'));
    assert.equal(await page.locator(`#models li[data-id="${MODEL}"]`).count(), 1, 'the other model stays');
  });

  // A tiny "GGUF" (the fake engine only checks the magic) for the local-file paths.
  const tiny = Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(9 << 20, 7)]);

  await t.test('a local file from the picker is stored and loaded', async () => {
    const since = await eventCount(page);
    await page.locator('#file').setInputFiles({ name: 'picked.gguf', mimeType: 'application/octet-stream', buffer: tiny });
    await waitEvent(page, 'import-done', { since, failOn: ['import-error'] });
    const loaded = await waitEvent(page, 'loaded', { since, failOn: ['load-error'] });
    assert.equal(loaded.detail.id, 'picked.gguf');
    assert.equal(await page.locator('#models li[data-id="picked.gguf"]').getAttribute('data-complete'), 'true');
    // Choosing the same file again loads the stored copy instead of storing a second one.
    const count = await page.locator('#models li').count();
    const before = await eventCount(page);
    await page.getByRole('button', { name: 'Load SmolLM2-135M-Instruct.Q4_1.gguf' }).click();
    await waitEvent(page, 'loaded', { since: before, failOn: ['load-error'] });
    const again = await eventCount(page);
    await page.locator('#file').setInputFiles({ name: 'picked.gguf', mimeType: 'application/octet-stream', buffer: tiny });
    const reloaded = await waitEvent(page, 'loaded', { since: again, failOn: ['load-error', 'import-progress'] });
    assert.equal(reloaded.detail.id, 'picked.gguf');
    assert.equal(await page.locator('#models li').count(), count);
  });

  await t.test('a file dropped on the page is stored', async () => {
    const since = await eventCount(page);
    await page.evaluate((bytes) => {
      const dt = new DataTransfer();
      dt.items.add(new File([new Uint8Array(bytes)], 'dropped.gguf'));
      window.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt }));
      if (document.getElementById('drop').hidden) throw new Error('no drop overlay');
      window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, cancelable: true }));
    }, [...tiny.subarray(0, 1 << 20)]);
    await waitEvent(page, 'import-done', { since, failOn: ['import-error'] });
    assert.equal(await page.locator('#drop').isHidden(), true);
    assert.equal(await page.locator('#models li[data-id="dropped.gguf"]').getAttribute('data-complete'), 'true');
    await waitEvent(page, 'loaded', { since, failOn: ['load-error'] });
  });

  await t.test('screenshots, wide and narrow', async () => {
    const dir = ensureArtifacts();
    await page.screenshot({ path: path.join(dir, 'ui-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(dir, 'ui-narrow.png'), fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  await t.test('settings survive a reload, and the last model loads again', async () => {
    await setSettings(page, { topK: 7, maxTokens: 99 });
    await page.reload();
    await waitEvent(page, 'loaded', { timeout: 120_000, failOn: ['load-error', 'engine-error'] });
    assert.equal(await page.locator('#settings [name="temperature"]').inputValue(), '0');
    assert.equal(await page.locator('#settings [name="topK"]').inputValue(), '7');
    assert.equal(await page.locator('#settings [name="maxTokens"]').inputValue(), '99');
  });

  await t.test('offline: with the server gone the page still opens and answers', async () => {
    await page.evaluate(() => navigator.serviceWorker.ready);
    await server.stop();
    await page.reload();
    await waitEvent(page, 'loaded', { timeout: 120_000, failOn: ['load-error', 'engine-error'] });
    const { text } = await ask(page, 'What is the capital of France?');
    assert.equal(text, 'The capital of France is Paris.');
    await page.screenshot({ path: path.join(ensureArtifacts(), 'ui-offline.png'), fullPage: true });
  });

  assert.deepEqual(browser.problems.filter((p) => !/Failed to load resource/.test(p)), []);
});
