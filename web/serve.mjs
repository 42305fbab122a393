#!/usr/bin/env node
// Hearth's development server: serves www/ at / and the repo's models/ at /models/.
// Dependency-free on purpose (the page needs nothing but static files), bound to 127.0.0.1 because
// WebGPU and service workers need a secure context and localhost is one without certificates.
//
//   node web/serve.mjs [--port 8080] [--host 127.0.0.1] [--www DIR] [--models DIR] [--pkg DIR]
//                      [--test-hooks] [--exit-with-parent]
//
// --port 0 picks a free port. The first stdout line is "Hearth: http://HOST:PORT/" (tests parse it).
// --test-hooks enables `?dropAfter=N` on /models/ URLs: the connection is cut once that URL has
// served N bytes in total (over every request), once per URL, so browser tests can interrupt an
// import for real, and `?rate=B` on /models/ URLs sends at most B bytes per second (so a test can
// pause an import midway); every /models/ request is also logged as a JSON line ("model-request").
// --pkg DIR serves /pkg/ from DIR instead of www/pkg (the UI test's service-worker update check
// points it at a copy of www/pkg whose build version it changes). --models DIR serves /models/
// from DIR (the UI test serves tests/fixtures/, for the tiny test model).
// --exit-with-parent stops the server when its stdin closes, i.e. when the test that spawned it
// with a stdin pipe ends, however it ends (even killed).

import http from 'node:http';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.wasm': 'application/wasm', // instantiateStreaming refuses any other type
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.ts': 'text/plain; charset=utf-8', // wasm-pack's .d.ts files: readable, never executed
  '.gguf': 'application/octet-stream',
};

/**
 * Parses a Range header against a file size.
 * Returns null to serve the whole file (no header, a malformed one, or several ranges: RFC 9110
 * lets a server ignore Range), 'unsatisfiable' for 416, or {start, end} (inclusive).
 */
export function parseRange(header, size) {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start, end;
  if (m[1] === '') {
    // Suffix range: the last N bytes.
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== '' && Number(m[2]) < start) return null; // invalid: ignore the header
  }
  if (start >= size || size === 0) return 'unsatisfiable';
  return { start, end };
}

/** Maps a URL path under a root directory to a file path, or null when it escapes the root. */
export function resolveUnder(root, urlPath) {
  let decoded;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  // Refuse any `..` segment outright rather than normalizing it away: a request that tries to
  // climb is never legitimate here.
  if (decoded.split('/').some((seg) => seg === '..')) return null;
  const full = path.resolve(root, '.' + path.posix.normalize('/' + decoded));
  if (full !== root && !full.startsWith(root + path.sep)) return null;
  return full;
}

/**
 * Creates the server (not yet listening).
 * opts: {wwwDir, modelsDir, testHooks, log(obj)}.
 */
export function createServer(opts = {}) {
  const wwwDir = path.resolve(opts.wwwDir ?? path.join(repo, 'www'));
  const modelsDir = path.resolve(opts.modelsDir ?? path.join(repo, 'models'));
  const pkgDir = opts.pkgDir ? path.resolve(opts.pkgDir) : null;
  const testHooks = Boolean(opts.testHooks);
  const log = opts.log ?? ((obj) => process.stdout.write(JSON.stringify(obj) + '\n'));
  // dropAfter bookkeeping: bytes served so far per URL, and URLs that already dropped once.
  const served = new Map();
  const dropped = new Set();

  async function handle(req, res) {
    const url = new URL(req.url, 'http://localhost');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return plain(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
    }
    // Raw paths may contain encoded traversal; check the undecoded form as well as the decoded.
    const rawPath = req.url.split('?')[0];
    let root, rel;
    if (rawPath === '/models' || rawPath.startsWith('/models/')) {
      root = modelsDir;
      rel = rawPath.slice('/models'.length) || '/';
    } else if (pkgDir && (rawPath === '/pkg' || rawPath.startsWith('/pkg/'))) {
      root = pkgDir;
      rel = rawPath.slice('/pkg'.length) || '/';
    } else {
      root = wwwDir;
      rel = rawPath;
    }
    const file = resolveUnder(root, rel);
    if (!file) return plain(res, 403, 'forbidden');

    let target = file;
    let st = await statOrNull(target);
    if (st?.isDirectory()) {
      // Directories serve their index.html or nothing: never a listing.
      target = path.join(target, 'index.html');
      st = await statOrNull(target);
    }
    if (!st || !st.isFile()) return plain(res, 404, 'not found');
    // A symlink inside the root must not lead outside it.
    const real = await fsp.realpath(target);
    const realRoot = await fsp.realpath(root);
    if (real !== realRoot && !real.startsWith(realRoot + path.sep)) return plain(res, 403, 'forbidden');

    const size = st.size;
    const etag = `"${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const lastModified = st.mtime.toUTCString();
    const headers = {
      'Content-Type': MIME[path.extname(target).toLowerCase()] ?? 'application/octet-stream',
      'Accept-Ranges': 'bytes',
      ETag: etag,
      'Last-Modified': lastModified,
      // Revalidate every time: the service worker, not the HTTP cache, is what makes the app offline.
      'Cache-Control': 'no-cache',
      'X-Content-Type-Options': 'nosniff',
    };

    let range = parseRange(req.headers.range, size);
    const ifRange = req.headers['if-range'];
    if (range && ifRange && ifRange !== etag && ifRange !== lastModified) range = null; // changed: send it all
    if (range === 'unsatisfiable') {
      return plain(res, 416, 'range not satisfiable', { 'Content-Range': `bytes */${size}`, 'Accept-Ranges': 'bytes' });
    }
    if (req.headers['if-none-match'] === etag && !range) {
      res.writeHead(304, { ETag: etag, 'Cache-Control': 'no-cache' });
      return res.end();
    }

    let start = 0;
    let end = size - 1;
    let status = 200;
    if (range) {
      ({ start, end } = range);
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
    headers['Content-Length'] = String(end - start + 1);

    const isModel = root === modelsDir;
    const hook = (name) => (testHooks && isModel && url.searchParams.has(name) ? Number(url.searchParams.get(name)) : NaN);
    const dropAfter = hook('dropAfter');
    const rate = hook('rate');
    if (testHooks && isModel) {
      log({ event: 'model-request', method: req.method, path: url.pathname + url.search, range: req.headers.range ?? null, status });
    }
    res.writeHead(status, headers);
    if (req.method === 'HEAD' || size === 0) return res.end();

    // Bytes this response may send before the test hook cuts the connection (Infinity: no cut).
    let budget = Infinity;
    const key = url.pathname + url.search;
    if (Number.isFinite(dropAfter) && dropAfter >= 0 && !dropped.has(key)) {
      budget = Math.max(0, dropAfter - (served.get(key) ?? 0));
    }
    const bytesPerSecond = Number.isFinite(rate) && rate > 0 ? rate : Infinity;
    await stream(req, res, target, start, end, budget, bytesPerSecond, (n) => served.set(key, (served.get(key) ?? 0) + n), () => {
      dropped.add(key);
      log({ event: 'dropped', path: key, afterBytes: served.get(key) ?? 0 });
    });
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) plain(res, 500, 'internal error');
      else res.destroy();
      log({ event: 'error', message: String(err?.message ?? err) });
    });
  });
  return server;
}

/**
 * Streams [start, end] of a file at up to `rate` bytes/s; when `budget` bytes are out, destroys
 * the socket mid-body.
 */
function stream(req, res, file, start, end, budget, rate, onBytes, onDrop) {
  return new Promise((resolve) => {
    // Throttled: chunks of about a tenth of a second each, so the rate is even.
    const chunkSize = rate === Infinity ? 256 * 1024 : Math.max(100, Math.min(64 * 1024, Math.floor(rate / 10)));
    const rs = fs.createReadStream(file, { start, end, highWaterMark: chunkSize });
    let left = budget;
    const finish = () => { rs.destroy(); resolve(); };
    rs.on('data', (chunk) => {
      if (chunk.length >= left) {
        const part = chunk.subarray(0, left);
        onBytes(part.length);
        rs.destroy();
        // Flush what the budget allows, then cut the TCP connection: the client sees a body
        // shorter than Content-Length, exactly like a dropped network.
        const cut = () => { onDrop(); res.socket?.destroy(); resolve(); };
        if (part.length > 0) res.write(part, cut);
        else cut();
        return;
      }
      left -= chunk.length;
      onBytes(chunk.length);
      const drained = res.write(chunk);
      if (rate !== Infinity) {
        rs.pause();
        // Check for backpressure when the timer fires: a 'drain' may already have come and gone.
        const next = () => (res.writableNeedDrain ? res.once('drain', () => rs.resume()) : rs.resume());
        setTimeout(next, Math.ceil((1000 * chunk.length) / rate));
      } else if (!drained) {
        rs.pause();
        res.once('drain', () => rs.resume());
      }
    });
    rs.on('end', () => { res.end(); resolve(); });
    rs.on('error', () => { res.destroy(); resolve(); });
    res.on('close', finish);
    req.on('aborted', finish);
  });
}

function plain(res, status, text, extra = {}) {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'X-Content-Type-Options': 'nosniff',
    ...extra,
  });
  res.end(text);
}

async function statOrNull(p) {
  try {
    return await fsp.stat(p);
  } catch {
    return null;
  }
}

/** Starts the server; resolves to {server, url, port}. */
export async function start(opts = {}) {
  const host = opts.host ?? '127.0.0.1';
  const server = createServer(opts);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, resolve);
  });
  const { port } = server.address();
  return { server, port, url: `http://${host}:${port}/` };
}

function parseArgs(argv) {
  const opts = { port: 8080, host: '127.0.0.1', testHooks: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--port') opts.port = Number(value());
    else if (a === '--host') opts.host = value();
    else if (a === '--www') opts.wwwDir = value();
    else if (a === '--models') opts.modelsDir = value();
    else if (a === '--pkg') opts.pkgDir = value();
    else if (a === '--test-hooks') opts.testHooks = true;
    else if (a === '--exit-with-parent') opts.exitWithParent = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write('usage: node web/serve.mjs [--port N (0 = free)] [--host H] [--www DIR] [--models DIR] [--pkg DIR] [--test-hooks] [--exit-with-parent]\n');
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new Error('--port must be 0..65535');
  return opts;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  try {
    const opts = parseArgs(process.argv.slice(2));
    const { url, server } = await start(opts);
    process.stdout.write(`Hearth: ${url}\n`);
    // Close open keep-alive and streaming connections too, so "stop" means offline right away.
    const stop = () => { server.close(() => process.exit(0)); server.closeAllConnections(); };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    if (opts.exitWithParent) {
      process.stdin.on('end', stop).on('error', stop).resume();
    }
  } catch (err) {
    process.stderr.write(`serve.mjs: ${err.message}\n`);
    process.exit(1);
  }
}
