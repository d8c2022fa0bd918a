// The live store: runs, quota pools and the overview, kept current by the WebSocket at
// /api/ws, or by polling the REST routes every 3 s while the socket is down. Changes are
// batched to one notification per animation frame, naming the runs that changed, so pages
// update only the rows that moved.

import { api, getToken, effectiveTarget } from './lib.js';

const POLL_MS = 3000;
const BACKOFF_MIN = 1000;
const BACKOFF_MAX = 15000;
const ANNOTATION_QUEUE_MAX = 400;
// Fields the api adds to a run document; a run event that omits them keeps the known value.
const API_FIELDS = ['enabled', 'web_ui'];

class Store {
  constructor() {
    this.runs = new Map(); // workflow_id -> run
    this.quota = new Map(); // pool -> state
    this.overview = null;
    this.lastId = null;
    this.conn = 'offline'; // live | polling | offline
    this.ready = false;
    this.listeners = new Map();
    this.ws = null;
    this.attempt = 0;
    this.reconnectTimer = 0;
    this.pollTimer = 0;
    this.polling = false;
    this.pending = { full: false, runs: new Set(), quota: false, overview: false, annotations: [] };
    this.flushScheduled = false;
    this.flush = this.flush.bind(this);
  }

  /** on('runs' | 'quota' | 'overview' | 'annotations' | 'conn', fn) -> unsubscribe */
  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, arg) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(arg);
      } catch (err) {
        console.error(`listener of ${type}`, err);
      }
    }
  }

  start() {
    window.addEventListener('online', () => this.reconnectNow());
    window.addEventListener('offline', () => this.setConn('offline'));
    window.addEventListener('mha:token', () => this.reconnectNow());
    this.connect();
  }

  // ------------------------------------------------------------------------------ socket

  connect() {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = 0;
    const url = new URL('/api/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const token = getToken();
    if (token) url.searchParams.set('token', token);
    if (this.lastId) url.searchParams.set('since', this.lastId);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      this.socketDown();
      return;
    }
    this.ws = ws;
    let heard = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.stopPolling();
      this.setConn('live');
    };
    ws.onmessage = e => {
      if (this.ws !== ws) return;
      if (!heard) {
        heard = true;
        this.attempt = 0; // the server talks: the next drop starts the back-off anew
      }
      // A frame holds one or more events, one JSON object per line.
      for (const line of String(e.data).split('\n')) {
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        this.handle(msg);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.socketDown();
    };
  }

  socketDown() {
    if (this.conn === 'live') this.setConn(navigator.onLine === false ? 'offline' : 'polling');
    this.startPolling();
    const delay = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** this.attempt);
    this.attempt++;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), delay * (0.85 + Math.random() * 0.3));
  }

  reconnectNow() {
    this.attempt = 0;
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      old.onclose = null;
      try { old.close(); } catch { /* already closed */ }
    }
    this.connect();
  }

  handle(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.id !== undefined && msg.id !== null && msg.id !== '') this.lastId = String(msg.id);
    const d = msg.data || {};
    switch (msg.type) {
      case 'state':
        this.applyState(d.runs || [], Array.isArray(d.quota) ? d.quota : d.quota?.pools || [], d.overview || null);
        break;
      case 'run':
        this.applyRun(d, true);
        break;
      case 'quota':
        if (d.pool) {
          this.quota.set(d.pool, d);
          this.pending.quota = true;
          this.schedule();
        }
        break;
      case 'annotation':
        this.pending.annotations.push(d);
        if (this.pending.annotations.length > ANNOTATION_QUEUE_MAX) this.pending.annotations.splice(0, this.pending.annotations.length - ANNOTATION_QUEUE_MAX);
        this.schedule();
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------------------ state

  applyState(runs, quota, overview) {
    this.runs = new Map(runs.map(r => [r.workflow_id, r]));
    this.quota = new Map(quota.map(q => [q.pool, q]));
    this.overview = overview || this.computeOverview();
    this.pending.full = true;
    this.pending.quota = true;
    this.pending.overview = true;
    this.schedule();
  }

  /** Replaces one run; recompute: derive the overview from the runs. */
  applyRun(run, recompute) {
    if (!run || !run.workflow_id) return;
    const old = this.runs.get(run.workflow_id);
    if (old) for (const f of API_FIELDS) if (!(f in run) && f in old) run[f] = old[f];
    if (!old) this.pending.full = true; // a new row: the table re-orders
    this.runs.set(run.workflow_id, run);
    this.pending.runs.add(run.workflow_id);
    if (recompute) {
      this.overview = this.computeOverview();
      this.pending.overview = true;
    }
    this.schedule();
  }

  applyQuotaList(pools) {
    this.quota = new Map(pools.map(q => [q.pool, q]));
    this.pending.quota = true;
    this.schedule();
  }

  computeOverview() {
    const o = { runs: this.runs.size, by_status: {}, completed: 0, target: 0, samples_per_minute: 0 };
    for (const r of this.runs.values()) {
      o.by_status[r.status] = (o.by_status[r.status] || 0) + 1;
      o.completed += r.completed || 0;
      o.target += effectiveTarget(r);
      o.samples_per_minute += r.samples_per_minute || 0;
    }
    const remaining = Math.max(0, o.target - o.completed);
    if (o.samples_per_minute > 0 && remaining > 0) o.eta_seconds = (remaining / o.samples_per_minute) * 60;
    if (this.lastId) o.last_event_id = this.lastId;
    return o;
  }

  schedule() {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A frame when the page is visible; the timeout when it is not (or frames are throttled).
    this.rafId = requestAnimationFrame(this.flush);
    this.flushTimer = setTimeout(this.flush, 250);
  }

  flush() {
    if (!this.flushScheduled) return;
    this.flushScheduled = false;
    cancelAnimationFrame(this.rafId);
    clearTimeout(this.flushTimer);
    const p = this.pending;
    this.pending = { full: false, runs: new Set(), quota: false, overview: false, annotations: [] };
    if (p.full) this.emit('runs', null);
    else if (p.runs.size) this.emit('runs', p.runs);
    if (p.quota) this.emit('quota');
    if (p.overview || p.full || p.runs.size) this.emit('overview', this.overview);
    if (p.annotations.length) this.emit('annotations', p.annotations);
    if (!this.ready && p.full) {
      this.ready = true;
      document.body.dataset.ready = '1';
      this.emit('ready');
    }
  }

  setConn(state) {
    if (this.conn === state) return;
    this.conn = state;
    this.emit('conn', state);
  }

  // ------------------------------------------------------------------------------ polling

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    this.poll();
  }

  stopPolling() {
    this.polling = false;
    clearTimeout(this.pollTimer);
  }

  async poll() {
    if (!this.polling) return;
    try {
      const [runs, quota, overview] = await Promise.all([api('/api/runs'), api('/api/quota'), api('/api/overview')]);
      if (!this.polling) return; // the socket came back meanwhile: it is the fresher source
      this.applyPolled(runs?.runs || [], quota?.pools || [], overview);
      this.setConn('polling');
    } catch (err) {
      if (this.polling) this.setConn('offline');
      if (err?.status && err.status !== 401) console.warn('poll', err);
    }
    if (this.polling) {
      clearTimeout(this.pollTimer);
      this.pollTimer = setTimeout(() => this.poll(), POLL_MS);
    }
  }

  /** Applies a polled snapshot, notifying only the runs whose document changed. */
  applyPolled(runs, pools, overview) {
    const seen = new Set();
    let full = !this.ready || runs.length !== this.runs.size;
    for (const r of runs) {
      seen.add(r.workflow_id);
      const old = this.runs.get(r.workflow_id);
      if (!old) full = true;
      else if (JSON.stringify(old) === JSON.stringify(r)) continue;
      this.runs.set(r.workflow_id, r);
      this.pending.runs.add(r.workflow_id);
    }
    for (const id of [...this.runs.keys()]) {
      if (!seen.has(id)) {
        this.runs.delete(id);
        full = true;
      }
    }
    if (full) this.pending.full = true;
    this.overview = overview && typeof overview === 'object' ? overview : this.computeOverview();
    this.pending.overview = true;
    this.applyQuotaList(pools);
  }

  /** Refreshes the runs now (after a control, when no socket brings the change). */
  async refresh() {
    if (this.conn === 'live') return;
    try {
      const r = await api('/api/runs');
      this.applyPolled(r?.runs || [], [...this.quota.values()], this.overview);
      this.overview = this.computeOverview();
    } catch { /* the poll loop reports */ }
  }
}

export const store = new Store();
