// Hearth's page: a thin UI over worker.js, which owns the wasm engine and the model store.
// Everything that comes from a model or a file (replies, names, error text) is put in the DOM as
// text (textContent / Text nodes), never parsed as HTML.
//
// The page announces what happens as `hearth:*` CustomEvents on `document` (import-progress,
// import-done, import-error, load-progress, loaded, reply, models): the end-to-end test listens to
// them, and they keep the UI code honest about its own state changes.

import { el, fmtBytes, fmtCount, fmtRate, setProgress, hash, loadSettings, saveSettings, readOptions } from './util.js';

const DEMO = {
  url: new URL('models/SmolLM2-135M-Instruct.Q4_1.gguf', location.href).href,
  id: 'SmolLM2-135M-Instruct.Q4_1.gguf',
};
const LLAMA = {
  url: 'https://huggingface.co/bartowski/Meta-Llama-3-8B-Instruct-GGUF/resolve/main/Meta-Llama-3-8B-Instruct-Q4_K_M.gguf',
  id: 'Meta-Llama-3-8B-Instruct-Q4_K_M.gguf',
  size: 4_920_734_016,
};
const PHASES = { reading: 'Reading from storage', uploading: 'Uploading to the GPU', compiling: 'Compiling GPU kernels' };

const $ = (id) => document.getElementById(id);
const settingsForm = $('settings');
const state = {
  ready: false, // the worker has the store open
  engine: null, // adapter info, or null when WebGPU is unavailable
  engineMissing: false, // the wasm build has no WebEngine: models can be stored, not run
  models: [],
  loadedId: null,
  importing: null, // {id, paused}
  loading: false,
  generating: false,
  messages: [], // the conversation without the system prompt: [{role, content}]
};

// ---------------------------------------------------------------------------------------------
// Worker RPC

const worker = new Worker(new URL('worker.js', import.meta.url), { type: 'module' });
const pending = new Map();
let nextId = 1;
worker.onmessage = (e) => {
  const { id, type } = e.data;
  const p = pending.get(id);
  if (!p) return;
  if (type === 'event') return p.onEvent?.(e.data.data);
  pending.delete(id);
  if (type === 'done') p.resolve(e.data.value);
  else p.reject(Object.assign(new Error(e.data.error.message), { name: e.data.error.name }));
};
worker.onerror = (e) => {
  // A worker that fails to start (syntax error, blocked module) fails every pending call.
  // After a wasm panic the worker is unusable too: better an error than a call that never ends.
  for (const p of pending.values()) p.reject(new Error(`The engine stopped: ${e.message || 'the worker failed to start'}`));
  pending.clear();
};

function call(op, args, onEvent) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, onEvent });
    worker.postMessage({ id, op, args });
  });
}

const announce = (name, detail) => document.dispatchEvent(new CustomEvent(`hearth:${name}`, { detail }));

function setStatus(text) {
  $('status').textContent = text;
}

function statusLine() {
  const parts = [];
  if (state.engine) parts.push(`GPU: ${state.engine.name || state.engine.description || 'WebGPU adapter'}${state.engine.backend ? ` (${state.engine.backend})` : ''}`);
  const m = state.models.find((x) => x.id === state.loadedId);
  parts.push(m ? `${m.name || m.id} ready` : 'No model loaded');
  setStatus(parts.join(' · '));
}

/** Enables what the current state allows; called after every state change. */
function refreshControls() {
  const busy = state.loading || state.generating;
  const canChat = state.engine && state.loadedId && !state.loading;
  $('prompt').disabled = !canChat;
  $('send').disabled = !canChat || state.generating;
  $('send').hidden = state.generating;
  $('stop').hidden = !state.generating;
  for (const b of document.querySelectorAll('[data-needs-idle]')) b.disabled = busy || Boolean(state.importing);
  for (const b of [$('get-demo'), $('get-llama'), $('file-btn'), document.querySelector('#url-form button')]) {
    b.disabled = !state.ready || Boolean(state.importing);
  }
}

// ---------------------------------------------------------------------------------------------
// WebGPU availability, checked on the page so the message shows even if the engine cannot load.

async function checkWebGPU() {
  let reason = null;
  if (!window.isSecureContext) reason = 'This page is not in a secure context: WebGPU needs HTTPS or localhost.';
  else if (!navigator.gpu) reason = 'This browser does not expose WebGPU (navigator.gpu is missing).';
  else {
    try {
      if (!(await navigator.gpu.requestAdapter())) {
        reason = 'This browser has WebGPU, but no GPU adapter is available (the GPU or its driver may be blocklisted, or hardware acceleration is off).';
      }
    } catch (err) {
      reason = `Asking for a GPU adapter failed: ${err.message}`;
    }
  }
  if (reason) showNoGPU(reason);
  return !reason;
}

function showProblem(title, text) {
  $('problem-title').textContent = title;
  $('problem-text').textContent = text;
  $('problem').hidden = false;
}

function showNoGPU(reason) {
  $('nogpu-reason').textContent = reason;
  $('nogpu').hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Stored models

async function refreshModels() {
  state.models = await call('list');
  renderModels();
  announce('models', state.models);
  updateStorage();
}

function renderModels() {
  const list = $('models');
  list.replaceChildren();
  if (state.models.length === 0) list.append(el('li', { className: 'muted', textContent: 'Nothing yet.' }));
  for (const m of state.models) {
    const name = m.name || m.id;
    const pct = m.size > 0 ? Math.floor((100 * m.storedBytes) / m.size) : 0;
    const loaded = state.loadedId === m.id ? ' · loaded' : '';
    const about = m.summary ? ` · ${fmtCount(m.summary.parameters)} parameters · ${(m.summary.tensorTypes ?? []).join('/')}` : '';
    const detail = m.complete ? `ready · ${fmtBytes(m.size)}${about}${loaded}` : `partial · ${pct}% of ${fmtBytes(m.size)}`;
    const buttons = el('div', { className: 'buttons' });
    if (m.complete) {
      const isLoaded = state.loadedId === m.id;
      const load = el('button', { type: 'button', className: 'small', textContent: isLoaded ? 'Loaded' : 'Load', disabled: isLoaded || !state.engine });
      load.setAttribute('aria-label', `Load ${name}`);
      if (!load.disabled) load.dataset.needsIdle = '';
      load.onclick = () => loadModel(m.id);
      buttons.append(load);
    } else {
      const resume = el('button', { type: 'button', className: 'small', textContent: 'Resume' });
      resume.setAttribute('aria-label', `Resume ${name}`);
      resume.dataset.needsIdle = '';
      resume.onclick = () => resumeImport(m);
      buttons.append(resume);
    }
    const del = el('button', { type: 'button', className: 'small danger', textContent: 'Delete' });
    del.setAttribute('aria-label', `Delete ${name}`);
    del.dataset.needsIdle = '';
    del.onclick = () => deleteModel(m);
    buttons.append(del);
    const li = el('li', {}, el('div', {}, el('strong', { textContent: name }), el('br'), el('span', { className: 'muted', textContent: detail })), buttons);
    li.dataset.id = m.id;
    li.dataset.complete = String(Boolean(m.complete));
    li.dataset.storedBytes = String(m.storedBytes);
    li.dataset.size = String(m.size);
    list.append(li);
  }
  refreshControls();
}

async function deleteModel(m) {
  if (!confirm(`Delete ${m.name || m.id} (${fmtBytes(m.storedBytes)}) from this browser?`)) return;
  try {
    await call('delete', { id: m.id });
    if (state.loadedId === m.id) state.loadedId = null;
    if (localStorage.getItem('hearth.lastModel') === m.id) localStorage.removeItem('hearth.lastModel');
  } catch (err) {
    alert(`Could not delete: ${err.message}`);
  }
  await refreshModels();
  statusLine();
}

// Storage: estimate and persist run here rather than in the worker because
// navigator.storage.persist() exists only on the window.
async function updateStorage() {
  if (!navigator.storage?.estimate) return;
  const { usage = 0, quota = 0 } = await navigator.storage.estimate();
  const persisted = (await navigator.storage.persisted?.()) ?? false;
  $('storage').textContent = `Using ${fmtBytes(usage)} of ${fmtBytes(quota)} this site may use${persisted ? ' · persistent' : ''}.`;
  $('persist').hidden = persisted || !navigator.storage.persist;
}

async function requestPersistence(explicit) {
  if (!navigator.storage?.persist) return;
  const granted = await navigator.storage.persist();
  if (explicit && !granted) {
    $('storage').textContent += ' The browser declined to make storage persistent; it may evict models when space runs low.';
    return;
  }
  updateStorage();
}

// ---------------------------------------------------------------------------------------------
// Importing

/** A store id from a URL or file name: its last path segment, made unique per source. */
function idFor(name, source) {
  let id = name.replace(/[^\w.\-]+/g, '_').slice(0, 120) || 'model.gguf';
  const clash = state.models.find((m) => m.id === id && m.source && m.source !== source);
  if (clash) id += '-' + hash(source);
  return id;
}

function importUrl(url, id) {
  let parsed;
  try {
    parsed = new URL(url, location.href);
  } catch {
    return alert('That is not a valid URL.');
  }
  if (!/^https?:$/.test(parsed.protocol)) return alert('Only http and https URLs can be downloaded.');
  id ??= idFor(decodeURIComponent(parsed.pathname.split('/').pop() || ''), parsed.href);
  const existing = state.models.find((m) => m.id === id);
  if (existing?.complete) return loadModel(id);
  return runImport(id, (onProgress) => call('importUrl', { url: parsed.href, id }, onProgress));
}

function importFile(file, id) {
  if (!/\.gguf$/i.test(file.name) && !confirm(`${file.name} does not end in .gguf. Store it anyway?`)) return;
  id ??= idFor(file.name, `file:${file.name}`); // the store's source for a file (see worker.js)
  const existing = state.models.find((m) => m.id === id);
  if (existing?.complete && existing.size === file.size) return loadModel(id);
  return runImport(id, (onProgress) => call('importFile', { file, id }, onProgress));
}

let resumeFileFor = null; // the stored entry a file chosen in the picker should resume

function resumeImport(m) {
  if (/^(https?:|\/)/.test(m.source ?? '')) return importUrl(m.source, m.id);
  // Imported from a local file: the browser cannot reopen it on its own, so ask for it again.
  resumeFileFor = m;
  alert(`Choose ${m.name || m.id} again to resume storing it.`);
  $('file').click();
}

async function runImport(id, start) {
  if (state.importing) return;
  state.importing = { id, paused: false };
  refreshControls();
  requestPersistence(false); // multi-gigabyte models deserve protection from eviction
  const box = $('import');
  const bar = $('import-bar');
  box.hidden = false;
  $('import-label').textContent = `Storing ${id}`;
  $('import-cancel').hidden = false;
  $('import-text').textContent = 'Starting…';
  let first = null;
  try {
    await start((p) => {
      const now = performance.now();
      first ??= { t: now, bytes: p.bytes };
      const secs = (now - first.t) / 1000;
      const speed = secs > 0.5 ? ` · ${fmtBytes((p.bytes - first.bytes) / secs)}/s` : '';
      setProgress(bar, p.bytes, p.total);
      $('import-text').textContent = `${fmtBytes(p.bytes)} of ${p.total ? fmtBytes(p.total) : '?'}${speed}`;
      announce('import-progress', { id, bytes: p.bytes, total: p.total });
    });
    $('import-text').textContent = 'Stored.';
  } catch (err) {
    const paused = state.importing.paused || err.name === 'AbortError';
    state.importing = null;
    $('import-cancel').hidden = true;
    await refreshModels(); // before announcing, so the list already shows what was kept
    // The store keeps whole shards only: an import stopped before its first one left nothing to
    // resume, and the page must not point at a Resume button that is not there.
    const kept = state.models.some((m) => m.id === id);
    $('import-text').textContent = paused
      ? kept ? 'Paused. Resume it from the list below.' : 'Paused before anything was stored: start it again to continue.'
      : err.name === 'QuotaExceededError'
        ? `Out of storage: ${err.message} Delete a model or free disk space, then ${kept ? 'resume' : 'try again'}.`
        : `Stopped: ${err.message} ${kept ? 'What is stored is kept: resume it from the list below.' : 'Nothing was stored.'}`;
    announce('import-error', { id, message: err.message, paused });
    return;
  }
  state.importing = null;
  $('import-cancel').hidden = true;
  await refreshModels();
  announce('import-done', { id });
  await loadModel(id);
}

// ---------------------------------------------------------------------------------------------
// Loading

async function loadModel(id) {
  if (state.loading || state.generating) return;
  if (!state.engine) {
    if (!state.engineMissing) showNoGPU('The model is stored, but WebGPU is not available to run it.');
    return;
  }
  state.loading = true;
  refreshControls();
  const box = $('load');
  const bar = $('load-bar');
  box.hidden = false;
  $('load-label').textContent = `Loading ${id}`;
  setProgress(bar, 0, 0);
  const t0 = performance.now();
  try {
    const { contextLength } = readOptions(settingsForm);
    const stats = await call('load', { id, contextLength }, (p) => {
      setProgress(bar, p.bytes, p.total);
      $('load-text').textContent = `${PHASES[p.phase] ?? p.phase}: ${fmtBytes(p.bytes)} of ${fmtBytes(p.total)}`;
      announce('load-progress', p);
    });
    const ms = performance.now() - t0;
    state.loadedId = id;
    localStorage.setItem('hearth.lastModel', id);
    $('load-label').textContent = `Loaded ${id}`;
    $('load-text').textContent = `Loaded in ${(ms / 1000).toFixed(1)} s${stats?.peakWasmMemoryBytes ? ` · peak wasm memory ${fmtBytes(stats.peakWasmMemoryBytes)}` : ''}.`;
    announce('loaded', { id, ms, stats });
  } catch (err) {
    $('load-text').textContent = `Could not load: ${err.message}`;
    announce('load-error', { id, message: err.message });
  } finally {
    state.loading = false;
    renderModels();
    statusLine();
    if (state.loadedId === id) {
      // On a phone the chat sits below the model panel: fold the panel so the chat is in view.
      if (matchMedia('(max-width: 859px)').matches) $('models-panel').open = false;
      $('prompt').focus();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Chat

function addMessage(role, text) {
  $('empty')?.remove();
  const node = el('div', { className: `msg ${role}` }, text);
  $('transcript').append(node);
  scrollDown(true);
  return node;
}

function scrollDown(force) {
  const t = $('transcript');
  // Follow the stream only while the reader is at the bottom; scrolling up to read stops it.
  if (force || t.scrollHeight - t.scrollTop - t.clientHeight < 80) t.scrollTop = t.scrollHeight;
}

async function send(text) {
  if (!text.trim() || state.generating || !state.loadedId) return;
  state.generating = true;
  refreshControls();
  state.messages.push({ role: 'user', content: text });
  addMessage('user', text);
  const bubble = addMessage('assistant');
  bubble.classList.add('streaming');
  bubble.setAttribute('aria-busy', 'true'); // screen readers read the reply once, when complete
  const textNode = bubble.appendChild(document.createTextNode(''));
  const system = settingsForm.elements.system.value.trim();
  const messages = system ? [{ role: 'system', content: system }, ...state.messages] : [...state.messages];
  let pieces = 0;
  let firstAt = 0;
  try {
    const { result, stats } = await call('chat', { messages, options: readOptions(settingsForm) }, (piece) => {
      firstAt ||= performance.now();
      pieces++;
      textNode.appendData(piece);
      const secs = (performance.now() - firstAt) / 1000;
      if (secs > 0.3) $('perf').textContent = `decoding… ${fmtRate((pieces - 1) / secs)} tok/s`;
      scrollDown(false);
    });
    // The engine's final text is authoritative (the last piece may be completed at the end).
    if (typeof result.text === 'string') textNode.data = result.text;
    if (textNode.data) state.messages.push({ role: 'assistant', content: textNode.data });
    else state.messages.pop(); // nothing came back: drop the turn so roles keep alternating
    const why = { abort: 'stopped', aborted: 'stopped', length: 'reached the token limit', context: 'context is full' }[result.finishReason];
    if (why) bubble.append(el('span', { className: 'meta', textContent: `(${why})` }));
    showPerf(result, stats);
    announce('reply', { result, stats });
  } catch (err) {
    state.messages.pop();
    bubble.classList.add('error');
    bubble.append(el('span', { className: 'meta', textContent: `Error: ${err.message}` }));
    announce('reply-error', { message: err.message });
  } finally {
    bubble.classList.remove('streaming');
    bubble.removeAttribute('aria-busy');
    state.generating = false;
    refreshControls();
    scrollDown(false);
  }
}

function showPerf(r, s) {
  const parts = [
    `prefill ${fmtRate(r.prefillTokS)} tok/s`,
    `decode ${fmtRate(r.decodeTokS)} tok/s`,
    `${r.promptTokens ?? '?'} + ${r.generatedTokens ?? '?'} tokens`,
  ];
  if (s?.contextTokens != null) parts.push(`context ${s.contextTokens}`);
  if (s?.wasmMemoryBytes) parts.push(`wasm ${fmtBytes(s.wasmMemoryBytes)} (peak ${fmtBytes(s.peakWasmMemoryBytes)})`);
  $('perf').textContent = parts.join(' · ');
}

function stop() {
  if (state.generating) call('abort').catch(() => {});
}

async function newChat() {
  stop();
  while (state.generating) await new Promise((r) => setTimeout(r, 20));
  state.messages = [];
  $('transcript').replaceChildren(el('p', { id: 'empty', className: 'empty', textContent: 'New chat. Ask anything.' }));
  $('perf').textContent = '';
  $('prompt').focus();
}

// ---------------------------------------------------------------------------------------------
// Service worker: offline shell and updates

let updateRequested = false;

async function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  try {
    // updateViaCache 'none': the browser always asks the network for sw.js and its imported
    // build version, so a new build is noticed on the next visit.
    const reg = await navigator.serviceWorker.register('sw.js', { updateViaCache: 'none' });
    reg.update().catch(() => {}); // look for a new build now, not only on the browser's schedule
    const offer = (w) => {
      if (!w || !navigator.serviceWorker.controller) return; // first install: nothing to replace
      $('update').hidden = false;
      $('update').onclick = () => {
        updateRequested = true;
        w.postMessage({ type: 'skipWaiting' });
      };
    };
    offer(reg.waiting);
    reg.addEventListener('updatefound', () => {
      const w = reg.installing;
      w?.addEventListener('statechange', () => w.state === 'installed' && offer(w));
    });
    navigator.serviceWorker.addEventListener('controllerchange', () => {
      if (updateRequested) location.reload();
      showBuild();
    });
    showBuild();
  } catch (err) {
    console.warn('Service worker registration failed; the page will not work offline.', err);
  }
}

/** Shows the controlling service worker's build version (the hash build-web.sh wrote). */
function showBuild() {
  const sw = navigator.serviceWorker.controller;
  if (!sw) return;
  const channel = new MessageChannel();
  channel.port1.onmessage = (e) => { $('build').textContent = `Build ${e.data.build}.`; };
  sw.postMessage({ type: 'version' }, [channel.port2]);
}

// ---------------------------------------------------------------------------------------------
// Wiring

$('get-demo').onclick = () => importUrl(DEMO.url, DEMO.id);
$('get-llama').onclick = async () => {
  const est = await navigator.storage?.estimate?.();
  if (est && est.quota - est.usage < LLAMA.size &&
      !confirm(`This browser offers ${fmtBytes(est.quota - est.usage)} of storage to this site and the model needs ${fmtBytes(LLAMA.size)}. Try anyway?`)) return;
  importUrl(LLAMA.url, LLAMA.id);
};
$('url-form').onsubmit = (e) => {
  e.preventDefault();
  importUrl($('url').value.trim());
};
$('file-btn').onclick = () => {
  resumeFileFor = null;
  $('file').click();
};
$('file').onchange = () => {
  const file = $('file').files[0];
  $('file').value = '';
  if (!file) return;
  const target = resumeFileFor;
  resumeFileFor = null;
  if (target && file.size !== target.size) return alert(`${file.name} is not the file being resumed (sizes differ).`);
  importFile(file, target?.id);
};
$('import-cancel').onclick = () => {
  if (!state.importing) return;
  state.importing.paused = true;
  call('abortImport', { id: state.importing.id }).catch(() => {});
};
$('persist').onclick = () => requestPersistence(true);

$('composer').onsubmit = (e) => {
  e.preventDefault();
  const text = $('prompt').value;
  if (!text.trim()) return;
  $('prompt').value = '';
  send(text);
};
$('prompt').onkeydown = (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
};
document.addEventListener('keydown', (e) => e.key === 'Escape' && stop());
$('stop').onclick = stop;
$('new-chat').onclick = newChat;

settingsForm.addEventListener('input', () => saveSettings(settingsForm));
settingsForm.onsubmit = (e) => e.preventDefault();
$('settings-reset').onclick = () => {
  localStorage.removeItem('hearth.settings');
  loadSettings(settingsForm);
};

// Drag and drop a .gguf anywhere on the page.
let dragDepth = 0;
const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes('Files');
window.addEventListener('dragenter', (e) => {
  if (!hasFiles(e)) return;
  dragDepth++;
  $('drop').hidden = false;
});
window.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) { dragDepth = 0; $('drop').hidden = true; }
});
window.addEventListener('dragover', (e) => hasFiles(e) && e.preventDefault());
window.addEventListener('drop', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  $('drop').hidden = true;
  const file = e.dataTransfer.files[0];
  if (!file) return;
  if (!state.ready || state.importing) return alert('Wait for the current download to finish first.');
  importFile(file);
});

// ---------------------------------------------------------------------------------------------
// Start

async function start() {
  loadSettings(settingsForm);
  refreshControls();
  registerServiceWorker();
  const gpuOk = await checkWebGPU();
  setStatus('Starting the engine…');
  let info;
  try {
    info = await call('init');
    state.engine = info.engine;
    state.engineMissing = Boolean(info.engineMissing);
    if (info.engineMissing) showProblem('Models can be stored, but not run', info.engineError);
    else if (!state.engine && gpuOk) showNoGPU(info.engineError ?? 'The engine could not start WebGPU.');
    state.ready = true;
  } catch (err) {
    setStatus('The engine could not start.');
    showProblem('The engine could not start', err.message);
    announce('engine-error', { message: err.message });
    return;
  }
  await refreshModels();
  statusLine();
  announce('engine-ready', { engine: state.engine, engineError: info.engineError, engineMissing: Boolean(info.engineMissing) });
  const last = localStorage.getItem('hearth.lastModel');
  if (state.engine && state.models.some((m) => m.id === last && m.complete)) await loadModel(last);
}

start();
