// Shared helpers: DOM building (text only, never innerHTML), the REST client with bearer-token
// auth, toasts, dialogs and formatting.

export const DOMAINS = ['urgency', 'therapeutic', 'intensity', 'adjunct', 'modality', 'redressal'];
export const STATUSES = ['running', 'paused', 'waiting_quota', 'waiting_retry', 'failed', 'stopped', 'completed', 'not_started'];
export const ANNOTATION_STATUSES = ['ok', 'malformed', 'error', 'blocked'];
export const ACTIONS = ['start', 'pause', 'resume', 'stop', 'reset', 'restart'];

// Which controls make sense in which status; the others stay clickable but are dimmed.
export const SUGGESTED = {
  running: ['pause', 'stop'],
  paused: ['resume', 'stop'],
  waiting_quota: ['pause', 'stop'],
  waiting_retry: ['pause', 'stop', 'reset'],
  failed: ['reset', 'restart'],
  stopped: ['start', 'restart'],
  completed: ['restart'],
  not_started: ['start'],
};

export const ACTION_HELP = {
  start: 'Start the run (enabled runs only)',
  pause: 'Pause after the call in flight',
  resume: 'Resume a paused run',
  stop: 'Stop the run; progress is kept',
  reset: 'Reset: a failed or stuck run tries again from its progress',
  restart: 'Stop, then start with the current settings',
};

// ---------------------------------------------------------------------------------------------
// DOM

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'textContent', 'open', 'indeterminate', 'multiple']);

/** h('div', {class: 'x', onclick: fn, 'data-run': id}, 'text', child, [more]) */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replaces el's children. */
export function fill(el, ...children) {
  clear(el);
  return append(el, children);
}

/** Sets text only when it changed (cheap repeated updates). */
export function setText(el, text) {
  const s = String(text ?? '');
  if (el.textContent !== s) el.textContent = s;
}

export function setAttr(el, name, value) {
  if (value === null || value === undefined) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== String(value)) el.setAttribute(name, value);
}

const SVG = 'http://www.w3.org/2000/svg';
const ICONS = {
  start: 'M7 4.5v15l12-7.5z',
  resume: 'M7 4.5v15l12-7.5z',
  pause: 'M7 5h3.5v14H7zM13.5 5H17v14h-3.5z',
  stop: 'M6 6h12v12H6z',
  reset: 'M12 5a7 7 0 1 1-6.6 4.7l1.9.6A5 5 0 1 0 12 7v3L7.5 6 12 2z',
  restart: 'M17.7 6.3A8 8 0 1 0 20 12h-2a6 6 0 1 1-1.8-4.3L13 11h7V4z',
  sun: 'M12 7a5 5 0 1 1 0 10 5 5 0 0 1 0-10zm-1-6h2v3h-2zm0 19h2v3h-2zM1 11h3v2H1zm19 0h3v2h-3zM4.2 2.8l2.1 2.1-1.4 1.4-2.1-2.1zm14.9 14.9 2.1 2.1-1.4 1.4-2.1-2.1zM2.8 19.8l2.1-2.1 1.4 1.4-2.1 2.1zM17.7 4.9l2.1-2.1 1.4 1.4-2.1 2.1z',
  moon: 'M20 15.3A8.5 8.5 0 0 1 8.7 4a8.5 8.5 0 1 0 11.3 11.3z',
  trash: 'M9 3h6l1 2h4v2H4V5h4zm-3 6h12l-1 12H7z',
  download: 'M11 3h2v10l3.5-3.5 1.4 1.4L12 16.8 6.1 10.9l1.4-1.4L11 13zM4 19h16v2H4z',
  external: 'M14 3h7v7h-2V6.4l-8.3 8.3-1.4-1.4L17.6 5H14zM5 5h6v2H7v10h10v-4h2v6H5z',
  close: 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4-5.6-5.6L6.4 19 5 17.6 10.6 12 5 6.4z',
  upload: 'M11 20h2V9.2l3.5 3.5 1.4-1.4L12 5.4l-5.9 5.9 1.4 1.4L11 9.2zM4 3h16v2H4z',
  redo: 'M4 12a8 8 0 0 1 13.7-5.7L20 4v7h-7l2.9-2.9A6 6 0 1 0 18 12h2a8 8 0 0 1-16 0z',
};

export function icon(name, size = 16) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', size);
  svg.setAttribute('height', size);
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const p = document.createElementNS(SVG, 'path');
  p.setAttribute('d', ICONS[name] || '');
  p.setAttribute('fill', 'currentColor');
  svg.appendChild(p);
  return svg;
}

export function statusBadge(status, extraClass = '') {
  return h('span', { class: `badge st-${status || 'unknown'} ${extraClass}`.trim() }, status || 'unknown');
}

export function annBadge(status) {
  return h('span', { class: `badge an-${status || 'unknown'}` }, status || '—');
}

export function option(value, label, selected) {
  return h('option', { value, selected: String(value) === String(selected ?? '') }, label ?? value);
}

export function selectEl(props, options, selected) {
  return h('select', props, options.map(o => (Array.isArray(o) ? option(o[0], o[1], selected) : option(o, o, selected))));
}

/** A labelled form control. */
export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control, hint ? h('span', { class: 'field-hint' }, hint) : null);
}

/** Sets a progress fill (scaled, so an update repaints on the compositor, not the layout). */
export function setBar(el, percent) {
  const t = `scaleX(${(Math.max(0, Math.min(100, percent || 0)) / 100).toFixed(4)})`;
  if (el.style.transform !== t) el.style.transform = t;
}

export function empty(text) {
  return h('div', { class: 'empty' }, text);
}

export function spinner() {
  return h('span', { class: 'spinner', role: 'status', 'aria-label': 'loading' });
}

// ---------------------------------------------------------------------------------------------
// Formatting

export function isTime(iso) {
  if (!iso) return false;
  const t = Date.parse(iso);
  return Number.isFinite(t) && t > 946684800000; // Go's zero time and the like are "no time"
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return '—';
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return `${sec}s`;
  const m = Math.floor(sec / 60), s = sec % 60;
  if (m < 60) return s ? `${m}m ${s}s` : `${m}m`;
  const hr = Math.floor(m / 60), mm = m % 60;
  if (hr < 48) return mm ? `${hr}h ${mm}m` : `${hr}h`;
  const d = Math.floor(hr / 24), hh = hr % 24;
  return hh ? `${d}d ${hh}h` : `${d}d`;
}

/** "in 2m 5s", "3m ago", "now"; '—' for no time. */
export function fmtRel(iso, now = Date.now()) {
  if (!isTime(iso)) return '—';
  const diff = (Date.parse(iso) - now) / 1000;
  if (Math.abs(diff) < 1) return 'now';
  return diff > 0 ? `in ${fmtDuration(diff)}` : `${fmtDuration(-diff)} ago`;
}

const dtf = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
const tf = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function fmtTime(iso) {
  return isTime(iso) ? dtf.format(new Date(iso)) : '—';
}

/** The time when it is today, else the date and time. */
export function fmtWhen(iso) {
  if (!isTime(iso)) return '—';
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? tf.format(d) : dtf.format(d);
}

export function fmtClock(iso) {
  return isTime(iso) ? tf.format(new Date(iso)) : '—';
}

const nf = new Intl.NumberFormat();
export function fmtInt(n) {
  return Number.isFinite(n) ? nf.format(n) : '—';
}

export function fmtRate(x) {
  if (!Number.isFinite(x) || x <= 0) return '0';
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

export function pct(part, whole) {
  if (!whole || whole <= 0) return 0;
  return Math.max(0, Math.min(100, (part / whole) * 100));
}

// ---------------------------------------------------------------------------------------------
// Runs

/** The number of samples a run can reach: its target, capped at the dataset's size. */
export function effectiveTarget(run) {
  const t = run.target || 0;
  return run.dataset_size > 0 ? Math.min(t, run.dataset_size) : t;
}

export function runEta(run) {
  const left = effectiveTarget(run) - (run.completed || 0);
  if (run.status !== 'running' || !(run.samples_per_minute > 0) || left <= 0) return null;
  return (left / run.samples_per_minute) * 60;
}

export function annotatorSort(a, b) {
  const na = Number(a), nb = Number(b);
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  return String(a).localeCompare(String(b));
}

export function runSort(a, b) {
  return annotatorSort(a.annotator, b.annotator) || DOMAINS.indexOf(a.domain) - DOMAINS.indexOf(b.domain) || String(a.workflow_id).localeCompare(String(b.workflow_id));
}

export function runID(annotator, domain) {
  return `annotation-${annotator}-${domain}`;
}

/** Splits "annotation-<annotator>-<domain>". */
export function parseRunID(id) {
  const rest = String(id || '').replace(/^annotation-/, '');
  const i = rest.lastIndexOf('-');
  if (i <= 0) return null;
  return { annotator: rest.slice(0, i), domain: rest.slice(i + 1) };
}

/** The API's selection body: {all:true}, {annotator}, {domain} or both. */
export function selection(annotator, domain) {
  const s = {};
  if (annotator) s.annotator = String(annotator);
  if (domain) s.domain = domain;
  if (!annotator && !domain) s.all = true;
  return s;
}

export function describeSelection(sel) {
  if (sel.all) return 'all runs';
  if (sel.annotator && sel.domain) return runID(sel.annotator, sel.domain);
  if (sel.annotator) return `annotator ${sel.annotator}`;
  return `domain ${sel.domain}`;
}

// ---------------------------------------------------------------------------------------------
// Auth and REST

const TOKEN_KEY = 'mha.token';
export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}
function setToken(t) {
  try { t ? localStorage.setItem(TOKEN_KEY, t) : localStorage.removeItem(TOKEN_KEY); } catch { /* private mode */ }
  window.dispatchEvent(new CustomEvent('mha:token'));
}
export function clearToken() { setToken(''); }

export class ApiError extends Error {
  constructor(status, problem, fallback) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || fallback || `HTTP ${status}`);
    this.status = status;
    this.title = p.title || '';
    this.detail = p.detail || '';
    this.errors = Array.isArray(p.errors) ? p.errors : [];
  }
}

let tokenPrompt = null;
let declined = false;

/** True after a person closed the token dialog without a token (see askToken). */
export function tokenDeclined() { return declined; }

/**
 * Shows the token dialog once, however many requests are waiting for it. After a person
 * cancels it, requests fail with 401 instead of asking again every few seconds, until force
 * (the top bar's sign-in button) asks anew.
 */
export function askToken(rejected, force = false) {
  if (tokenPrompt) return tokenPrompt;
  if (declined && !force) return Promise.reject(new ApiError(401, { title: 'Unauthorized', detail: 'No API token given' }));
  tokenPrompt = new Promise((resolve, reject) => {
    const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'current-password', required: true, placeholder: 'API token', spellcheck: 'false' });
    const dlg = h('dialog', { class: 'dialog small', id: 'token-dialog' },
      h('form', { method: 'dialog', class: 'stack' },
        h('h2', null, 'Sign in'),
        h('p', { class: 'muted' }, rejected ? 'The API refused the stored token. Enter a valid one.' : 'This API needs a bearer token. It is kept in this browser only.'),
        field('Token', input),
        h('div', { class: 'row end' },
          h('button', { type: 'submit', value: 'cancel', class: 'btn ghost', formnovalidate: true }, 'Cancel'),
          h('button', { type: 'submit', value: 'ok', class: 'btn primary', 'data-confirm': 'ok' }, 'Use token'))));
    document.body.appendChild(dlg);
    dlg.addEventListener('close', () => {
      const ok = dlg.returnValue === 'ok' && input.value.trim();
      dlg.remove();
      tokenPrompt = null;
      if (ok) {
        declined = false;
        setToken(input.value.trim());
        resolve();
      } else {
        declined = true;
        window.dispatchEvent(new CustomEvent('mha:auth-needed'));
        reject(new ApiError(401, { title: 'Unauthorized', detail: 'No API token given' }));
      }
    });
    dlg.showModal();
    input.focus();
  });
  return tokenPrompt;
}

function authHeaders() {
  const t = getToken();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/**
 * api('/api/runs'), api('/api/control/pause', {method: 'POST', body: {...}}).
 * JSON in and out; errors throw ApiError with the problem's fields. A 401 asks for a token
 * and retries. raw: true returns the Response.
 */
export async function api(path, opts = {}) {
  const { method = 'GET', body, raw = false, signal } = opts;
  const headers = { Accept: 'application/json, application/problem+json', ...authHeaders() };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new ApiError(0, null, 'Cannot reach the API');
  }
  if (res.status === 401) {
    await askToken(Boolean(getToken()));
    return api(path, opts);
  }
  if (!res.ok) {
    let problem = null, text = '';
    try {
      text = await res.text();
      problem = JSON.parse(text);
    } catch { /* not JSON */ }
    throw new ApiError(res.status, problem, text.trim().slice(0, 300) || `${res.status} ${res.statusText}`);
  }
  if (raw) return res;
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('json')) return res.json();
  return res.text();
}

/** Downloads url (with the token) as a file. */
export async function download(url) {
  const res = await api(url, { raw: true });
  const blob = await res.blob();
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename\*=UTF-8''([^;]+)|filename="?([^";]+)"?/i.exec(cd);
  const name = m ? decodeURIComponent(m[1] || m[2]) : url.split('/').pop().split('?')[0];
  const href = URL.createObjectURL(blob);
  const a = h('a', { href, download: name, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 60000);
  return { name, size: blob.size };
}

/** Uploads a FormData with progress (fetch has none). Resolves to the parsed JSON reply. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.setRequestHeader('Accept', 'application/json, application/problem+json');
    xhr.upload.onprogress = e => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, null, 'Cannot reach the API'));
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status === 401) {
        askToken(Boolean(getToken())).then(() => upload(path, form, onProgress)).then(resolve, reject);
      } else if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data, xhr.responseText.slice(0, 300) || `HTTP ${xhr.status}`));
    };
    xhr.send(form);
  });
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ---------------------------------------------------------------------------------------------
// Toasts and dialogs

export function toast(kind, title, lines = [], timeout) {
  const box = document.getElementById('toasts');
  const close = h('button', { class: 'icon-btn toast-close', 'aria-label': 'Dismiss', type: 'button' }, icon('close', 14));
  const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-toast': kind },
    h('div', { class: 'toast-head' }, h('strong', null, title), close),
    lines.length ? h('ul', { class: 'toast-lines' }, lines.map(l => h('li', null, l))) : null);
  const remove = () => {
    t.classList.add('leaving');
    setTimeout(() => t.remove(), 200);
  };
  close.addEventListener('click', remove);
  box.appendChild(t);
  while (box.children.length > 3) box.firstElementChild.remove();
  let timer = setTimeout(remove, timeout ?? (kind === 'error' ? 10000 : 4500));
  t.addEventListener('mouseenter', () => clearTimeout(timer));
  t.addEventListener('mouseleave', () => { timer = setTimeout(remove, 4000); });
  return t;
}

export function toastError(title, err) {
  const lines = [];
  if (err instanceof ApiError) {
    if (err.message) lines.push(err.message);
    for (const e of err.errors) lines.push(`${e.location ? e.location + ': ' : ''}${e.message}`);
  } else if (err) lines.push(String(err.message || err));
  return toast('error', title, lines);
}

const GOOD_OUTCOMES = new Set(['started', 'already_running', 'paused', 'resumed', 'stopped', 'reset', 'retargeted', 'restarting', 'pending', 'deleted', 'redone', 'ok']);

/** A toast with the per-run outcomes of a control. */
export function toastResults(action, selText, reply) {
  const results = (reply && Array.isArray(reply.results)) ? reply.results : [];
  const bad = results.filter(r => r.outcome === 'error');
  const odd = results.filter(r => !GOOD_OUTCOMES.has(r.outcome) && r.outcome !== 'error');
  const kind = bad.length ? 'error' : odd.length && odd.length === results.length ? 'warn' : 'ok';
  const lines = [];
  if (results.length === 1) {
    const r = results[0];
    lines.push(`${r.run} → ${r.outcome}${r.detail ? ` (${r.detail})` : ''}`);
  } else {
    // One line per (outcome, detail): "paused ×28", "error ×2: the update timed out".
    const groups = new Map();
    for (const r of results) {
      const k = `${r.outcome}\u0000${r.detail || ''}`;
      if (!groups.has(k)) groups.set(k, { outcome: r.outcome, detail: r.detail || '', runs: [] });
      groups.get(k).runs.push(r.run);
    }
    for (const g of [...groups.values()].slice(0, 6)) {
      const who = g.runs.length <= 2 ? g.runs.join(', ') : `${g.runs.length} runs`;
      lines.push(`${g.outcome} · ${who}${g.detail ? `: ${g.detail}` : ''}`);
    }
    if (groups.size > 6) lines.push(`… and ${groups.size - 6} more outcomes`);
  }
  if (reply && Number.isFinite(reply.deleted)) lines.unshift(`${reply.deleted} annotations deleted`);
  if (!results.length && !(reply && Number.isFinite(reply.deleted))) lines.push('No run matched.');
  return toast(kind, `${action} · ${selText}`, lines);
}

/** A modal confirm; resolves true when confirmed. */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false }) {
  return new Promise(resolve => {
    const dlg = h('dialog', { class: 'dialog small', id: 'confirm-dialog' },
      h('form', { method: 'dialog', class: 'stack' },
        h('h2', null, title),
        message ? h('p', null, message) : null,
        h('div', { class: 'row end' },
          h('button', { type: 'submit', value: 'cancel', class: 'btn ghost', 'data-confirm': 'cancel' }, 'Cancel'),
          h('button', { type: 'submit', value: 'ok', class: `btn ${danger ? 'danger' : 'primary'}`, 'data-confirm': 'ok' }, confirmLabel))));
    document.body.appendChild(dlg);
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(dlg.returnValue === 'ok');
    });
    dlg.showModal();
  });
}

/** A large modal; returns {dialog, body, close}. */
export function modal(title, { wide = false, id } = {}) {
  const body = h('div', { class: 'modal-body' });
  const closeBtn = h('button', { class: 'icon-btn', type: 'button', 'aria-label': 'Close' }, icon('close'));
  const dlg = h('dialog', { class: `dialog ${wide ? 'wide' : ''}`, id },
    h('div', { class: 'modal-head' }, h('h2', null, title), closeBtn), body);
  closeBtn.addEventListener('click', () => dlg.close());
  dlg.addEventListener('click', e => { if (e.target === dlg) dlg.close(); });
  dlg.addEventListener('close', () => dlg.remove());
  document.body.appendChild(dlg);
  dlg.showModal();
  return { dialog: dlg, body, close: () => dlg.close() };
}

/** Disables a button while fn runs. */
export async function busy(btn, fn) {
  if (btn) {
    btn.disabled = true;
    btn.classList.add('busy');
  }
  try {
    return await fn();
  } finally {
    if (btn) {
      btn.disabled = false;
      btn.classList.remove('busy');
    }
  }
}

export function debounce(fn, ms) {
  let t;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}
