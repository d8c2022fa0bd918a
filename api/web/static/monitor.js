// The quota page (#/quota) and the health page (#/health).

import {
  h, fill, clear, setText, setAttr, statusBadge, empty, spinner, api, icon, debounce,
  fmtRel, fmtTime, fmtInt, isTime, pct, selection, annotatorSort,
} from './lib.js';
import { store } from './live.js';
import { control } from './runs.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function level(p) {
  return p >= 90 ? 'danger' : p >= 70 ? 'warn' : 'okay';
}

/** A ring gauge: {el, set(used, limit)}. */
function ring(label) {
  const R = 42, C = 2 * Math.PI * R;
  const track = svg('circle', { cx: 50, cy: 50, r: R, class: 'ring-track' });
  const arc = svg('circle', { cx: 50, cy: 50, r: R, class: 'ring-arc', 'stroke-dasharray': `0 ${C}`, transform: 'rotate(-90 50 50)' });
  const s = svg('svg', { viewBox: '0 0 100 100', class: 'ring', 'aria-hidden': 'true' });
  s.append(track, arc);
  const used = h('span', { class: 'ring-used' });
  const limit = h('span', { class: 'ring-limit' });
  const el = h('div', { class: 'gauge' }, h('div', { class: 'ring-box' }, s, h('div', { class: 'ring-label' }, used, limit)), h('div', { class: 'gauge-title' }, label));
  return {
    el,
    set(u, l) {
      const p = pct(u, l);
      arc.setAttribute('stroke-dasharray', `${(p / 100) * C} ${C}`);
      arc.setAttribute('class', `ring-arc ${level(p)}`);
      setText(used, fmtInt(u || 0));
      setText(limit, l ? `of ${fmtInt(l)}` : 'no limit');
      setAttr(el, 'title', `${label}: ${u || 0} of ${l || '∞'} (${p.toFixed(0)}%)`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Quota

export function mountQuota(root) {
  let alive = true;
  const cards = new Map(); // pool -> {el, update}
  const grid = h('div', { class: 'cards quota-grid', id: 'quota' });
  const none = empty('No quota pools yet. A pool appears once a run of a real provider asks for call slots (the offline annotator needs none).');

  root.appendChild(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Quota'), h('p', { class: 'muted' }, 'One pool per API key budget. Runs of a pool share its requests per minute and per day.')),
    none, grid));

  function build(pool) {
    const minute = ring('This minute');
    const day = ring('Today');
    const r = {
      title: h('h2', { class: 'card-name' }, pool),
      chips: h('span', { class: 'row' }),
      tokens: h('div', { class: 'token-line' }),
      kv: h('dl', { class: 'kv' }),
      req: h('tbody'),
      reqWrap: null,
    };
    r.reqWrap = h('details', { class: 'requesters' }, h('summary', null, 'Requesters'), h('div', { class: 'table-wrap' }, h('table', { class: 'table small' },
      h('thead', null, h('tr', null, h('th', null, 'Requester'), h('th', null, 'Granted'), h('th', null, 'Last grant'))), r.req)));
    const el = h('div', { class: 'card quota-card', 'data-pool': pool },
      h('div', { class: 'card-head' }, r.title, r.chips),
      h('div', { class: 'gauges' }, minute.el, day.el),
      r.tokens, r.kv, r.reqWrap);
    const update = q => {
      minute.set(q.calls_this_minute, q.requests_per_minute);
      day.set(q.calls_today, q.requests_per_day);
      const now = Date.now();
      const penalty = isTime(q.penalty_until) && Date.parse(q.penalty_until) > now;
      fill(r.chips,
        q.started === false ? h('span', { class: 'chip muted' }, 'not started') : null,
        penalty ? h('span', { class: 'chip danger', title: `Provider said 429: nothing is granted until ${fmtTime(q.penalty_until)}` }, 'penalty') : null,
        q.held ? h('span', { class: 'chip warn' }, `${q.held} held`) : null);
      if (q.tokens_per_minute > 0) {
        const p = pct(q.tokens_this_minute || 0, q.tokens_per_minute);
        fill(r.tokens, h('div', { class: 'row between small' }, h('span', null, 'Tokens this minute'), h('span', null, `${fmtInt(q.tokens_this_minute || 0)} / ${fmtInt(q.tokens_per_minute)}`)),
          h('div', { class: 'bar' }, h('div', { class: `bar-fill ${level(p)}`, style: { transform: `scaleX(${p / 100})` } })));
      } else clear(r.tokens);
      const slotPast = !isTime(q.next_free_slot) || Date.parse(q.next_free_slot) <= now;
      fill(r.kv,
        h('dt', null, 'Calls this minute'), h('dd', { class: 'calls-minute' }, `${q.calls_this_minute ?? 0} / ${q.requests_per_minute ?? '—'}`),
        h('dt', null, 'Calls today'), h('dd', { class: 'calls-day' }, `${q.calls_today ?? 0} / ${q.requests_per_day ?? '—'}`),
        h('dt', null, 'Next free slot'), h('dd', { title: fmtTime(q.next_free_slot) }, slotPast ? 'now' : fmtRel(q.next_free_slot, now)),
        h('dt', null, 'Penalty until'), h('dd', { class: penalty ? 'danger-text' : '', title: fmtTime(q.penalty_until) }, penalty ? `${fmtRel(q.penalty_until, now)} (${fmtTime(q.penalty_until)})` : 'none'),
        h('dt', null, 'Held slots'), h('dd', null, String(q.held ?? 0)),
        q.day_zone ? [h('dt', null, 'Day resets at'), h('dd', null, `midnight ${q.day_zone}`)] : null);
      const reqs = Object.entries(q.requesters || {}).sort((a, b) => annotatorSort(a[0], b[0]));
      r.reqWrap.hidden = !reqs.length;
      fill(r.req, reqs.map(([name, s]) => h('tr', null, h('td', { class: 'mono' }, name), h('td', null, fmtInt(s.granted || 0)), h('td', { title: fmtTime(s.last_grant) }, fmtRel(s.last_grant, now)))));
    };
    return { el, update };
  }

  function render() {
    const pools = [...store.quota.values()].sort((a, b) => String(a.pool).localeCompare(String(b.pool), undefined, { numeric: true }));
    none.hidden = pools.length > 0;
    const keep = new Set();
    pools.forEach((q, i) => {
      keep.add(q.pool);
      let c = cards.get(q.pool);
      if (!c) {
        c = build(q.pool);
        cards.set(q.pool, c);
      }
      c.update(q);
      if (grid.children[i] !== c.el) grid.insertBefore(c.el, grid.children[i] || null);
    });
    for (const [pool, c] of cards) if (!keep.has(pool)) {
      c.el.remove();
      cards.delete(pool);
    }
  }

  // The minute window slides without events: refresh it while the page is open.
  async function refresh() {
    try {
      const res = await api('/api/quota');
      if (alive && res?.pools) store.applyQuotaList(res.pools);
    } catch { /* the indicator shows connection trouble */ }
  }

  const off = store.on('quota', render);
  const tick = setInterval(render, 1000);
  const poll = setInterval(refresh, 5000);
  render();
  refresh();
  return () => {
    alive = false;
    off();
    clearInterval(tick);
    clearInterval(poll);
  };
}

// ---------------------------------------------------------------------------------------------
// Health

export function mountHealth(root) {
  let alive = true;
  let last = null;
  const banner = h('div', { class: 'banner', id: 'health-banner' }, spinner());
  const failed = h('div', { class: 'health-list', id: 'health-failed' });
  const stalled = h('div', { class: 'health-list', id: 'health-stalled' });
  const waiting = h('div', { class: 'health-list', id: 'health-waiting' });
  const counts = { failed: h('span', { class: 'count-pill' }), stalled: h('span', { class: 'count-pill' }), waiting: h('span', { class: 'count-pill' }) };
  const updated = h('span', { class: 'muted small' });

  root.appendChild(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Health'), h('p', { class: 'muted' }, 'Runs that need a person: failed, stalled (running without progress past the heartbeat timeout) and waiting for quota.'), updated),
    banner,
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Failed'), counts.failed), failed),
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Stalled'), counts.stalled), stalled),
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Waiting for quota'), counts.waiting), waiting)));

  const runLink = id => h('a', { href: `#/run/${encodeURIComponent(id)}`, class: 'mono' }, id);
  const buttons = run => h('div', { class: 'actions' }, ['reset', 'restart'].map(a =>
    h('button', { type: 'button', class: `act act-${a} suggested`, title: a, onclick: e => control(a, selection(run.annotator, run.domain), e.currentTarget).then(() => setTimeout(load, 800)) }, icon(a, 14), h('span', { class: 'act-label' }, a))));

  function runItem(run, extra) {
    return h('div', { class: 'health-item', 'data-health-run': run.workflow_id },
      h('div', { class: 'health-main' },
        h('div', { class: 'row wrap' }, runLink(run.workflow_id), statusBadge(run.status), extra),
        run.last_error ? h('div', { class: 'last-error wrap', title: run.last_error }, run.last_error) : null),
      buttons(run));
  }

  function render(res) {
    const f = res?.failed || [], s = res?.stalled || [], w = res?.waiting_quota || [];
    const ok = res?.ok ?? (!f.length && !s.length);
    banner.className = `banner ${ok ? 'ok' : 'bad'}`;
    fill(banner, ok
      ? [h('strong', null, 'All runs are healthy.'), w.length ? ` ${w.length} waiting for quota, which clears by itself.` : '']
      : [h('strong', null, 'Attention needed: '), `${f.length} failed, ${s.length} stalled, ${w.length} waiting for quota.`]);
    setText(counts.failed, String(f.length));
    setText(counts.stalled, String(s.length));
    setText(counts.waiting, String(w.length));
    fill(failed, f.length ? f.map(r => runItem(r, h('span', { class: 'muted small' }, `${r.restarts ?? 0} restarts`))) : empty('No failed runs.'));
    fill(stalled, s.length ? s.map(r => runItem(r, h('span', { class: 'muted small', title: fmtTime(r.last_progress) }, `last annotation ${fmtRel(r.last_progress)}`))) : empty('No stalled runs.'));
    fill(waiting, w.length ? w.map(x => {
      const id = typeof x.run === 'object' && x.run ? x.run.workflow_id : String(x.run ?? '');
      const run = store.runs.get(id) || (typeof x.run === 'object' ? x.run : null);
      return h('div', { class: 'health-item', 'data-health-run': id },
        h('div', { class: 'health-main' }, h('div', { class: 'row wrap' }, runLink(id), run ? statusBadge(run.status) : null,
          h('span', { class: 'muted', title: fmtTime(x.until) }, isTime(x.until) ? `until ${fmtTime(x.until)} (${fmtRel(x.until)})` : ''))));
    }) : empty('No run is waiting for quota.'));
    setText(updated, `Updated ${new Date().toLocaleTimeString()}`);
  }

  async function load() {
    try {
      last = await api('/api/health');
      if (alive) render(last);
    } catch (err) {
      if (!alive) return;
      banner.className = 'banner bad';
      fill(banner, h('strong', null, 'Could not read the health report: '), err.message);
    }
  }
  const soon = debounce(load, 1000);
  const off = store.on('runs', soon);
  const poll = setInterval(load, 5000);
  load();
  return () => {
    alive = false;
    off();
    soon.cancel();
    clearInterval(poll);
  };
}
