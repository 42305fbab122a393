// Tests for web/serve.mjs alone (no browser, no wasm): `node --test web/server.test.mjs`.
// Each test runs against a temporary www/ and models/ so the results do not depend on a build.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { start, parseRange } from './serve.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hearth-serve-'));
const www = path.join(tmp, 'www');
const models = path.join(tmp, 'models');
// 1000 bytes whose value at offset i is i % 251: any slice can be checked for its position.
const MODEL = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
const SECRET = 'top secret, outside the roots';

let plainServer, hookServer;

before(async () => {
  fs.mkdirSync(path.join(www, 'pkg'), { recursive: true });
  fs.mkdirSync(path.join(www, 'emptydir'));
  fs.mkdirSync(models);
  fs.writeFileSync(path.join(www, 'index.html'), '<!doctype html><title>t</title>');
  fs.writeFileSync(path.join(www, 'app.js'), 'export {}');
  fs.writeFileSync(path.join(www, 'style.css'), 'body{}');
  fs.writeFileSync(path.join(www, 'manifest.webmanifest'), '{}');
  fs.writeFileSync(path.join(www, 'icon.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  fs.writeFileSync(path.join(www, 'icon.svg'), '<svg/>');
  fs.writeFileSync(path.join(www, 'pkg', 'hearth_bg.wasm'), Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]));
  fs.writeFileSync(path.join(models, 'm.gguf'), MODEL);
  fs.writeFileSync(path.join(models, 'empty.gguf'), Buffer.alloc(0));
  fs.writeFileSync(path.join(tmp, 'secret.txt'), SECRET);
  fs.symlinkSync(path.join(tmp, 'secret.txt'), path.join(models, 'link.gguf'));
  plainServer = await start({ port: 0, wwwDir: www, modelsDir: models, log: () => {} });
  hookServer = await start({ port: 0, wwwDir: www, modelsDir: models, testHooks: true, log: () => {} });
});

after(() => {
  plainServer.server.close();
  plainServer.server.closeAllConnections();
  hookServer.server.close();
  hookServer.server.closeAllConnections();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Raw GET/HEAD with an exact request path (fetch would normalize `..` away before sending). */
function request(port, rawPath, { method = 'GET', headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, method, headers, agent: false }, (res) => {
      const chunks = [];
      let aborted = false;
      res.on('data', (c) => chunks.push(c));
      res.on('aborted', () => { aborted = true; });
      res.on('error', () => { aborted = true; });
      res.on('close', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), aborted: aborted || !res.complete }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('parseRange handles the forms RFC 9110 defines', () => {
  assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=90-', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange('bytes=-500', 100), { start: 0, end: 99 });
  assert.deepEqual(parseRange('bytes=50-5000', 100), { start: 50, end: 99 });
  assert.equal(parseRange('bytes=100-', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=-0', 100), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-', 0), 'unsatisfiable');
  assert.equal(parseRange(undefined, 100), null);
  assert.equal(parseRange('bytes=5-1', 100), null);
  assert.equal(parseRange('bytes=0-1,5-6', 100), null);
  assert.equal(parseRange('items=0-1', 100), null);
});

test('MIME types the browser insists on', async () => {
  const cases = {
    '/': 'text/html; charset=utf-8',
    '/index.html': 'text/html; charset=utf-8',
    '/app.js': 'text/javascript; charset=utf-8',
    '/style.css': 'text/css; charset=utf-8',
    '/manifest.webmanifest': 'application/manifest+json; charset=utf-8',
    '/icon.png': 'image/png',
    '/icon.svg': 'image/svg+xml',
    '/pkg/hearth_bg.wasm': 'application/wasm',
    '/models/m.gguf': 'application/octet-stream',
  };
  for (const [p, type] of Object.entries(cases)) {
    const r = await request(plainServer.port, p);
    assert.equal(r.status, 200, p);
    assert.equal(r.headers['content-type'], type, p);
    assert.equal(r.headers['x-content-type-options'], 'nosniff', p);
  }
});

test('whole file: Content-Length and Accept-Ranges', async () => {
  const r = await request(plainServer.port, '/models/m.gguf');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], '1000');
  assert.equal(r.headers['accept-ranges'], 'bytes');
  assert.ok(r.body.equals(MODEL));
});

test('HEAD gives the length without a body', async () => {
  const r = await request(plainServer.port, '/models/m.gguf', { method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], '1000');
  assert.equal(r.body.length, 0);
});

test('Range requests answer 206 with Content-Range', async () => {
  const cases = [['bytes=10-19', 10, 19], ['bytes=990-', 990, 999], ['bytes=-5', 995, 999], ['bytes=0-0', 0, 0], ['bytes=500-99999', 500, 999]];
  for (const [range, s, e] of cases) {
    const r = await request(plainServer.port, '/models/m.gguf', { headers: { Range: range } });
    assert.equal(r.status, 206, range);
    assert.equal(r.headers['content-range'], `bytes ${s}-${e}/1000`, range);
    assert.equal(r.headers['content-length'], String(e - s + 1), range);
    assert.ok(r.body.equals(MODEL.subarray(s, e + 1)), range);
  }
});

test('unsatisfiable ranges answer 416 with the size', async () => {
  for (const range of ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0']) {
    const r = await request(plainServer.port, '/models/m.gguf', { headers: { Range: range } });
    assert.equal(r.status, 416, range);
    assert.equal(r.headers['content-range'], 'bytes */1000', range);
  }
  const empty = await request(plainServer.port, '/models/empty.gguf', { headers: { Range: 'bytes=0-' } });
  assert.equal(empty.status, 416);
});

test('malformed or multiple ranges fall back to the whole file', async () => {
  for (const range of ['bytes=0-1,4-5', 'bytes=9-3', 'lines=1-2']) {
    const r = await request(plainServer.port, '/models/m.gguf', { headers: { Range: range } });
    assert.equal(r.status, 200, range);
    assert.equal(r.body.length, 1000, range);
  }
});

test('If-Range with a stale validator sends the whole file', async () => {
  const first = await request(plainServer.port, '/models/m.gguf', { method: 'HEAD' });
  const ok = await request(plainServer.port, '/models/m.gguf', { headers: { Range: 'bytes=10-', 'If-Range': first.headers.etag } });
  assert.equal(ok.status, 206);
  const stale = await request(plainServer.port, '/models/m.gguf', { headers: { Range: 'bytes=10-', 'If-Range': '"stale"' } });
  assert.equal(stale.status, 200);
  assert.equal(stale.body.length, 1000);
});

test('no directory listings', async () => {
  for (const p of ['/emptydir/', '/emptydir', '/pkg/', '/models/', '/models']) {
    const r = await request(plainServer.port, p);
    assert.equal(r.status, 404, p);
  }
});

test('path traversal is refused', async () => {
  const attempts = [
    '/../secret.txt',
    '/models/../../secret.txt',
    '/%2e%2e/secret.txt',
    '/models/%2e%2e/%2e%2e/secret.txt',
    '/models/..%2f..%2fsecret.txt',
    '/..%5csecret.txt',
    '/models/%2e%2e%5c%2e%2e%5csecret.txt',
    '/index.html%00.png',
    '/%E0%A4%A',
    '/models/link.gguf', // a symlink pointing outside the models folder
  ];
  for (const p of attempts) {
    const r = await request(plainServer.port, p);
    assert.ok([400, 403, 404].includes(r.status), `${p} -> ${r.status}`);
    assert.ok(!r.body.toString().includes(SECRET), p);
  }
});

test('only GET and HEAD', async () => {
  const r = await request(plainServer.port, '/index.html', { method: 'POST' });
  assert.equal(r.status, 405);
});

test('dropAfter is ignored without --test-hooks', async () => {
  const r = await request(plainServer.port, '/models/m.gguf?dropAfter=100');
  assert.equal(r.status, 200);
  assert.equal(r.aborted, false);
  assert.equal(r.body.length, 1000);
});

test('with --test-hooks, URLs without hooks are served normally', async () => {
  const r = await request(hookServer.port, '/models/m.gguf');
  assert.equal(r.aborted, false);
  assert.ok(r.body.equals(MODEL));
  const part = await request(hookServer.port, '/models/m.gguf?other=1', { headers: { Range: 'bytes=1-2' } });
  assert.equal(part.status, 206);
  assert.ok(part.body.equals(MODEL.subarray(1, 3)));
});

test('dropAfter cuts the connection once, after N bytes, then serves normally', async () => {
  const url = '/models/m.gguf?dropAfter=300';
  const cut = await request(hookServer.port, url);
  assert.equal(cut.status, 200);
  assert.equal(cut.headers['content-length'], '1000');
  assert.equal(cut.aborted, true);
  assert.equal(cut.body.length, 300);
  assert.ok(cut.body.equals(MODEL.subarray(0, 300)));
  // Resuming where it stopped works, and the URL does not drop a second time.
  const rest = await request(hookServer.port, url, { headers: { Range: 'bytes=300-' } });
  assert.equal(rest.status, 206);
  assert.equal(rest.aborted, false);
  assert.ok(rest.body.equals(MODEL.subarray(300)));
  const again = await request(hookServer.port, url);
  assert.equal(again.aborted, false);
  assert.equal(again.body.length, 1000);
});

test('dropAfter counts bytes over several range requests (an importer fetching shard by shard)', async () => {
  const url = '/models/m.gguf?dropAfter=450';
  const a = await request(hookServer.port, url, { headers: { Range: 'bytes=0-249' } });
  assert.equal(a.aborted, false);
  assert.equal(a.body.length, 250);
  const b = await request(hookServer.port, url, { headers: { Range: 'bytes=250-499' } });
  assert.equal(b.status, 206);
  assert.equal(b.aborted, true);
  assert.equal(b.body.length, 200);
  assert.ok(b.body.equals(MODEL.subarray(250, 450)));
});

test('rate limits a download (test hooks only)', async () => {
  const t0 = Date.now();
  const r = await request(hookServer.port, '/models/m.gguf?rate=2000');
  assert.equal(r.body.length, 1000);
  assert.ok(Date.now() - t0 >= 300, 'a 1000-byte body at 2000 B/s takes about half a second');
});

test('the CLI prints its URL and picks a free port with --port 0', async () => {
  const child = spawn(process.execPath, [path.join(here, 'serve.mjs'), '--port', '0', '--www', www, '--models', models], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /Hearth: (http:\/\/127\.0\.0\.1:(\d+)\/)/.exec(out);
        if (m) resolve(m[1]);
      });
      child.on('exit', (code) => reject(new Error(`serve.mjs exited with ${code}`)));
    });
    const r = await fetch(url + 'app.js');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), 'export {}');
  } finally {
    child.kill('SIGTERM');
  }
});
