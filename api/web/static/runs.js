// The runs page (#/) and one run's page (#/run/<id>).

import {
  h, fill, clear, setText, setAttr, setBar, icon, statusBadge, annBadge, selectEl, field, empty, spinner,
  api, query, toastResults, toastError, toast, confirmDialog, busy, debounce,
  DOMAINS, STATUSES, ACTIONS, SUGGESTED, ACTION_HELP,
  fmtDuration, fmtRel, fmtTime, fmtClock, fmtInt, fmtRate, pct, effectiveTarget, runEta,
  runSort, annotatorSort, selection, describeSelection, parseRunID,
} from './lib.js';
import { store } from './live.js';
import { openSample } from './data.js';

const FEED_MAX = 200;

// ---------------------------------------------------------------------------------------------
// Controls

export async function control(action, sel, btn) {
  return busy(btn, async () => {
    try {
      const reply = await api(`/api/control/${action}`, { method: 'POST', body: sel });
      toastResults(action, describeSelection(sel), reply);
      store.refresh();
      return reply;
    } catch (err) {
      toastError(`${action} · ${describeSelection(sel)} failed`, err);
      return null;
    }
  });
}

export async function setTarget(sel, target, btn) {
  return busy(btn, async () => {
    try {
      const reply = await api('/api/control/target', { method: 'POST', body: { ...sel, target } });
      toastResults(`target ${target}`, describeSelection(sel), reply);
      store.refresh();
      return reply;
    } catch (err) {
      toastError('Setting the target failed', err);
      return null;
    }
  });
}

export async function redo(sel, statuses, btn) {
  if (!statuses.length) {
    toast('warn', 'Pick at least one status to redo');
    return null;
  }
  return busy(btn, async () => {
    try {
      const reply = await api('/api/control/redo', { method: 'POST', body: { ...sel, statuses } });
      toastResults(`redo ${statuses.join(', ')}`, describeSelection(sel), reply);
      store.refresh();
      return reply;
    } catch (err) {
      toastError('Redo failed', err);
      return null;
    }
  });
}

export async function deleteAnnotations(sel, btn) {
  const what = describeSelection(sel);
  const ok = await confirmDialog({
    title: 'Delete annotations?',
    message: `Every stored annotation of ${what} will be deleted. Runs that go on will annotate those samples again. This cannot be undone.`,
    confirmLabel: 'Delete annotations',
    danger: true,
  });
  if (!ok) return null;
  return busy(btn, async () => {
    try {
      const reply = await api('/api/annotations', { method: 'DELETE', body: { ...sel, confirm: 'delete' } });
      toastResults('delete annotations', what, reply);
      store.refresh();
      return reply;
    } catch (err) {
      toastError('Deleting annotations failed', err);
      return null;
    }
  });
}

function actionButtons(extraClass = '') {
  return h('div', { class: `actions ${extraClass}`.trim() }, ACTIONS.map(a =>
    h('button', { type: 'button', class: `act act-${a}`, 'data-action': a, title: ACTION_HELP[a], 'aria-label': a }, icon(a, 14), h('span', { class: 'act-label' }, a))));
}

function markSuggested(container, status) {
  const want = SUGGESTED[status] || [];
  for (const b of container.querySelectorAll('button[data-action]')) b.classList.toggle('suggested', want.includes(b.dataset.action));
}

// ---------------------------------------------------------------------------------------------
// Runs page

export function mountRuns(root, { params }) {
  const filters = {
    annotator: params.get('annotator') || '',
    domain: params.get('domain') || '',
    status: params.get('status') || '',
  };
  const rows = new Map(); // workflow_id -> {el, refs, v}
  const cells = new Map(); // workflow_id -> map cell

  // Overview cards.
  const ov = {
    statusBar: h('div', { class: 'stack-bar', role: 'img', 'aria-label': 'runs by status' }),
    legend: h('div', { class: 'legend' }),
    total: h('span', { class: 'big' }),
    totalOf: h('span', { class: 'muted' }),
    pct: h('span', { class: 'muted' }),
    bar: h('div', { class: 'bar-fill' }),
    rate: h('span', { class: 'big' }),
    active: h('span', { class: 'muted' }),
    eta: h('span', { class: 'big' }),
    etaAt: h('span', { class: 'muted' }),
    runsCount: h('span', { class: 'big' }),
  };
  const cards = h('div', { class: 'cards overview', id: 'overview' },
    h('div', { class: 'card stat wide-2' },
      h('div', { class: 'card-title' }, 'Runs by status'),
      h('div', { class: 'stat-line' }, ov.runsCount, h('span', { class: 'muted' }, 'runs')),
      ov.statusBar, ov.legend),
    h('div', { class: 'card stat' },
      h('div', { class: 'card-title' }, 'Progress'),
      h('div', { class: 'stat-line' }, ov.total, ov.totalOf),
      h('div', { class: 'bar' }, ov.bar), ov.pct),
    h('div', { class: 'card stat' },
      h('div', { class: 'card-title' }, 'Throughput'),
      h('div', { class: 'stat-line' }, ov.rate, h('span', { class: 'muted' }, 'samples / min')), ov.active),
    h('div', { class: 'card stat' },
      h('div', { class: 'card-title' }, 'ETA'),
      h('div', { class: 'stat-line' }, ov.eta), ov.etaAt));

  // Run map: annotators × domains.
  const map = h('div', { class: 'run-map', role: 'grid', 'aria-label': 'run map' });
  const mapCard = h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Run map'), map);

  // Filters.
  const fAnn = selectEl({ id: 'filter-annotator', 'aria-label': 'annotator filter' }, [['', 'All annotators']], filters.annotator);
  const fDom = selectEl({ id: 'filter-domain', 'aria-label': 'domain filter' }, [['', 'All domains'], ...DOMAINS], filters.domain);
  const fSt = selectEl({ id: 'filter-status', 'aria-label': 'status filter' }, [['', 'All statuses'], ...STATUSES], filters.status);
  const shown = h('span', { class: 'muted', id: 'runs-shown' });
  const clearBtn = h('button', { type: 'button', class: 'btn ghost small', hidden: true }, 'Clear filters');
  const onFilter = () => {
    filters.annotator = fAnn.value;
    filters.domain = fDom.value;
    filters.status = fSt.value;
    const q = query(filters);
    history.replaceState(null, '', `#/${q}`);
    applyFilters();
  };
  fAnn.addEventListener('change', onFilter);
  fDom.addEventListener('change', onFilter);
  fSt.addEventListener('change', onFilter);
  clearBtn.addEventListener('click', () => {
    fAnn.value = fDom.value = fSt.value = '';
    onFilter();
  });

  // Bulk controls.
  const bAnn = selectEl({ id: 'bulk-annotator', 'aria-label': 'bulk annotator' }, [['', 'All annotators']], '');
  const bDom = selectEl({ id: 'bulk-domain', 'aria-label': 'bulk domain' }, [['', 'All domains'], ...DOMAINS], '');
  const bScope = h('span', { class: 'scope', id: 'bulk-scope' });
  const bTarget = h('input', { type: 'number', min: 0, step: 1, placeholder: 'target', id: 'bulk-target', class: 'num', 'aria-label': 'target' });
  const bRedoMal = h('input', { type: 'checkbox', checked: true, value: 'malformed' });
  const bRedoErr = h('input', { type: 'checkbox', checked: true, value: 'error' });
  const bRedoBlk = h('input', { type: 'checkbox', value: 'blocked' });
  const bulkSel = () => selection(bAnn.value, bDom.value);
  const updateScope = () => {
    const sel = bulkSel();
    const n = [...store.runs.values()].filter(r => (!sel.annotator || r.annotator === sel.annotator) && (!sel.domain || r.domain === sel.domain)).length;
    setText(bScope, `${describeSelection(sel)} · ${n} run${n === 1 ? '' : 's'}`);
  };
  bAnn.addEventListener('change', updateScope);
  bDom.addEventListener('change', updateScope);
  // A disclosure: open on wide screens, folded on phones where it would push the runs down.
  const bulk = h('details', { class: 'card bulk', id: 'bulk', open: !matchMedia('(max-width: 760px)').matches },
    h('summary', { class: 'card-title' }, 'Bulk actions'),
    h('div', { class: 'bulk-head' },
      h('div', { class: 'row wrap' }, bAnn, bDom, bScope),
      h('span', { class: 'grow' }),
      h('button', { type: 'button', class: 'btn small danger-outline', 'data-bulk': 'delete', onclick: e => deleteAnnotations(bulkSel(), e.currentTarget) }, icon('trash', 14), 'Delete annotations…')),
    h('div', { class: 'row wrap bulk-actions' },
      ACTIONS.map(a => h('button', { type: 'button', class: `btn small act-${a}`, 'data-bulk': a, title: ACTION_HELP[a], onclick: e => control(a, bulkSel(), e.currentTarget) }, icon(a, 14), a[0].toUpperCase() + a.slice(1))),
      h('span', { class: 'sep' }),
      h('span', { class: 'inline-form' }, bTarget,
        h('button', { type: 'button', class: 'btn small', 'data-bulk': 'target', onclick: e => {
          const n = Number(bTarget.value);
          if (bTarget.value === '' || !Number.isInteger(n) || n < 0) return toast('warn', 'The target is a whole number, 0 or more');
          setTarget(bulkSel(), n, e.currentTarget);
        } }, 'Set target')),
      h('span', { class: 'sep' }),
      h('span', { class: 'inline-form' },
        h('label', { class: 'check' }, bRedoMal, 'malformed'),
        h('label', { class: 'check' }, bRedoErr, 'error'),
        h('label', { class: 'check' }, bRedoBlk, 'blocked'),
        h('button', { type: 'button', class: 'btn small', 'data-bulk': 'redo', title: 'Clear the rows that ended badly; the runs annotate them again', onclick: e =>
          redo(bulkSel(), [bRedoMal, bRedoErr, bRedoBlk].filter(c => c.checked).map(c => c.value), e.currentTarget) }, icon('redo', 14), 'Redo'))));

  // The table.
  const body = h('div', { class: 'runs-body', role: 'rowgroup' });
  const table = h('div', { class: 'runs-table', role: 'table', 'aria-label': 'runs', id: 'runs' },
    h('div', { class: 'run-row head', role: 'row' },
      ['Run', 'Status', 'Progress', 'Rate', 'ETA', 'Last error', 'Actions'].map((t, i) => h('div', { role: 'columnheader', class: `c-${['run', 'status', 'progress', 'rate', 'eta', 'error', 'actions'][i]}` }, t))),
    body);
  const noRuns = empty('No runs yet. Waiting for the first state from the API…');
  body.appendChild(noRuns);

  body.addEventListener('click', e => {
    const btn = e.target.closest('button[data-action]');
    if (!btn) return;
    const row = btn.closest('[data-run]');
    const run = row && store.runs.get(row.dataset.run);
    if (!run) return;
    control(btn.dataset.action, selection(run.annotator, run.domain), btn);
  });

  const page = h('section', { class: 'page runs-page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Runs'), h('p', { class: 'muted' }, 'Every (annotator, domain) pair is one long-lived run.')),
    cards, mapCard,
    h('div', { class: 'toolbar' }, h('div', { class: 'row wrap' }, fAnn, fDom, fSt, clearBtn), shown),
    bulk, table);
  root.appendChild(page);

  function buildRow(run) {
    const r = {};
    const el = h('div', { class: 'run-row', role: 'row', 'data-run': run.workflow_id },
      h('div', { class: 'c-run', role: 'cell' },
        h('a', { href: `#/run/${encodeURIComponent(run.workflow_id)}`, class: 'run-link', title: run.workflow_id },
          h('span', { class: 'ann-id' }, run.annotator), h('span', { class: 'dom' }, run.domain)),
        r.off = h('span', { class: 'chip muted off', hidden: true, title: 'Not enabled in the config' }, 'disabled')),
      h('div', { class: 'c-status', role: 'cell' }, r.status = h('span', { class: 'badge status' })),
      h('div', { class: 'c-progress', role: 'cell' },
        h('div', { class: 'bar' }, r.bar = h('div', { class: 'bar-fill' })),
        h('div', { class: 'progress-text' },
          h('span', null, r.done = h('span', { class: 'done' }), h('span', { class: 'muted' }, ' / '), r.target = h('span', { class: 'target' })),
          r.counts = h('span', { class: 'counts muted' }))),
      h('div', { class: 'c-rate', role: 'cell' }, r.rate = h('span', { class: 'rate' }), h('span', { class: 'unit' }, '/min')),
      h('div', { class: 'c-eta', role: 'cell' }, h('span', { class: 'm-label' }, 'ETA '), r.eta = h('span', { class: 'eta' })),
      h('div', { class: 'c-error', role: 'cell' }, r.err = h('span', { class: 'last-error' })),
      h('div', { class: 'c-actions', role: 'cell' }, r.actions = actionButtons()));
    return { el, r, v: {} };
  }

  function updateRow(row, run) {
    const { r, v } = row;
    const st = run.status || 'unknown';
    if (v.status !== st) {
      v.status = st;
      r.status.className = `badge status st-${st}`;
      setText(r.status, st);
      row.el.dataset.status = st;
      markSuggested(r.actions, st);
    }
    const tgt = effectiveTarget(run);
    const done = run.completed || 0;
    setText(r.done, String(done));
    setText(r.target, String(tgt));
    setBar(r.bar, pct(done, tgt));
    const parts = [];
    if (run.ok) parts.push(`${run.ok} ok`);
    if (run.malformed) parts.push(`${run.malformed} malformed`);
    if (run.errors) parts.push(`${run.errors} error${run.errors === 1 ? '' : 's'}`);
    if (run.blocked) parts.push(`${run.blocked} blocked`);
    setText(r.counts, parts.join(' · '));
    setText(r.rate, fmtRate(run.samples_per_minute));
    const eta = runEta(run);
    setText(r.eta, eta === null ? (st === 'completed' ? 'done' : '—') : fmtDuration(eta));
    const err = run.last_error || '';
    setText(r.err, err || '—');
    setAttr(r.err, 'title', err || null);
    r.err.classList.toggle('muted', !err);
    r.off.hidden = run.enabled !== false;
  }

  function matches(run) {
    return (!filters.annotator || run.annotator === filters.annotator)
      && (!filters.domain || run.domain === filters.domain)
      && (!filters.status || run.status === filters.status);
  }

  function applyFilters() {
    let n = 0;
    for (const [id, row] of rows) {
      const run = store.runs.get(id);
      const ok = run && matches(run);
      if (row.el.hidden === ok) row.el.hidden = !ok;
      if (ok) n++;
    }
    setText(shown, `${n} of ${rows.size} runs`);
    clearBtn.hidden = !(filters.annotator || filters.domain || filters.status);
    for (const b of ov.legend.querySelectorAll('[data-status-filter]')) b.classList.toggle('active', b.dataset.statusFilter === filters.status);
  }

  function annotators() {
    return [...new Set([...store.runs.values()].map(r => r.annotator))].sort(annotatorSort);
  }

  function syncSelect(sel, values, label) {
    const cur = sel.value;
    const want = ['', ...values];
    const have = [...sel.options].map(o => o.value);
    if (want.join('\u0000') === have.join('\u0000')) return;
    fill(sel, want.map(v => h('option', { value: v }, v === '' ? label : `Annotator ${v}`)));
    sel.value = want.includes(cur) ? cur : '';
  }

  function rebuildAll() {
    const runs = [...store.runs.values()].sort(runSort);
    const keep = new Set(runs.map(r => r.workflow_id));
    for (const [id, row] of rows) if (!keep.has(id)) {
      row.el.remove();
      rows.delete(id);
    }
    if (runs.length) noRuns.remove();
    else if (!noRuns.parentNode) body.appendChild(noRuns);
    // Re-append in order (moves existing nodes, creates new ones).
    for (const run of runs) {
      let row = rows.get(run.workflow_id);
      if (!row) {
        row = buildRow(run);
        rows.set(run.workflow_id, row);
      }
      updateRow(row, run);
      body.appendChild(row.el);
    }
    const anns = annotators();
    syncSelect(fAnn, anns, 'All annotators');
    if (filters.annotator && fAnn.value !== filters.annotator) fAnn.value = filters.annotator;
    syncSelect(bAnn, anns, 'All annotators');
    rebuildMap(runs, anns);
    applyFilters();
    updateScope();
  }

  function rebuildMap(runs, anns) {
    clear(map);
    cells.clear();
    if (!runs.length) return;
    map.style.setProperty('--cols', DOMAINS.length);
    map.appendChild(h('div', { class: 'map-corner' }));
    for (const d of DOMAINS) map.appendChild(h('div', { class: 'map-col', title: d }, h('span', { class: 'long' }, d), h('span', { class: 'short' }, d.slice(0, 3))));
    for (const a of anns) {
      map.appendChild(h('a', { class: 'map-row', href: `#/?annotator=${encodeURIComponent(a)}`, title: `Only annotator ${a}` }, `#${a}`));
      for (const d of DOMAINS) {
        const run = runs.find(r => r.annotator === a && r.domain === d);
        if (!run) {
          map.appendChild(h('div', { class: 'map-cell none' }));
          continue;
        }
        const fillEl = h('span', { class: 'map-fill' });
        const txt = h('span', { class: 'map-text' });
        const cell = h('a', { class: 'map-cell', href: `#/run/${encodeURIComponent(run.workflow_id)}`, 'data-cell': run.workflow_id }, fillEl, txt);
        cells.set(run.workflow_id, { cell, fillEl, txt });
        updateCell(run);
        map.appendChild(cell);
      }
    }
  }

  function updateCell(run) {
    const c = cells.get(run.workflow_id);
    if (!c) return;
    const tgt = effectiveTarget(run);
    const p = pct(run.completed || 0, tgt);
    c.cell.className = `map-cell st-${run.status}`;
    setBar(c.fillEl, p);
    setText(c.txt, tgt ? `${Math.floor(p)}%` : '—');
    setAttr(c.cell, 'title', `${run.workflow_id}: ${run.status}, ${run.completed || 0}/${tgt}`);
  }

  let lastBy = '';
  function renderStatuses(by) {
    const total = Object.values(by).reduce((a, b) => a + b, 0) || 1;
    clear(ov.statusBar);
    clear(ov.legend);
    for (const st of [...STATUSES, ...Object.keys(by).filter(s => !STATUSES.includes(s))]) {
      const n = by[st] || 0;
      if (!n) continue;
      ov.statusBar.appendChild(h('span', { class: `seg st-${st}`, style: { width: `${(n / total) * 100}%` }, title: `${st}: ${n}` }));
      ov.legend.appendChild(h('button', {
        type: 'button', class: `legend-item ${filters.status === st ? 'active' : ''}`, 'data-status-filter': st,
        title: `Show only ${st} runs`,
        onclick: () => {
          fSt.value = filters.status === st ? '' : st;
          onFilter();
        },
      }, h('span', { class: `dot st-${st}` }), st, h('strong', null, String(n))));
    }
  }

  function renderOverview(o) {
    if (!o) return;
    setText(ov.runsCount, fmtInt(o.runs ?? store.runs.size));
    const by = o.by_status || {};
    const key = JSON.stringify(by);
    if (key !== lastBy) {
      lastBy = key;
      renderStatuses(by);
    }
    const tgt = o.target || 0, done = o.completed || 0;
    setText(ov.total, fmtInt(done));
    setText(ov.totalOf, `/ ${fmtInt(tgt)}`);
    setBar(ov.bar, pct(done, tgt));
    setText(ov.pct, `${pct(done, tgt).toFixed(1)}% annotated`);
    setText(ov.rate, fmtRate(o.samples_per_minute || 0));
    const running = by.running || 0;
    setText(ov.active, `${running} run${running === 1 ? '' : 's'} running`);
    if (Number.isFinite(o.eta_seconds) && o.eta_seconds > 0) {
      setText(ov.eta, fmtDuration(o.eta_seconds));
      setText(ov.etaAt, `done around ${new Date(Date.now() + o.eta_seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`);
    } else {
      setText(ov.eta, done >= tgt && tgt > 0 ? 'done' : '—');
      setText(ov.etaAt, done >= tgt && tgt > 0 ? 'every target reached' : 'nothing is progressing');
    }
  }

  const offRuns = store.on('runs', changed => {
    if (changed === null) {
      rebuildAll();
      return;
    }
    let refilter = false;
    for (const id of changed) {
      const run = store.runs.get(id);
      const row = rows.get(id);
      if (!run || !row) {
        rebuildAll();
        return;
      }
      const before = row.v.status;
      updateRow(row, run);
      updateCell(run);
      if (before !== run.status) refilter = true;
    }
    if (refilter && filters.status) applyFilters();
  });
  const offOverview = store.on('overview', renderOverview);

  if (store.runs.size) rebuildAll();
  renderOverview(store.overview || (store.runs.size ? store.computeOverview() : null));
  if (!store.overview && !store.runs.size) for (const el of [ov.runsCount, ov.total, ov.rate, ov.eta]) setText(el, '—');

  return () => {
    offRuns();
    offOverview();
  };
}

// ---------------------------------------------------------------------------------------------
// One run's page

export function mountRun(root, { arg }) {
  const id = arg;
  const parsed = parseRunID(id) || { annotator: '', domain: '' };
  let run = store.runs.get(id) || null;
  let detail = null; // GET /api/runs/{id}
  let alive = true;

  const title = h('h1', null, id);
  const webUI = h('a', { class: 'btn ghost small', target: '_blank', rel: 'noopener', hidden: true }, icon('external', 14), 'Temporal Web UI');
  const browse = h('a', { class: 'btn ghost small', href: `#/annotations${query({ annotator: parsed.annotator, domain: parsed.domain })}` }, 'Browse annotations');
  const r = {
    status: h('span', { class: 'badge status' }),
    done: h('span', { class: 'done' }),
    target: h('span', { class: 'target' }),
    pct: h('span', { class: 'muted' }),
    bar: h('div', { class: 'bar-fill' }),
    off: h('span', { class: 'chip muted', hidden: true }, 'disabled in config'),
    kv: h('dl', { class: 'kv' }),
    counts: h('div', { class: 'count-grid' }),
    lastError: h('div', { class: 'last-error-box', hidden: true }),
  };
  const actions = actionButtons('big');
  actions.addEventListener('click', e => {
    const btn = e.target.closest('button[data-action]');
    if (btn) control(btn.dataset.action, selection(parsed.annotator, parsed.domain), btn);
  });
  const sel = () => selection(parsed.annotator, parsed.domain);

  const targetIn = h('input', { type: 'number', min: 0, step: 1, id: 'target-input', class: 'num', 'aria-label': 'new target' });
  const targetForm = h('form', { class: 'inline-form', onsubmit: e => {
    e.preventDefault();
    const n = Number(targetIn.value);
    if (targetIn.value === '' || !Number.isInteger(n) || n < 0) return toast('warn', 'The target is a whole number, 0 or more');
    setTarget(sel(), n, targetForm.querySelector('button')).then(r => { if (r) delete targetIn.dataset.touched; });
  } }, targetIn, h('button', { type: 'submit', class: 'btn small', 'data-action': 'target' }, 'Set target'));
  const redoChecks = ['malformed', 'error', 'blocked'].map(s => h('input', { type: 'checkbox', value: s, checked: s !== 'blocked' }));
  const redoForm = h('div', { class: 'inline-form' },
    redoChecks.map(c => h('label', { class: 'check' }, c, c.value)),
    h('button', { type: 'button', class: 'btn small', 'data-action': 'redo', onclick: e => redo(sel(), redoChecks.filter(c => c.checked).map(c => c.value), e.currentTarget) }, icon('redo', 14), 'Redo'));

  const feedBody = h('tbody');
  const feedCount = h('span', { class: 'muted' });
  const feedEmpty = empty('No annotations yet.');
  const errorsBox = h('div', { class: 'errors-list' }, spinner());
  const labelsBox = h('div', { class: 'label-chart' }, spinner());

  const head = h('div', { class: 'run-head', 'data-run': id },
    h('div', { class: 'crumbs' }, h('a', { href: '#/' }, 'Runs'), h('span', null, ' / '), h('span', null, id)),
    h('div', { class: 'run-title' }, title, r.status, r.off, h('span', { class: 'grow' }), browse, webUI),
    h('div', { class: 'card' },
      h('div', { class: 'run-progress' },
        h('div', { class: 'stat-line' }, h('span', { class: 'big' }, r.done), h('span', { class: 'muted' }, ' / '), h('span', { class: 'big muted' }, r.target), r.pct),
        h('div', { class: 'bar thick' }, r.bar)),
      r.counts,
      h('div', { class: 'control-grid' },
        h('div', null, h('div', { class: 'card-title' }, 'Control'), actions),
        h('div', null, h('div', { class: 'card-title' }, 'Target'), targetForm),
        h('div', null, h('div', { class: 'card-title' }, 'Redo'), redoForm),
        h('div', null, h('div', { class: 'card-title' }, 'Annotations'),
          h('button', { type: 'button', class: 'btn small danger-outline', 'data-action': 'delete', onclick: e => deleteAnnotations(sel(), e.currentTarget) }, icon('trash', 14), 'Delete…'))),
      r.lastError));

  const page = h('section', { class: 'page run-page' },
    head,
    h('div', { class: 'grid-2' },
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Details'), r.kv),
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Labels'), labelsBox)),
    h('div', { class: 'grid-2 feed-grid' },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('div', { class: 'card-title' }, 'Live annotations'), feedCount),
        h('div', { class: 'table-wrap feed-wrap' },
          h('table', { class: 'table feed', id: 'feed' },
            h('thead', null, h('tr', null, h('th', null, 'Time'), h('th', null, 'Sample'), h('th', null, 'Label'), h('th', null, 'Status'))),
            feedBody)),
        feedEmpty),
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Recent errors'), errorsBox)));
  root.appendChild(page);

  function kv(label, value, title) {
    return [h('dt', null, label), h('dd', { title }, value)];
  }

  function render() {
    if (!run) return;
    const st = run.status || 'unknown';
    r.status.className = `badge status st-${st}`;
    setText(r.status, st);
    head.dataset.status = st;
    markSuggested(actions, st);
    setText(title, `Annotator ${run.annotator} · ${run.domain}`);
    const tgt = effectiveTarget(run);
    setText(r.done, String(run.completed || 0));
    setText(r.target, String(tgt));
    setText(r.pct, `${pct(run.completed || 0, tgt).toFixed(1)}%`);
    setBar(r.bar, pct(run.completed || 0, tgt));
    r.off.hidden = run.enabled !== false;
    if (document.activeElement !== targetIn && !targetIn.dataset.touched) targetIn.value = run.target ?? '';
    const web = run.web_ui || detail?.web_ui;
    webUI.hidden = !web;
    if (web && /^https?:\/\//i.test(web)) webUI.href = web;
    fill(r.counts,
      [['ok', run.ok], ['malformed', run.malformed], ['errors', run.errors], ['blocked', run.blocked]].map(([k, n]) =>
        h('div', { class: `count c-${k}` }, h('span', { class: 'count-n' }, fmtInt(n || 0)), h('span', { class: 'count-k' }, k))),
      h('div', { class: 'count' }, h('span', { class: 'count-n' }, fmtRate(run.samples_per_minute)), h('span', { class: 'count-k' }, 'per min')),
      h('div', { class: 'count' }, h('span', { class: 'count-n' }, (() => { const e = runEta(run); return e === null ? '—' : fmtDuration(e); })()), h('span', { class: 'count-k' }, 'ETA')));
    renderTimes();
    r.lastError.hidden = !run.last_error;
    if (run.last_error) fill(r.lastError, h('strong', null, 'Last error: '), run.last_error);
  }

  function renderTimes() {
    if (!run) return;
    const lp = run.last_progress || detail?.last_progress;
    fill(r.kv,
      kv('Workflow', run.workflow_id),
      kv('Enabled', run.enabled === false ? 'no' : run.enabled === true ? 'yes' : '—'),
      kv('Target', `${run.target ?? '—'}${run.dataset_size ? ` (dataset has ${run.dataset_size})` : ''}`),
      kv('Restarts', String(run.restarts ?? 0)),
      kv('Started', fmtRel(run.started_at), fmtTime(run.started_at)),
      kv('Last heartbeat', fmtRel(run.last_heartbeat), fmtTime(run.last_heartbeat)),
      kv('Last annotation', fmtRel(lp), fmtTime(lp)),
      run.next_try ? kv('Next try', fmtRel(run.next_try), fmtTime(run.next_try)) : null,
      run.mode ? kv('Mode', run.mode) : null,
      ...batchDetails(run.batch));
  }

  // A batch-mode run's chunks at the provider: state, the provider's counts, when sent.
  function batchDetails(b) {
    if (!b) return [];
    const done = Object.entries(b.by_state || {}).filter(([k]) => k.startsWith('done_')).map(([k, n]) => `${n} ${k.slice(5)}`).join(', ');
    const out = kv('Chunks done', done || 'none yet');
    if (b.oldest_sent) out.push(...kv('Oldest sent', fmtRel(b.oldest_sent), fmtTime(b.oldest_sent)));
    for (const c of b.chunks || []) {
      out.push(...kv(`Chunk ${c.seq}`, `${c.state}${c.provider_state ? ` (${c.provider_state})` : ''} · ${fmtInt(c.completed)}/${fmtInt(c.lines)} answered${c.failed ? `, ${fmtInt(c.failed)} failed` : ''}`,
        c.batch_id));
    }
    return out;
  }

  // Feed.
  const feedRows = new Map(); // seq -> tr
  function addFeed(a) {
    const seq = Number(a.seq);
    if (!Number.isFinite(seq) || feedRows.has(seq)) return;
    const tr = h('tr', { 'data-seq': seq, class: `an-row an-${a.status}`, tabindex: 0, title: 'Show the sample with every annotator\'s label' },
      h('td', { class: 'nowrap muted', title: fmtTime(a.created_at) }, fmtClock(a.created_at)),
      h('td', { class: 'mono' }, a.sample_id),
      h('td', { class: 'label-cell' }, a.label || '—'),
      h('td', null, annBadge(a.status)));
    tr._sample = a.sample_id;
    // Newest first: walk from the top to the first older row (new ones usually go on top).
    let before = feedBody.firstElementChild;
    while (before && Number(before.dataset.seq) > seq) before = before.nextElementSibling;
    feedBody.insertBefore(tr, before);
    feedRows.set(seq, tr);
    while (feedRows.size > FEED_MAX) {
      const last = feedBody.lastElementChild;
      feedRows.delete(Number(last.dataset.seq));
      last.remove();
    }
  }
  function feedDone() {
    feedEmpty.hidden = feedRows.size > 0;
    setText(feedCount, feedRows.size ? `${feedRows.size} shown${feedRows.size >= FEED_MAX ? ' (newest 200)' : ''}` : '');
  }
  const openRow = e => {
    const tr = e.target.closest('tr[data-seq]');
    if (tr && (e.type === 'click' || e.key === 'Enter')) openSample(tr._sample);
  };
  feedBody.addEventListener('click', openRow);
  feedBody.addEventListener('keydown', openRow);

  // Recent errors and labels.
  function renderErrors() {
    const list = detail?.recent_errors || [];
    if (!list.length) return fill(errorsBox, empty('No errors, malformed or blocked replies. '));
    fill(errorsBox, list.map(a => h('details', { class: `err-item an-${a.status}` },
      h('summary', null,
        annBadge(a.status), h('span', { class: 'mono' }, a.sample_id), h('span', { class: 'muted nowrap' }, fmtRel(a.created_at)),
        h('span', { class: 'err-msg' }, a.error || a.parse_error || a.validity_error || a.label || '')),
      h('dl', { class: 'kv small' },
        kv('Created', fmtTime(a.created_at)), kv('Model', a.model || '—'), kv('Attempt', String(a.attempt ?? '—')),
        kv('Latency', a.latency_ms ? `${a.latency_ms} ms` : '—'),
        a.error ? kv('Error', a.error) : null, a.parse_error ? kv('Parse error', a.parse_error) : null,
        a.validity_error ? kv('Validity error', a.validity_error) : null),
      a.raw_reply ? h('pre', { class: 'raw' }, a.raw_reply) : h('p', { class: 'muted' }, 'No reply stored.'),
      h('button', { type: 'button', class: 'btn small ghost', onclick: () => openSample(a.sample_id) }, 'Show sample'))));
  }

  async function loadDetail() {
    try {
      detail = await api(`/api/runs/${encodeURIComponent(id)}`);
      if (!alive) return;
      if (!run || !store.runs.has(id)) {
        run = { ...detail };
        delete run.recent_errors;
      }
      render();
      renderErrors();
    } catch (err) {
      if (!alive) return;
      if (err.status === 404 && !run) {
        fill(page, h('div', { class: 'card' }, h('h1', null, 'No such run'), h('p', null, `There is no run ${id}. `), h('a', { href: '#/' }, 'Back to the runs')));
        return;
      }
      fill(errorsBox, h('p', { class: 'error-text' }, `Could not load the recent errors: ${err.message}`));
    }
  }

  async function loadLabels() {
    if (!parsed.annotator) return;
    try {
      const s = await api(`/api/stats${query({ annotator: parsed.annotator, domain: parsed.domain })}`);
      if (!alive) return;
      const st = (s?.runs || []).find(x => x.domain === parsed.domain && String(x.annotator) === parsed.annotator) || s?.runs?.[0];
      const labels = Object.entries(st?.labels || {}).sort((a, b) => b[1] - a[1]);
      if (!labels.length) return fill(labelsBox, empty('No labels yet.'));
      const max = Math.max(...labels.map(l => l[1]));
      fill(labelsBox,
        h('div', { class: 'muted small' }, `${fmtInt(st.total || 0)} stored · ${Number(st.malformed_percent || 0).toFixed(1)}% malformed`),
        labels.slice(0, 24).map(([k, n]) => h('div', { class: 'hbar' },
          h('span', { class: 'hbar-k', title: k }, k),
          h('span', { class: 'hbar-track' }, h('span', { class: 'hbar-fill', style: { width: `${(n / max) * 100}%` } })),
          h('span', { class: 'hbar-n' }, fmtInt(n)))),
        labels.length > 24 ? h('div', { class: 'muted small' }, `… ${labels.length - 24} more labels`) : null);
    } catch (err) {
      if (alive) fill(labelsBox, h('p', { class: 'muted' }, `No label statistics: ${err.message}`));
    }
  }

  async function loadFeed() {
    try {
      const res = await api(`/api/annotations${query({ annotator: parsed.annotator, domain: parsed.domain, limit: 50 })}`);
      if (!alive) return;
      for (const a of res?.items || []) addFeed(a);
    } catch (err) {
      if (alive) toastError('Could not load the annotations', err);
    }
    feedDone();
  }

  const refreshErrors = debounce(loadDetail, 1500);
  const refreshLabels = debounce(loadLabels, 4000);

  const offRuns = store.on('runs', changed => {
    if (changed && !changed.has(id)) return;
    const next = store.runs.get(id);
    if (next) {
      run = next;
      render();
    }
  });
  const offAnn = store.on('annotations', list => {
    let bad = false, any = false;
    for (const a of list) {
      if (a.run === id || (a.annotator === parsed.annotator && a.domain === parsed.domain)) {
        addFeed(a);
        any = true;
        if (a.status && a.status !== 'ok') bad = true;
      }
    }
    if (any) {
      feedDone();
      refreshLabels();
    }
    if (bad) refreshErrors();
  });
  targetIn.addEventListener('input', () => { targetIn.dataset.touched = '1'; });
  const tick = setInterval(renderTimes, 1000);

  render();
  loadDetail();
  loadFeed();
  loadLabels();

  return () => {
    alive = false;
    offRuns();
    offAnn();
    clearInterval(tick);
    refreshErrors.cancel();
    refreshLabels.cancel();
  };
}
