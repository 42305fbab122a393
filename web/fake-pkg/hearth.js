// A stand-in for the wasm package (www/pkg/hearth.js) with the same API, for web/ui.test.mjs.
// It lets the page, the worker protocol, the service worker and the resumable import be tested
// in a real browser without the Rust engine: downloads really use fetch + HTTP Range into
// IndexedDB shards, loads really read them back, but "generation" is canned text.
// It is never served to users: only `node web/serve.mjs --pkg web/fake-pkg` uses it.

const SHARD = 4 << 20; // 4 MiB shards, small enough that an interrupted test import keeps some
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

export class ModelStore {
  #db;
  #aborts = new Map();

  static async open() {
    const s = new ModelStore();
    s.#db = await openDb();
    return s;
  }

  #tx(mode) {
    const t = this.#db.transaction(['models', 'shards'], mode);
    return { models: t.objectStore('models'), shards: t.objectStore('shards'), done: new Promise((r, j) => { t.oncomplete = r; t.onerror = () => j(t.error); }) };
  }

  async list() {
    return idb(this.#tx('readonly').models.getAll());
  }

  async #meta(id, source, name) {
    return (await idb(this.#tx('readonly').models.get(id))) ?? { id, name, source, size: 0, storedBytes: 0, complete: false, shardSize: SHARD };
  }

  async #putShard(meta, index, bytes) {
    const t = this.#tx('readwrite');
    t.shards.put(bytes, [meta.id, index]);
    t.models.put(meta);
    await t.done;
  }

  /** Appends a byte source to the stored shards; `next()` yields Uint8Arrays from meta.storedBytes. */
  async #ingest(meta, next, onProgress, signal) {
    let buf = new Uint8Array(0);
    for (;;) {
      if (signal.aborted) throw new Error('Import paused. It can be resumed.');
      const chunk = await next();
      if (chunk) {
        const joined = new Uint8Array(buf.length + chunk.length);
        joined.set(buf);
        joined.set(chunk, buf.length);
        buf = joined;
      }
      // Commit whole shards (and the last, short one) so storedBytes is always a shard boundary.
      while (buf.length >= SHARD || (!chunk && buf.length > 0)) {
        const take = Math.min(SHARD, buf.length);
        const index = Math.floor(meta.storedBytes / SHARD);
        meta.storedBytes += take;
        meta.complete = meta.storedBytes === meta.size;
        await this.#putShard(meta, index, buf.slice(0, take));
        buf = buf.slice(take);
      }
      onProgress?.({ bytes: meta.storedBytes + buf.length, total: meta.size });
      if (!chunk) break;
    }
    if (!meta.complete) throw new Error('The source ended early.');
  }

  async importUrl(url, id, onProgress) {
    const meta = await this.#meta(id, url, decodeURIComponent(new URL(url).pathname.split('/').pop()));
    if (meta.complete) return;
    const ctl = new AbortController();
    this.#aborts.set(id, ctl);
    try {
      const res = await fetch(url, { headers: meta.storedBytes ? { Range: `bytes=${meta.storedBytes}-` } : {}, signal: ctl.signal, cache: 'no-store' });
      if (meta.storedBytes && res.status !== 206) throw new Error(`The server did not resume (HTTP ${res.status}).`);
      if (!res.ok) throw new Error(`Download failed: HTTP ${res.status}.`);
      const range = /\/(\d+)$/.exec(res.headers.get('Content-Range') ?? '');
      meta.size = range ? Number(range[1]) : Number(res.headers.get('Content-Length'));
      const reader = res.body.getReader();
      await this.#ingest(meta, async () => {
        try {
          const { value, done } = await reader.read();
          return done ? null : value;
        } catch {
          throw new Error(ctl.signal.aborted ? 'Import paused. It can be resumed.' : 'The download was interrupted. Resume it to continue from where it stopped.');
        }
      }, onProgress, ctl.signal);
    } finally {
      this.#aborts.delete(id);
    }
  }

  async importFile(file, id, onProgress) {
    const meta = await this.#meta(id, `file:${file.name}`, file.name);
    meta.size = file.size;
    const ctl = new AbortController();
    this.#aborts.set(id, ctl);
    let at = meta.storedBytes;
    try {
      await this.#ingest(meta, async () => {
        if (at >= file.size) return null;
        const part = new Uint8Array(await file.slice(at, at + SHARD).arrayBuffer());
        at += part.length;
        return part;
      }, onProgress, ctl.signal);
    } finally {
      this.#aborts.delete(id);
    }
  }

  abortImport(id) {
    this.#aborts.get(id)?.abort();
  }

  async delete(id) {
    const meta = await this.#meta(id);
    const t = this.#tx('readwrite');
    for (let i = 0; i * SHARD < Math.max(meta.storedBytes, 1); i++) t.shards.delete([id, i]);
    t.models.delete(id);
    await t.done;
  }

  async estimate() {
    return { ...(await navigator.storage.estimate()), persisted: await navigator.storage.persisted() };
  }

  async persist() {
    throw new Error('navigator.storage.persist() is only available on the page.');
  }

  async readShard(id, index) {
    return idb(this.#tx('readonly').shards.get([id, index]));
  }
}

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
    for (let i = 0, bytes = 0; bytes < meta.size; i++) {
      const shard = await this.#store.readShard(id, i);
      if (i === 0 && new TextDecoder().decode(shard.subarray(0, 4)) !== 'GGUF') throw new Error(`${id} is not a GGUF file.`);
      bytes += shard.length;
      onProgress?.({ phase: 'uploading', bytes, total: meta.size });
    }
    onProgress?.({ phase: 'compiling', bytes: meta.size, total: meta.size });
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
