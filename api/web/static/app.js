// The dashboard's entry point: theme, connection indicator, hash routing and the live store.

import { h, fill, icon, getToken, clearToken, confirmDialog, askToken, tokenDeclined } from './lib.js';
import { store } from './live.js';
import { mountRuns, mountRun } from './runs.js';
import { mountQuota, mountHealth } from './monitor.js';
import { mountAnnotations, mountDataset } from './data.js';
import { mountConfig, mountPrompts } from './settings.js';
import { mountAgreement } from './agreement.js';

// ---------------------------------------------------------------------------------------------
// Theme: follows the system until toggled; the choice is remembered.

const THEME_KEY = 'mha.theme';
const root = document.documentElement;
const darkQuery = matchMedia('(prefers-color-scheme: dark)');
const themeBtn = document.getElementById('theme');

function effectiveTheme() {
  return root.dataset.theme || (darkQuery.matches ? 'dark' : 'light');
}

function renderThemeButton() {
  const dark = effectiveTheme() === 'dark';
  fill(themeBtn, icon(dark ? 'sun' : 'moon', 18));
  themeBtn.title = dark ? 'Switch to the light theme' : 'Switch to the dark theme';
  themeBtn.setAttribute('aria-label', themeBtn.title);
}

themeBtn.addEventListener('click', () => {
  const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
  root.dataset.theme = next;
  try { localStorage.setItem(THEME_KEY, next); } catch { /* private mode */ }
  renderThemeButton();
});
darkQuery.addEventListener('change', renderThemeButton);
renderThemeButton();

// ---------------------------------------------------------------------------------------------
// Connection indicator

const conn = document.getElementById('conn');
const connText = conn.querySelector('.conn-text');
const CONN = {
  live: ['Live', 'Connected: live updates over WebSocket'],
  polling: ['Polling', 'The live connection is down: refreshing every 3 s while it reconnects'],
  offline: ['Offline', 'The API does not answer; retrying'],
};
function renderConn(state) {
  conn.dataset.state = state;
  const [text, title] = CONN[state] || CONN.offline;
  connText.textContent = store.ready || state !== 'offline' ? text : 'Connecting…';
  conn.title = title;
}
store.on('conn', renderConn);
store.on('ready', () => renderConn(store.conn));
renderConn(store.conn);

// Failed runs show as a count on the Health link.
const healthCount = document.getElementById('nav-health-count');
store.on('overview', o => {
  const n = (o?.by_status?.failed || 0);
  healthCount.hidden = !n;
  healthCount.textContent = String(n);
});

// The key button: forgets a stored token, or signs in after the token dialog was dismissed.
const tokenBtn = document.getElementById('token-btn');
function renderTokenBtn() {
  const has = Boolean(getToken());
  tokenBtn.hidden = !has && !tokenDeclined();
  tokenBtn.title = has ? 'Forget the API token' : 'Sign in with an API token';
  tokenBtn.setAttribute('aria-label', tokenBtn.title);
  tokenBtn.classList.toggle('attention', !has);
}
tokenBtn.addEventListener('click', async () => {
  if (!getToken()) {
    askToken(false, true).catch(() => {});
    return;
  }
  if (await confirmDialog({ title: 'Forget the API token?', message: 'This browser stops sending it; the next request asks for a token again.', confirmLabel: 'Forget token' })) {
    clearToken();
    location.reload();
  }
});
window.addEventListener('mha:token', renderTokenBtn);
window.addEventListener('mha:auth-needed', renderTokenBtn);
renderTokenBtn();

// ---------------------------------------------------------------------------------------------
// Routing: #/, #/run/<id>, #/quota, #/health, #/annotations, #/agreement, #/config, #/prompts, #/dataset

const ROUTES = {
  '': { mount: mountRuns, nav: 'runs', title: 'Runs' },
  run: { mount: mountRun, nav: 'runs', title: 'Run' },
  quota: { mount: mountQuota, nav: 'quota', title: 'Quota' },
  health: { mount: mountHealth, nav: 'health', title: 'Health' },
  annotations: { mount: mountAnnotations, nav: 'annotations', title: 'Annotations' },
  agreement: { mount: mountAgreement, nav: 'agreement', title: 'Agreement' },
  config: { mount: mountConfig, nav: 'config', title: 'Config' },
  prompts: { mount: mountPrompts, nav: 'prompts', title: 'Prompts' },
  dataset: { mount: mountDataset, nav: 'dataset', title: 'Dataset' },
};

const app = document.getElementById('app');
let unmount = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const parts = path.replace(/^\/+/, '').split('/');
  const name = parts[0] || '';
  let arg = parts.slice(1).join('/');
  try { arg = decodeURIComponent(arg); } catch { /* keep as is */ }
  return { name, arg, params, path };
}

function route() {
  const r = parseHash();
  const def = ROUTES[r.name] || null;
  // Pages rewrite their own query (filters) with replaceState, which fires no hashchange;
  // a link to another address mounts its page afresh.
  if (unmount) {
    try { unmount(); } catch (err) { console.error(err); }
    unmount = null;
  }
  fill(app);
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (def && a.dataset.nav === def.nav) {
      a.setAttribute('aria-current', 'page');
      // On a phone the nav scrolls sideways: keep the current page's link in sight.
      const nav = a.parentElement;
      const ar = a.getBoundingClientRect(), nr = nav.getBoundingClientRect();
      if (ar.right > nr.right || ar.left < nr.left) nav.scrollLeft += (ar.left + ar.right - nr.left - nr.right) / 2;
    } else a.removeAttribute('aria-current');
  }
  if (!def) {
    document.title = 'Not found · MHA';
    app.appendChild(h('section', { class: 'page' }, h('div', { class: 'card' }, h('h1', null, 'Page not found'), h('p', null, 'There is no page at this address. '), h('a', { href: '#/' }, 'Go to the runs'))));
    return;
  }
  if (r.name === 'run' && !r.arg) {
    location.replace('#/');
    return;
  }
  document.title = `${r.name === 'run' ? r.arg : def.title} · MHA`;
  try {
    unmount = def.mount(app, r) || null;
  } catch (err) {
    console.error(err);
    app.appendChild(h('section', { class: 'page' }, h('div', { class: 'card problem' }, h('strong', null, 'This page failed to render: '), String(err?.message || err))));
  }
  window.scrollTo(0, 0);
}

window.addEventListener('hashchange', route);
route();
store.start();

// Keyboard: "g" then a letter jumps to a page (r runs, q quota, h health, a annotations,
// k agreement, c config, p prompts, d dataset).
let gPressed = 0;
window.addEventListener('keydown', e => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest('input, textarea, select, [contenteditable], dialog')) return;
  if (e.key === 'g') {
    gPressed = Date.now();
    return;
  }
  if (Date.now() - gPressed > 1200) return;
  const to = { r: '#/', q: '#/quota', h: '#/health', a: '#/annotations', k: '#/agreement', c: '#/config', p: '#/prompts', d: '#/dataset' }[e.key];
  if (to) {
    gPressed = 0;
    location.hash = to;
  }
});
