// A stand-in for the wasm package (www/pkg/hearth.js) with the same API, for web/ui.test.mjs.
// It lets the page, the worker protocol, the service worker and the resumable import be tested
// in a real browser without the Rust engine: downloads really use fetch + HTTP Range into
// IndexedDB shards, loads really read them back, but "generation" is canned text.
// It is never served to users: only `node web/serve.mjs --pkg web/fake-pkg` uses it.

const SHARD = 8 << 20; // 8 MiB shards, small enough that an interrupted test import keeps some
const DB = 'hearth-fake-store';

function idb(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function openDb() {
  const req = indexedDB.open(DB, 1);
  req.onupgradeneeded = () => {
    req.result.createObjectStore('models', { keyPath: 'id' });
    req.result.createObjectStore('shards'); // key: [id, index]
  };
  return idb(req);
}

export default async function init() {}

// Mirrors src/web/model_store.rs: records {id, name, source: {kind, url|name}, totalSize,
// shardSize, shardsStored, storedBytes, shardCount, complete, ready, summary}, progress
// {id, storedBytes, totalBytes, shardsStored, shardCount} after the open and after each shard,
// import options {onProgress, signal}, AbortError when cancelled.
export class ModelStore {
  #db;
  #aborts = new Map();

  static async open() {
    const s = new ModelStore();
    s.#db = await openDb();
    return s;
  }

  static async estimate() {
    const { usage, quota } = await navigator.storage.estimate();
    return { usage, quota };
  }

  static async persist() {
    return navigator.storage.persist ? navigator.storage.persist() : false;
  }

  #tx(mode) {
    const t = this.#db.transaction(['models', 'shards'], mode);
    return { models: t.objectStore('models'), shards: t.objectStore('shards'), done: new Promise((r, j) => { t.oncomplete = r; t.onerror = () => j(t.error); }) };
  }

  async list() {
    return (await idb(this.#tx('readonly').models.getAll())).map(view);
  }

  async #record(id, source, name) {
    const r = await idb(this.#tx('readonly').models.get(id));
    if (r && JSON.stringify(r.source) === JSON.stringify(source)) return r;
    if (r?.complete) throw named('StoreError', `A different model is already stored as ${id}.`);
    return { id, name, source, totalSize: 0, shardSize: SHARD, shardsStored: 0, complete: false, summary: null };
  }

  /** Stores shards from `next()` (Uint8Arrays from the resume offset, null at the end). */
  async #ingest(r, next, onProgress, signal) {
    const report = () => onProgress?.({ id: r.id, storedBytes: stored(r), totalBytes: r.totalSize, shardsStored: r.shardsStored, shardCount: Math.ceil(r.totalSize / r.shardSize) });
    report();
    let buf = new Uint8Array(0);
    for (;;) {
      if (signal?.aborted) throw named('AbortError', `Import of ${r.id} paused at ${stored(r)} bytes; it can be resumed.`);
      const chunk = await next();
      if (chunk) {
        const joined = new Uint8Array(buf.length + chunk.length);
        joined.set(buf);
        joined.set(chunk, buf.length);
        buf = joined;
      }
      while (buf.length >= r.shardSize || (!chunk && buf.length > 0)) {
        const take = Math.min(r.shardSize, buf.length);
        const t = this.#tx('readwrite');
        t.shards.put(buf.slice(0, take), [r.id, r.shardsStored]);
        r.shardsStored++;
        r.complete = stored(r) === r.totalSize;
        t.models.put(r);
        await t.done;
        buf = buf.slice(take);
        report();
      }
      if (!chunk) break;
    }
    if (!r.complete) throw named('NetworkError', 'The source ended early.');
    return view(r);
  }

  async importUrl(url, id, options = {}) {
    const r = await this.#record(id, { kind: 'url', url }, decodeURIComponent(new URL(url).pathname.split('/').pop()));
    if (r.complete) return view(r);
    const ctl = new AbortController();
    options.signal?.addEventListener('abort', () => ctl.abort());
    this.#aborts.set(id, ctl);
    try {
      const at = stored(r);
      let res;
      try {
        res = await fetch(url, { headers: at ? { Range: `bytes=${at}-` } : {}, signal: ctl.signal, cache: 'no-store' });
      } catch {
        throw named(ctl.signal.aborted ? 'AbortError' : 'NetworkError', `Could not reach ${url}.`);
      }
      if (at && res.status !== 206) throw named('NetworkError', `The server did not resume (HTTP ${res.status}).`);
      if (!res.ok) throw named('NetworkError', `Download failed: HTTP ${res.status}.`);
      const range = /\/(\d+)$/.exec(res.headers.get('Content-Range') ?? '');
      r.totalSize = range ? Number(range[1]) : Number(res.headers.get('Content-Length'));
      const reader = res.body.getReader();
      return await this.#ingest(r, async () => {
        try {
          const { value, done } = await reader.read();
          return done ? null : value;
        } catch {
          throw ctl.signal.aborted ? named('AbortError', 'Import paused; it can be resumed.')
            : named('NetworkError', 'The download was interrupted. Resume it to continue from where it stopped.');
        }
      }, options.onProgress, ctl.signal);
    } finally {
      this.#aborts.delete(id);
    }
  }

  async importFile(file, id, options = {}) {
    const r = await this.#record(id, { kind: 'file', name: file.name }, file.name);
    r.totalSize = file.size;
    const ctl = new AbortController();
    options.signal?.addEventListener('abort', () => ctl.abort());
    this.#aborts.set(id, ctl);
    let at = stored(r);
    try {
      return await this.#ingest(r, async () => {
        if (at >= file.size) return null;
        const part = new Uint8Array(await file.slice(at, at + r.shardSize).arrayBuffer());
        at += part.length;
        return part;
      }, options.onProgress, ctl.signal);
    } finally {
      this.#aborts.delete(id);
    }
  }

  cancelImport(id) {
    const ctl = this.#aborts.get(id);
    ctl?.abort();
    return Boolean(ctl);
  }

  async delete(id) {
    const r = await idb(this.#tx('readonly').models.get(id));
    if (!r) return false;
    const t = this.#tx('readwrite');
    for (let i = 0; i < r.shardsStored; i++) t.shards.delete([id, i]);
    t.models.delete(id);
    await t.done;
    return true;
  }

  async readShard(id, index) {
    return idb(this.#tx('readonly').shards.get([id, index]));
  }
}

const stored = (r) => Math.min(r.shardsStored * r.shardSize, r.totalSize);
const view = (r) => ({ ...r, storedBytes: stored(r), shardCount: Math.ceil(r.totalSize / r.shardSize), ready: r.complete });
const named = (name, message) => Object.assign(new Error(message), { name });

export class WebEngine {
  #store;
  #model = null;
  #aborted = false;
  #stats = { prefillTokS: 0, decodeTokS: 0, contextTokens: 0, wasmMemoryBytes: 1 << 20, peakWasmMemoryBytes: 1 << 20 };

  static async create() {
    const adapter = await navigator.gpu?.requestAdapter();
    if (!adapter) throw new Error('WebGPU is not available: no GPU adapter.');
    const e = new WebEngine();
    e.#store = await ModelStore.open();
    e.adapter = adapter.info ?? {};
    return e;
  }

  adapterInfo() {
    return { name: `fake engine on ${this.adapter.architecture || this.adapter.vendor || 'WebGPU'}`, backend: 'webgpu' };
  }

  async load(id, onProgress) {
    const meta = (await this.#store.list()).find((m) => m.id === id);
    if (!meta?.complete) throw new Error(`Model ${id} is not fully stored.`);
    for (let i = 0, bytes = 0; bytes < meta.totalSize; i++) {
      const shard = await this.#store.readShard(id, i);
      if (i === 0 && new TextDecoder().decode(shard.subarray(0, 4)) !== 'GGUF') throw new Error(`${id} is not a GGUF file.`);
      bytes += shard.length;
      onProgress?.({ phase: 'uploading', bytes, total: meta.totalSize });
    }
    onProgress?.({ phase: 'compiling', bytes: meta.totalSize, total: meta.totalSize });
    this.#model = id;
  }

  async chat(messages, options, onToken) {
    if (!this.#model) throw new Error('No model is loaded.');
    const turns = messages.filter((m) => m.role !== 'system');
    turns.forEach((m, i) => {
      if (m.role !== (i % 2 ? 'assistant' : 'user')) throw new Error('Roles must alternate user/assistant.');
    });
    const question = turns.at(-1).content;
    const reply = /capital of France/i.test(question) ? 'The capital of France is Paris.'
      : /long/i.test(question) ? Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ')
        : `You said: ${question} (turn ${(turns.length + 1) / 2}, temperature ${options.temperature})`;
    this.#aborted = false;
    const t0 = performance.now();
    const pieces = reply.match(/\S+\s*/g).slice(0, options.maxTokens ?? Infinity);
    let text = '';
    for (const p of pieces) {
      if (this.#aborted) break;
      await new Promise((r) => setTimeout(r, 15));
      text += p;
      onToken(p);
    }
    const secs = (performance.now() - t0) / 1000;
    this.#stats = { ...this.#stats, decodeTokS: pieces.length / secs, prefillTokS: 1000, contextTokens: 10 + pieces.length };
    const finishReason = this.#aborted ? 'aborted' : text.length < reply.length ? 'length' : 'stop';
    return { text, promptTokens: 10, generatedTokens: text.split(/\s+/).filter(Boolean).length, prefillTokS: 1000, decodeTokS: this.#stats.decodeTokS, finishReason };
  }

  abort() {
    this.#aborted = true;
  }

  unload() {
    this.#model = null;
  }

  stats() {
    return { ...this.#stats };
  }
}
