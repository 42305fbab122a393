// The engine's home: this module worker owns the wasm module, the model store (IndexedDB) and the
// WebGPU engine, so the page's main thread never blocks while a model downloads, loads or talks.
//
// Protocol (app.js is the only client):
//   page → worker  {id, op, args}
//   worker → page  {id, type: 'event', data}     zero or more while the op runs (progress, tokens)
//                  {id, type: 'done', value}      or
//                  {id, type: 'error', error: {name, message}}
// Ops run concurrently on purpose: `abort` and `abortImport` must reach the engine while a `chat`
// or an import is still awaiting.

let hearth; // the wasm-bindgen module namespace (./pkg/hearth.js)
let store; // ModelStore
let engine; // WebEngine, or null when WebGPU is unavailable
let engineError = null; // why `engine` is null, for the page to show
let loadedId = null;
const imports = new Map(); // model id -> AbortController of its running import

const ops = {
  /** Loads the wasm, opens the store and tries to create the engine. Safe to call once. */
  async init() {
    try {
      hearth = await import('./pkg/hearth.js');
    } catch (err) {
      throw new Error(`The engine (pkg/hearth.js) could not be loaded: ${err.message}. ` +
        'If you are running from a checkout, build it with scripts/build-web.sh.');
    }
    await hearth.default(); // fetches and instantiates pkg/hearth_bg.wasm
    store = await hearth.ModelStore.open();
    // A build may carry the store without the GPU engine (while the engine is being written):
    // say so instead of blaming WebGPU.
    const engineMissing = typeof hearth.WebEngine?.create !== 'function';
    if (engineMissing) {
      engineError = 'This build of Hearth has no GPU engine (WebEngine is missing from pkg/hearth.js).';
    } else {
      try {
        engine = await hearth.WebEngine.create();
      } catch (err) {
        engine = null;
        engineError = errorMessage(err);
      }
    }
    return { engine: engine ? await adapter(plain(engine.adapterInfo())) : null, engineError, engineMissing };
  },

  async list() {
    return plain(await store.list()).map(record);
  },

  async importUrl({ url, id }, emit) {
    await runImport(id, emit, (options) => store.importUrl(url, id, options));
    return null;
  },

  async importFile({ file, id }, emit) {
    await runImport(id, emit, (options) => store.importFile(file, id, options));
    return null;
  },

  abortImport({ id }) {
    imports.get(id)?.abort(); // the import stays resumable
    return null;
  },

  async delete({ id }) {
    if (engine && loadedId === id) {
      engine.unload();
      loadedId = null;
    }
    await store.delete(id);
    return null;
  },

  async load({ id, contextLength }, emit) {
    needEngine();
    if (loadedId !== null) {
      // Free the previous model's GPU buffers before allocating the next one's.
      engine.unload();
      loadedId = null;
    }
    // The KV cache is sized at load time, so the context length goes here (and not per chat).
    await engine.load(id, (p) => emit(plain(p)), contextLength ? { contextLength } : {});
    loadedId = id;
    return plain(engine.stats());
  },

  unload() {
    if (engine) engine.unload();
    loadedId = null;
    return null;
  },

  async chat({ messages, options }, emit) {
    needEngine();
    const result = await engine.chat(messages, options, (piece) => emit(piece));
    return { result: plain(result), stats: plain(engine.stats()) };
  },

  abort() {
    if (engine) engine.abort();
    return null;
  },

  stats() {
    return engine ? plain(engine.stats()) : null;
  },
};

/** Runs a store import with a progress callback and an AbortSignal for `abortImport`. */
async function runImport(id, emit, start) {
  const ctl = new AbortController();
  imports.set(id, ctl);
  try {
    await start({ signal: ctl.signal, onProgress: (p) => emit(progress(p)) });
  } finally {
    imports.delete(id);
  }
}

// The page sees one shape for store data, whichever spelling the store uses:
// progress {bytes, total}; records {id, name, source (a URL, or "file:NAME"), size, storedBytes,
// complete, shardSize, summary}.
function progress(p) {
  p = plain(p);
  return { bytes: p.bytes ?? p.storedBytes ?? 0, total: p.total ?? p.totalBytes ?? 0 };
}

function record(m) {
  const src = m.source;
  const source = typeof src === 'string' ? src : src?.url ?? (src?.name != null ? `file:${src.name}` : '');
  return { ...m, source, size: m.size ?? m.totalSize ?? 0, complete: Boolean(m.complete ?? m.ready) };
}

/**
 * The engine's adapter info with a display `name` and `backend`. wgpu on the web cannot see the
 * adapter's name, so the browser's own GPUAdapterInfo (vendor, architecture) fills it in.
 */
async function adapter(info) {
  const a = info.adapter;
  let name = info.name || (typeof a === 'string' ? a : a?.name || a?.description);
  if (!name) {
    const gpu = (await navigator.gpu?.requestAdapter().catch(() => null))?.info;
    name = gpu && (gpu.description || [gpu.vendor, gpu.architecture].filter(Boolean).join(' '));
  }
  const backend = info.backend === 'BrowserWebGpu' ? 'WebGPU' : info.backend;
  const kind = info.device_type === 'Cpu' ? ', software' : '';
  return { ...info, name: name || 'WebGPU adapter', backend: backend ? `${backend}${kind}` : undefined };
}

function needEngine() {
  if (!engine) throw new Error(engineError ?? 'WebGPU is not available in this browser.');
}

self.onmessage = async (e) => {
  const { id, op, args } = e.data;
  const emit = (data) => self.postMessage({ id, type: 'event', data });
  try {
    if (!(op in ops)) throw new Error(`unknown operation ${op}`);
    if (op !== 'init' && !store) throw new Error('The engine is not ready yet.');
    const value = await ops[op](args ?? {}, emit);
    self.postMessage({ id, type: 'done', value });
  } catch (err) {
    self.postMessage({ id, type: 'error', error: { name: err?.name ?? 'Error', message: errorMessage(err) } });
  }
};

function errorMessage(err) {
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/**
 * Copies a value from wasm into plain data that postMessage can clone predictably: serde-generated
 * values may be Maps (Rust maps) or BigInts (u64), and wasm-bindgen class instances cannot be cloned.
 */
function plain(v) {
  if (typeof v === 'bigint') return Number(v);
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (ArrayBuffer.isView(v) || v instanceof Blob) return v;
  const out = {};
  // Own enumerable keys, then getters on the prototype (wasm-bindgen exposes struct fields that way).
  for (const k of Object.keys(v)) out[k] = plain(v[k]);
  let proto = Object.getPrototypeOf(v);
  if (proto && proto !== Object.prototype) {
    for (const [k, d] of Object.entries(Object.getOwnPropertyDescriptors(proto))) {
      if (d.get && !(k in out)) out[k] = plain(v[k]);
    }
  }
  return out;
}
