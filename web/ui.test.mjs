// The page in a real browser on the real engine (www/pkg, built by scripts/build-web.sh) with the
// real tiny test model tests/fixtures/tiny-llama3-q4km.gguf (27 MB, 2 layers, the real Llama 3
// tokenizer and chat template, random weights: its replies are noise, which is all the UI needs):
//   cd web && node --test ui.test.mjs
// It checks the page's behaviour: the no-WebGPU message, the service-worker update flow, pausing
// and deleting an import, the file picker and drag-and-drop imports, multi-turn history, Stop,
// New chat, text-only rendering, a narrow screen, and settings (and the model) kept across an
// offline reload. The dev server serves tests/fixtures/ at /models/ (--models): nothing is faked
// and nothing leaves the machine. e2e.test.mjs runs the demo model (SmolLM2) end to end.
// Replies are kept to a few tokens (SwiftShader runs WGSL on the CPU).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO, startServer, launch, waitEvent, eventCount, ask, setSettings, ensureArtifacts } from './helpers.mjs';

const PKG = path.join(REPO, 'www', 'pkg');
const FIXTURES = path.join(REPO, 'tests', 'fixtures');
const MODEL = 'tiny-llama3-q4km.gguf';
const modelPath = path.join(FIXTURES, MODEL);
const built = fs.existsSync(path.join(PKG, 'hearth_bg.wasm')) && fs.existsSync(path.join(PKG, 'hearth.js'));
const skip = !built ? 'www/pkg is not built (run scripts/build-web.sh)'
  : !fs.existsSync(modelPath) ? `tests/fixtures/${MODEL} is missing` : false;
const LONG = 10 * 60_000; // generous: SwiftShader is slow, and timings are never asserted

let server, browser;

before(async () => {
  server = await startServer({ testHooks: true, modelsDir: FIXTURES });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('without WebGPU the page says which browsers work', { skip: built ? false : skip }, async () => {
  const b = await launch({ webgpu: false });
  try {
    await b.page.goto(server.url);
    await b.page.locator('#nogpu').waitFor({ state: 'visible', timeout: 60_000 });
    const text = await b.page.locator('#nogpu').innerText();
    for (const s of ['Chrome or Edge 113+', 'Chrome 121+ on Android', 'Safari 26+', 'Firefox 141+ on Windows', 'enable-unsafe-webgpu']) {
      assert.ok(text.includes(s), `missing "${s}"`);
    }
    assert.match(text, /no GPU adapter|does not expose WebGPU/);
    // The real engine starts without a GPU too: models can still be stored.
    const e = await waitEvent(b.page, 'engine-ready', { timeout: LONG, failOn: ['engine-error'] });
    assert.equal(e.detail.engine, null);
    assert.equal(await b.page.getByLabel('Message').isDisabled(), true);
    await b.page.screenshot({ path: path.join(ensureArtifacts(), 'ui-no-webgpu.png'), fullPage: true });
  } finally {
    await b.close();
  }
});

test('a new build replaces the offline copy when the user accepts the update', { skip: built ? false : skip }, async () => {
  // A copy of the real www/pkg in a temporary folder, so that its build version can change.
  const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-pkg-'));
  for (const f of ['hearth.js', 'hearth_bg.wasm']) fs.copyFileSync(path.join(PKG, f), path.join(pkg, f));
  const stamp = (v) => fs.writeFileSync(path.join(pkg, 'build-version.js'), `self.HEARTH_BUILD = "${v}";\n`);
  stamp('build-one');
  const srv = await startServer({ pkgDir: pkg });
  const b = await launch();
  try {
    const { page } = b;
    await page.goto(srv.url);
    const ready = await waitEvent(page, 'engine-ready', { timeout: LONG, failOn: ['engine-error'] });
    assert.ok(ready.detail.engine, `the real engine did not start: ${ready.detail.engineError}`);
    const keys = () => page.evaluate(async () => (await caches.keys()).filter((k) => k.startsWith('hearth-shell-')));
    await page.waitForFunction(() => /Build build-one\./.test(document.getElementById('build').textContent), null, { timeout: 60_000 });
    assert.deepEqual(await keys(), ['hearth-shell-build-one']);

    stamp('build-two');
    await page.reload();
    await page.locator('#update').waitFor({ state: 'visible', timeout: 60_000 });
    // Until accepted, the page keeps running the old build (cache-first shell).
    assert.match(await page.locator('#build').innerText(), /build-one/);
    await Promise.all([page.waitForEvent('load'), page.locator('#update').click()]);
    await page.waitForFunction(() => /Build build-two\./.test(document.getElementById('build').textContent), null, { timeout: 60_000 });
    assert.deepEqual(await keys(), ['hearth-shell-build-two'], 'the old cache is deleted');
    assert.deepEqual(b.problems.filter((p) => !/Failed to load resource/.test(p)), []);
  } finally {
    await b.close();
    await srv.stop();
    fs.rmSync(pkg, { recursive: true, force: true });
  }
});

/** The assistant bubble's reply text (its text nodes) and its element children. */
const lastReply = (page) => page.locator('.msg.assistant').last().evaluate((n) => ({
  text: [...n.childNodes].filter((c) => c.nodeType === Node.TEXT_NODE).map((c) => c.data).join(''),
  elements: [...n.children].map((c) => `${c.tagName.toLowerCase()}.${c.className}`),
  textContent: n.textContent,
}));

/** The whole prompt of a reply, in tokens: the engine's cache after it (stats.contextTokens) holds
 * the prompt and every reply token but the last. */
const whole = ({ result, stats }) => stats.contextTokens - result.generatedTokens + 1;

test('the page on the real engine with the tiny model', { skip }, async (t) => {
  browser = await launch();
  const { page } = browser;
  const size = fs.statSync(modelPath).size;
  const timings = {};

  await t.test('the page starts the real engine on a WebGPU adapter', async () => {
    await page.goto(server.url);
    const e = await waitEvent(page, 'engine-ready', { timeout: LONG, failOn: ['engine-error'] });
    assert.ok(e.detail.engine, `no engine: ${e.detail.engineError}`);
    assert.equal(await page.locator('#nogpu').isHidden(), true);
    assert.match(await page.locator('#status').innerText(), /GPU: .+ · No model loaded/);
    assert.equal(await page.getByLabel('Message').isDisabled(), true, 'chat must wait for a model');
  });

  await t.test('Pause stops an import midway', async () => {
    const since = await eventCount(page);
    // Throttled to ~7 s, so that Pause comes mid-download.
    await page.getByLabel('GGUF URL').fill(`${server.url}models/${MODEL}?rate=4000000`);
    await page.locator('#url-form button[type=submit]').click();
    await page.waitForFunction((since) => window.__hearth.slice(since).some((e) => e.name === 'import-progress'), since);
    await page.waitForTimeout(1000);
    await page.getByRole('button', { name: 'Pause' }).click();
    const e = await waitEvent(page, 'import-error', { since, timeout: LONG, failOn: ['import-done'] });
    assert.equal(e.detail.paused, true);
    assert.equal(await page.getByRole('button', { name: 'Pause' }).isVisible(), false);
    assert.ok(server.logs.some((l) => l.event === 'model-request' && l.path === `/models/${MODEL}?rate=4000000`), 'the import never reached the server');
    // The store commits 32 MiB shards and this model is one shard: nothing was kept, and the page
    // must not offer a Resume that is not there. (Resuming a kept partial download is checked by
    // e2e.test.mjs on the demo model, and by tests/web_store.rs.)
    assert.equal(await page.locator('#models li[data-id]').count(), 0);
    assert.match(await page.locator('#import-text').innerText(), /^Paused before anything was stored/);
    // The import controls are usable again.
    assert.equal(await page.locator('#file-btn').isDisabled(), false);
  });

  await t.test('a real GGUF chosen in the file picker is stored and loaded', async () => {
    const since = await eventCount(page);
    const t0 = Date.now();
    await page.locator('#file').setInputFiles(modelPath);
    await waitEvent(page, 'import-done', { since, timeout: LONG, failOn: ['import-error'] });
    timings.importS = (Date.now() - t0) / 1000;
    const loaded = await waitEvent(page, 'loaded', { since, timeout: LONG, failOn: ['load-error'] });
    timings.loadS = loaded.detail.ms / 1000;
    assert.equal(loaded.detail.id, MODEL);
    const item = page.locator(`#models li[data-id="${MODEL}"]`);
    assert.equal(await item.getAttribute('data-complete'), 'true');
    assert.equal(Number(await item.getAttribute('data-stored-bytes')), size);
    // The store parsed the real header: the list shows the parameter count and tensor types.
    assert.match(await item.innerText(), /ready · .* parameters · .*Q4_K/);
    assert.match(await page.locator('#status').innerText(), new RegExp(`${MODEL.replace(/\./g, '\\.')} ready`));
  });

  const turns = [];
  await t.test('multi-turn: the history goes back to the engine', async () => {
    // Greedy and short: random weights give noise, but the token counts are exact.
    await setSettings(page, { system: '', temperature: 0, maxTokens: 4 });
    const t0 = Date.now();
    turns.push(await ask(page, 'Hello', { timeout: LONG }));
    timings.firstReplyS = (Date.now() - t0) / 1000;
    turns.push(await ask(page, 'And then?', { timeout: LONG }));
    const [a, b] = turns.map((x) => x.detail.result);
    for (const r of [a, b]) {
      assert.ok(['length', 'stop'].includes(r.finishReason), r.finishReason);
      assert.ok(r.generatedTokens >= 1 && r.generatedTokens <= 4, `${r.generatedTokens} tokens`);
    }
    // The engine reports the tokens it prefilled (promptTokens) and the tokens in its cache
    // afterwards (stats.contextTokens: the whole prompt, then every reply token but the last).
    // Turn 2's whole prompt starts with turn 1's (the cached prefix was reused) and is longer by
    // at least the first reply and the new question.
    const [w1, w2] = turns.map((x) => whole(x.detail));
    assert.equal(w1, a.promptTokens, 'turn 1 prefills its whole prompt');
    assert.ok(w2 - b.promptTokens >= w1, `turn 2 reused ${w2 - b.promptTokens} cached tokens, less than turn 1's ${w1}-token prompt`);
    assert.ok(w2 > w1 + a.generatedTokens, `turn 2's prompt (${w2} tokens) does not hold turn 1 (${w1} + ${a.generatedTokens})`);
    assert.equal(await page.locator('.msg.user').count(), 2);
    assert.equal(await page.locator('.msg.assistant').count(), 2);
    assert.match(await page.locator('#perf').innerText(), /decode [\d.]+ tok\/s/);
  });

  await t.test('text is text, never HTML: the reply and an HTML-looking question', async () => {
    // Whatever the model emits (its vocabulary has "<", ">" and tags), the reply bubble holds the
    // engine's text as Text nodes; its only element is the page's own (token-limit) note.
    for (const { detail } of turns) assert.equal(typeof detail.result.text, 'string');
    const reply = await lastReply(page);
    assert.equal(reply.text, turns[1].detail.result.text);
    assert.deepEqual(reply.elements.filter((x) => x !== 'span.meta'), []);
    const html = '<img src=x onerror="window.__pwned=1"><b>bold</b>';
    const { detail } = await ask(page, html, { timeout: LONG });
    const user = await page.locator('.msg.user').last().evaluate((n) => ({ text: n.textContent, children: n.children.length }));
    assert.deepEqual(user, { text: html, children: 0 });
    const answer = await lastReply(page);
    assert.equal(answer.text, detail.result.text);
    assert.deepEqual(answer.elements.filter((x) => x !== 'span.meta'), []);
    assert.equal(await page.locator('#transcript img, #transcript b').count(), 0);
    const kinds = await page.locator('#transcript *').evaluateAll((ns) => ns.map((n) => `${n.tagName.toLowerCase()}.${n.className}`));
    assert.deepEqual(kinds.filter((k) => !['div.msg user', 'div.msg assistant', 'span.meta'].includes(k)), []);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
  });

  await t.test('Stop ends generation early and keeps the partial reply', async () => {
    await setSettings(page, { maxTokens: 200 });
    const since = await eventCount(page);
    await page.getByLabel('Message').fill('Tell me a long story');
    await page.getByLabel('Message').press('Enter');
    assert.equal(await page.locator('.msg.assistant').last().getAttribute('aria-busy'), 'true');
    // Stop once the first piece has streamed in.
    await page.waitForFunction(() => (document.querySelector('.msg.assistant.streaming')?.textContent.length ?? 0) > 0, null, { timeout: LONG, polling: 100 });
    await page.getByRole('button', { name: 'Stop' }).click();
    const e = await waitEvent(page, 'reply', { since, timeout: LONG, failOn: ['reply-error'] });
    assert.equal(e.detail.result.finishReason, 'aborted');
    assert.ok(e.detail.result.generatedTokens >= 1 && e.detail.result.generatedTokens < 200, `${e.detail.result.generatedTokens} tokens`);
    const reply = await lastReply(page);
    assert.equal(reply.text, e.detail.result.text);
    assert.match(reply.textContent, /\(stopped\)$/);
    assert.equal(await page.getByRole('button', { name: 'Send' }).isVisible(), true);
    assert.equal(await page.getByRole('button', { name: 'Stop' }).isVisible(), false);
    await setSettings(page, { maxTokens: 4 });
  });

  await t.test('New chat starts a fresh history', async () => {
    await page.getByRole('button', { name: 'New chat' }).click();
    assert.equal(await page.locator('.msg').count(), 0);
    const { detail } = await ask(page, 'Hello', { timeout: LONG });
    // The same first question with nothing before it: the same whole prompt as the first turn
    // (a kept history would make it longer), and greedy decoding gives the same reply.
    assert.equal(whole(detail), whole(turns[0].detail));
    assert.equal(detail.result.text, turns[0].detail.result.text);
    assert.equal(await page.locator('.msg').count(), 2);
  });

  await t.test('choosing the same file again loads the stored copy instead of storing it twice', async () => {
    const since = await eventCount(page);
    await page.locator('#file').setInputFiles(modelPath);
    const loaded = await waitEvent(page, 'loaded', { since, timeout: LONG, failOn: ['load-error', 'import-progress'] });
    assert.equal(loaded.detail.id, MODEL);
    assert.equal(await page.locator('#models li').count(), 1);
  });

  await t.test('a real GGUF dropped on the page is stored and loaded', async () => {
    const since = await eventCount(page);
    // The fixture, fetched from the dev server into a File, dropped as a user would.
    await page.evaluate(async (url) => {
      const blob = await (await fetch(url)).blob();
      const dt = new DataTransfer();
      dt.items.add(new File([blob], 'dropped.gguf'));
      window.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt }));
      if (document.getElementById('drop').hidden) throw new Error('no drop overlay');
      window.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, cancelable: true }));
    }, `models/${MODEL}`);
    await waitEvent(page, 'import-done', { since, timeout: LONG, failOn: ['import-error'] });
    assert.equal(await page.locator('#drop').isHidden(), true);
    const item = page.locator('#models li[data-id="dropped.gguf"]');
    assert.equal(await item.getAttribute('data-complete'), 'true');
    assert.equal(Number(await item.getAttribute('data-stored-bytes')), size);
    const loaded = await waitEvent(page, 'loaded', { since, timeout: LONG, failOn: ['load-error'] });
    assert.equal(loaded.detail.id, 'dropped.gguf');
    assert.equal(await page.locator('#models li').count(), 2);
  });

  await t.test('screenshots, wide and narrow (no sideways scrolling on a phone)', async () => {
    const dir = ensureArtifacts();
    await page.screenshot({ path: path.join(dir, 'ui-desktop.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: path.join(dir, 'ui-narrow.png'), fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
    for (const id of ['prompt', 'send']) {
      const box = await page.locator(`#${id}`).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `#${id} is off screen: ${JSON.stringify(box)}`);
    }
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  await t.test('offline reload: settings are kept, the last model loads again and answers', async () => {
    await setSettings(page, { topK: 7, maxTokens: 3 });
    await page.evaluate(() => navigator.serviceWorker.ready);
    await server.stop();
    await page.reload();
    const loaded = await waitEvent(page, 'loaded', { timeout: LONG, failOn: ['load-error', 'engine-error'] });
    assert.equal(loaded.detail.id, 'dropped.gguf');
    assert.equal(await page.locator('#settings [name="temperature"]').inputValue(), '0');
    assert.equal(await page.locator('#settings [name="topK"]').inputValue(), '7');
    assert.equal(await page.locator('#settings [name="maxTokens"]').inputValue(), '3');
    const { detail } = await ask(page, 'Hello', { timeout: LONG });
    assert.ok(detail.result.generatedTokens >= 1 && detail.result.generatedTokens <= 3, `${detail.result.generatedTokens} tokens`);
    await page.screenshot({ path: path.join(ensureArtifacts(), 'ui-offline.png'), fullPage: true });
  });

  await t.test('Delete removes a stored model, the loaded one included', async () => {
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Delete dropped.gguf' }).click();
    await page.waitForFunction(() => !document.querySelector('#models li[data-id="dropped.gguf"]'));
    assert.deepEqual(await page.locator('#models li[data-id]').evaluateAll((ns) => ns.map((n) => n.dataset.id)), [MODEL]);
    assert.match(await page.locator('#status').innerText(), /No model loaded/);
    assert.equal(await page.getByLabel('Message').isDisabled(), true);
    assert.equal(await page.evaluate(() => localStorage.getItem('hearth.lastModel')), null);
    // Declining the confirmation keeps the model.
    page.once('dialog', (d) => d.dismiss());
    await page.getByRole('button', { name: `Delete ${MODEL}` }).click();
    assert.equal(await page.locator('#models li[data-id]').count(), 1);
  });

  t.diagnostic(`tiny model: file import ${timings.importS?.toFixed(1)} s, load ${timings.loadS?.toFixed(1)} s, first 4-token reply ${timings.firstReplyS?.toFixed(1)} s`);
  assert.deepEqual(browser.problems.filter((p) => !/Failed to load resource/.test(p)), []);
});
