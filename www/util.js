// Small helpers for app.js: DOM building, number formatting, and the generation settings kept in
// localStorage across visits.

// llama.cpp's sampling defaults (repeat penalty off), an empty system prompt so the model's own
// chat template supplies its default, and a context that keeps an 8B model's KV cache modest.
export const DEFAULTS = {
  system: '', temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1,
  seed: '', maxTokens: 512, contextLength: 2048,
};
const INTEGERS = new Set(['topK', 'seed', 'maxTokens', 'contextLength']);

export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c != null) node.append(c); // strings become Text nodes
  return node;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

/** 134515008 -> "135M". */
export function fmtCount(n) {
  if (!Number.isFinite(n)) return '?';
  for (const [d, u] of [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'K']]) if (n >= d) return `${+(n / d).toPrecision(3)}${u}`;
  return String(n);
}

export const fmtRate = (x) => (Number.isFinite(x) && x > 0 ? x.toFixed(x >= 100 ? 0 : 1) : '–');

export function setProgress(bar, bytes, total) {
  if (total > 0) {
    bar.max = total;
    bar.value = Math.min(bytes, total);
  } else {
    bar.removeAttribute('value'); // indeterminate
  }
}

/** A short stable hash (FNV-1a) to tell sources apart in store ids. */
export function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return (h >>> 0).toString(16);
}

/** Fills the settings form from localStorage (the defaults where nothing was saved). */
export function loadSettings(form) {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem('hearth.settings') ?? '{}') ?? {};
  } catch { /* a corrupt entry falls back to the defaults */ }
  const s = { ...DEFAULTS, ...saved };
  for (const [k, v] of Object.entries(s)) if (form.elements[k]) form.elements[k].value = v;
}

export function saveSettings(form) {
  const s = {};
  for (const k of Object.keys(DEFAULTS)) s[k] = form.elements[k].value;
  localStorage.setItem('hearth.settings', JSON.stringify(s));
}

/** The generation options for engine.chat, each number clamped to its input's range. */
export function readOptions(form) {
  const opts = {};
  for (const k of ['temperature', 'topK', 'topP', 'minP', 'repeatPenalty', 'seed', 'maxTokens', 'contextLength']) {
    const input = form.elements[k];
    if (input.value.trim() === '') continue; // e.g. no seed: the engine picks one
    let v = Number(input.value);
    if (!Number.isFinite(v)) v = Number(DEFAULTS[k]);
    if (input.min !== '') v = Math.max(Number(input.min), v);
    if (input.max !== '') v = Math.min(Number(input.max), v);
    if (INTEGERS.has(k)) v = Math.round(v);
    opts[k] = v;
  }
  return opts;
}
