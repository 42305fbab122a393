// Hearth's service worker: makes the app shell (page, scripts, wasm, styles, icons, manifest)
// work offline. Models are not its business: they live in IndexedDB, and /models/ downloads
// (large, ranged, resumable) always go straight to the network.
//
// The build version comes from pkg/build-version.js, written by scripts/build-web.sh as a hash of
// the shell files. Browsers byte-compare imported scripts when checking for an update, so a new
// build installs a new worker with a new cache, and the old cache is deleted once it activates.
// Without a build (a bare checkout) the version is 'dev': the shell is then fetched network-first
// so edits show on reload, and the cache is only the offline fallback.

let build = 'dev';
try {
  importScripts('pkg/build-version.js');
  build = self.HEARTH_BUILD || 'dev';
} catch {
  // No build yet: stay in 'dev' mode.
}
const BUILD = build;
const PREFIX = 'hearth-shell-';
const CACHE = PREFIX + BUILD;

// Paths relative to the worker's scope. './' is the page itself (navigations to the root).
const SHELL = [
  './', 'index.html', 'style.css', 'app.js', 'util.js', 'worker.js', 'manifest.webmanifest',
  'icons/favicon.svg', 'icons/icon-192.png', 'icons/icon-512.png', 'icons/icon-maskable-512.png',
];
// The engine exists only after a build: required then, best-effort in 'dev'.
const ENGINE = ['pkg/hearth.js', 'pkg/hearth_bg.wasm'];
const CACHED = new Set([...SHELL, ...ENGINE]);

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    // cache: 'reload' skips the HTTP cache so the new cache never mixes in stale files.
    await cache.addAll(SHELL.map((p) => new Request(p, { cache: 'reload' })));
    if (BUILD !== 'dev') {
      await cache.addAll(ENGINE.map((p) => new Request(p, { cache: 'reload' })));
    } else {
      await Promise.all(ENGINE.map(async (p) => {
        try {
          const res = await fetch(p, { cache: 'reload' });
          if (res.ok) await cache.put(p, res);
        } catch { /* not built: the page reports it */ }
      }));
      self.skipWaiting(); // development: take over at once
    }
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    // Control the page that installed us, so its first visit already works offline next time.
    await self.clients.claim();
  })());
});

self.addEventListener('message', (event) => {
  if (event.data?.type === 'skipWaiting') self.skipWaiting(); // the user accepted the update
  if (event.data?.type === 'version') event.ports[0]?.postMessage({ build: BUILD });
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  const scope = new URL(self.registration.scope);
  if (url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  const rel = url.pathname.slice(scope.pathname.length) || './';
  // Everything that is not the shell (models above all) is left to the network untouched.
  if (!CACHED.has(rel)) return;
  event.respondWith(BUILD === 'dev' ? networkFirst(rel) : cacheFirst(rel));
});

async function cacheFirst(rel) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(rel);
  if (hit) return hit;
  const res = await fetch(rel);
  if (res.ok) cache.put(rel, res.clone());
  return res;
}

async function networkFirst(rel) {
  const cache = await caches.open(CACHE);
  try {
    const res = await fetch(rel, { cache: 'no-cache' });
    if (res.ok) await cache.put(rel, res.clone());
    return res;
  } catch (err) {
    const hit = await cache.match(rel);
    if (hit) return hit;
    throw err;
  }
}
