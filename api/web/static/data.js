// The annotations browser (#/annotations), the sample view and the dataset page (#/dataset).

import {
  h, fill, setText, setBar, icon, annBadge, selectEl, field, empty, spinner,
  api, query, download, upload, toast, toastError, modal, busy,
  DOMAINS, ANNOTATION_STATUSES, fmtTime, fmtWhen, fmtInt, annotatorSort,
} from './lib.js';
import { store } from './live.js';

const PAGE = 50;

function knownAnnotators(extra) {
  const s = new Set([...store.runs.values()].map(r => r.annotator));
  if (extra) s.add(extra);
  return [...s].sort(annotatorSort);
}

/** "2024-05-01T10:00" (local, from a datetime-local input) -> RFC 3339 in UTC. */
function toRFC3339(local) {
  if (!local) return '';
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? '' : t.toISOString();
}

// ---------------------------------------------------------------------------------------------
// Annotations browser

export function mountAnnotations(root, { params }) {
  const f = {};
  for (const k of ['annotator', 'domain', 'status', 'label', 'q', 'from', 'to']) f[k] = params.get(k) || '';
  let alive = true;
  let cursors = [null]; // before-cursor of each page seen; the last is the current page
  let next = null;
  let ctrl = null;

  const inAnn = selectEl({ name: 'annotator', id: 'f-annotator' }, [['', 'All annotators'], ...knownAnnotators(f.annotator).map(a => [a, `Annotator ${a}`])], f.annotator);
  const inDom = selectEl({ name: 'domain', id: 'f-domain' }, [['', 'All domains'], ...DOMAINS], f.domain);
  const inSt = selectEl({ name: 'status', id: 'f-status' }, [['', 'Any status'], ...ANNOTATION_STATUSES], f.status);
  const inLabel = h('input', { name: 'label', id: 'f-label', value: f.label, placeholder: 'e.g. TA-3', spellcheck: 'false' });
  const inQ = h('input', { name: 'q', id: 'f-q', type: 'search', value: f.q, placeholder: 'text or raw reply' });
  const inFrom = h('input', { name: 'from', id: 'f-from', type: 'datetime-local', value: f.from, step: 1 });
  const inTo = h('input', { name: 'to', id: 'f-to', type: 'datetime-local', value: f.to, step: 1 });
  const form = h('form', { class: 'filters card', id: 'annotation-filters' },
    h('div', { class: 'filter-grid' },
      field('Annotator', inAnn), field('Domain', inDom), field('Status', inSt), field('Label', inLabel),
      field('Search', inQ), field('From', inFrom), field('To', inTo)),
    h('div', { class: 'row wrap' },
      h('button', { type: 'submit', class: 'btn primary' }, 'Apply'),
      h('button', { type: 'button', class: 'btn ghost', onclick: () => {
        for (const el of [inAnn, inDom, inSt, inLabel, inQ, inFrom, inTo]) el.value = '';
        form.requestSubmit();
      } }, 'Reset'),
      h('span', { class: 'grow' }),
      h('span', { class: 'muted' }, 'Export:'),
      ['jsonl', 'csv', 'xlsx'].map(fmt => h('button', { type: 'button', class: 'btn small', 'data-export': fmt, onclick: e => exportAs(fmt, e.currentTarget) }, icon('download', 14), fmt.toUpperCase()))));

  const total = h('span', { class: 'muted', id: 'ann-total' });
  const tbody = h('tbody');
  const status = h('div', { class: 'table-status' });
  const newest = h('button', { type: 'button', class: 'btn small ghost', disabled: true }, 'Newest');
  const newer = h('button', { type: 'button', class: 'btn small', disabled: true }, '← Newer');
  const older = h('button', { type: 'button', class: 'btn small', disabled: true, id: 'ann-older' }, 'Older →');
  const pageInfo = h('span', { class: 'muted' });

  root.appendChild(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Annotations'), h('p', { class: 'muted' }, 'Newest first. Click a row to compare every annotator on that sample.')),
    form,
    h('div', { class: 'card' },
      h('div', { class: 'card-head' }, h('div', { class: 'card-title' }, 'Results'), total),
      h('div', { class: 'table-wrap' },
        h('table', { class: 'table annotations', id: 'annotations' },
          h('thead', null, h('tr', null, ['#', 'Time', 'Annotator', 'Domain', 'Sample', 'Label', 'Status', 'Text'].map(t => h('th', null, t)))),
          tbody)),
      status,
      h('div', { class: 'pager' }, newest, newer, pageInfo, older))));

  function apiFilters() {
    return { annotator: f.annotator, domain: f.domain, status: f.status, label: f.label, q: f.q, from: toRFC3339(f.from), to: toRFC3339(f.to) };
  }

  form.addEventListener('submit', e => {
    e.preventDefault();
    f.annotator = inAnn.value;
    f.domain = inDom.value;
    f.status = inSt.value;
    f.label = inLabel.value.trim();
    f.q = inQ.value.trim();
    f.from = inFrom.value;
    f.to = inTo.value;
    history.replaceState(null, '', `#/annotations${query(f)}`);
    cursors = [null];
    load();
    loadTotal();
  });
  newest.addEventListener('click', () => { cursors = [null]; load(); });
  newer.addEventListener('click', () => { if (cursors.length > 1) { cursors.pop(); load(); } });
  older.addEventListener('click', () => { if (next !== null) { cursors.push(next); load(); } });

  const openRow = e => {
    const tr = e.target.closest('tr[data-sample]');
    if (tr && (e.type === 'click' || e.key === 'Enter')) openSample(tr.dataset.sample);
  };
  tbody.addEventListener('click', openRow);
  tbody.addEventListener('keydown', openRow);

  async function load() {
    ctrl?.abort();
    ctrl = new AbortController();
    const before = cursors[cursors.length - 1];
    fill(status, spinner());
    older.disabled = newer.disabled = newest.disabled = true;
    try {
      const res = await api(`/api/annotations${query({ ...apiFilters(), limit: PAGE, before })}`, { signal: ctrl.signal });
      if (!alive) return;
      const items = res?.items || [];
      next = res?.next_before ?? null;
      if (!items.length) next = null;
      fill(tbody, items.map(a => h('tr', { 'data-sample': a.sample_id, 'data-seq': a.seq, tabindex: 0, class: `an-row an-${a.status}` },
        h('td', { class: 'muted mono' }, a.seq),
        h('td', { class: 'nowrap', title: fmtTime(a.created_at) }, fmtWhen(a.created_at)),
        h('td', null, a.annotator),
        h('td', null, a.domain),
        h('td', { class: 'mono nowrap' }, a.sample_id),
        h('td', { class: 'label-cell' }, a.label || '—'),
        h('td', null, annBadge(a.status)),
        h('td', { class: 'text-cell', title: a.text || '' }, a.text || ''))));
      fill(status, items.length ? null : empty('No annotation matches these filters.'));
      older.disabled = next === null;
      newer.disabled = newest.disabled = cursors.length <= 1;
      setText(pageInfo, items.length ? `page ${cursors.length} · #${items[0].seq}–#${items[items.length - 1].seq}` : '');
    } catch (err) {
      if (err.name === 'AbortError' || !alive) return;
      fill(status, h('p', { class: 'error-text' }, `Could not load annotations: ${err.message}`));
      newer.disabled = newest.disabled = cursors.length <= 1;
    }
  }

  async function loadTotal() {
    setText(total, '');
    try {
      const p = await api(`/api/export/preview${query(apiFilters())}`);
      if (alive && Number.isFinite(p?.total)) setText(total, `${fmtInt(p.total)} matching`);
    } catch { /* the count is a nicety */ }
  }

  async function exportAs(fmt, btn) {
    await busy(btn, async () => {
      try {
        const t = toast('ok', `Preparing the ${fmt.toUpperCase()} export…`);
        const { name, size } = await download(`/api/export${query({ format: fmt, ...apiFilters() })}`);
        t.remove();
        toast('ok', `Downloaded ${name}`, [`${fmtInt(size)} bytes`]);
      } catch (err) {
        toastError('Export failed', err);
      }
    });
  }

  // Annotator choices come from the runs, which may arrive after the page.
  const offRuns = store.on('runs', changed => {
    if (changed !== null) return;
    const cur = inAnn.value;
    fill(inAnn, [['', 'All annotators'], ...knownAnnotators(cur).map(a => [a, `Annotator ${a}`])].map(([v, l]) => h('option', { value: v }, l)));
    inAnn.value = cur;
  });

  load();
  loadTotal();
  return () => {
    alive = false;
    offRuns();
    ctrl?.abort();
  };
}

// ---------------------------------------------------------------------------------------------
// One sample, every annotator side by side

export async function openSample(id) {
  if (!id) return;
  const m = modal(`Sample ${id}`, { wide: true, id: 'sample-dialog' });
  m.body.appendChild(spinner());
  let res;
  try {
    res = await api(`/api/samples/${encodeURIComponent(id)}`);
  } catch (err) {
    fill(m.body, h('p', { class: 'error-text' }, `Could not load the sample: ${err.message}`));
    return;
  }
  const s = res?.sample || {};
  const anns = res?.annotations || [];
  // The newest annotation of each (annotator, domain).
  const by = new Map();
  for (const a of anns) {
    const k = `${a.annotator}\u0000${a.domain}`;
    const old = by.get(k);
    if (!old || Number(a.seq) > Number(old.seq)) by.set(k, a);
  }
  const annotators = [...new Set(anns.map(a => a.annotator))].sort(annotatorSort);
  const domains = DOMAINS.filter(d => anns.some(a => a.domain === d)).concat([...new Set(anns.map(a => a.domain))].filter(d => !DOMAINS.includes(d)));
  const detail = h('div', { class: 'ann-detail' }, h('p', { class: 'muted' }, 'Click a label to see the reply behind it.'));

  const showDetail = a => fill(detail,
    h('div', { class: 'row wrap' }, h('strong', null, `Annotator ${a.annotator} · ${a.domain}`), annBadge(a.status), h('span', { class: 'muted' }, fmtTime(a.created_at))),
    h('dl', { class: 'kv small' },
      [['Label', a.label || '—'], ['Model', a.model], ['Prompt', a.prompt_hash], ['Latency', a.latency_ms ? `${a.latency_ms} ms` : ''],
        ['Tokens', a.input_tokens || a.output_tokens ? `${a.input_tokens ?? 0} in / ${a.output_tokens ?? 0} out` : ''], ['Attempt', a.attempt],
        ['Parse error', a.parse_error], ['Validity error', a.validity_error], ['Error', a.error]]
        .filter(([, v]) => v !== undefined && v !== null && v !== '')
        .map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))])),
    h('div', { class: 'card-title' }, 'Raw reply'),
    a.raw_reply ? h('pre', { class: 'raw' }, a.raw_reply) : h('p', { class: 'muted' }, 'No reply stored.'));

  const table = annotators.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table side-by-side' },
    h('thead', null, h('tr', null, h('th', null, 'Domain'), annotators.map(a => h('th', null, `Annotator ${a}`)), h('th', null, 'Agreement'))),
    h('tbody', null, domains.map(d => {
      const labels = annotators.map(a => by.get(`${a}\u0000${d}`)).filter(Boolean);
      const okLabels = labels.filter(a => a.status === 'ok').map(a => a.label);
      const distinct = new Set(okLabels).size;
      return h('tr', null,
        h('th', { scope: 'row' }, d),
        annotators.map(an => {
          const a = by.get(`${an}\u0000${d}`);
          if (!a) return h('td', { class: 'muted' }, '—');
          return h('td', null, h('button', { type: 'button', class: `label-btn an-${a.status}`, title: a.raw_reply ? 'Show the reply' : '', onclick: () => showDetail(a) },
            h('span', { class: 'label-text' }, a.label || '(no label)'), a.status !== 'ok' ? annBadge(a.status) : null));
        }),
        h('td', null, okLabels.length < 2 ? h('span', { class: 'muted' }, '—')
          : distinct === 1 ? h('span', { class: 'chip ok' }, 'agree') : h('span', { class: 'chip warn' }, `${distinct} labels`)));
    })))) : empty('No annotator has labelled this sample yet.');

  fill(m.body,
    h('div', { class: 'muted small' }, `Position ${s.position ?? '—'} · ${anns.length} annotation${anns.length === 1 ? '' : 's'}`),
    h('blockquote', { class: 'sample-text' }, s.text || ''),
    table, detail);
}

// ---------------------------------------------------------------------------------------------
// Dataset

export function mountDataset(root) {
  let alive = true;
  const info = h('div', null, spinner());
  const fileIn = h('input', { type: 'file', id: 'dataset-file', name: 'file', accept: '.xlsx,.csv,.jsonl,.json', required: true });
  const sheetIn = h('input', { type: 'text', id: 'dataset-sheet', name: 'sheet', placeholder: 'first sheet' });
  const chosen = h('span', { class: 'muted' }, 'No file chosen');
  const bar = h('div', { class: 'bar-fill' });
  const progress = h('div', { class: 'bar', hidden: true }, bar);
  const report = h('div', { class: 'import-report', id: 'import-report' });
  const submit = h('button', { type: 'submit', class: 'btn primary' }, icon('upload', 14), 'Import');
  const drop = h('label', { class: 'dropzone', for: 'dataset-file' },
    icon('upload', 28), h('strong', null, 'Drop a file here or click to choose'),
    h('span', { class: 'muted' }, 'XLSX, CSV or JSONL with an id and a text column; at most 50 MB'), chosen);

  const showChosen = () => setText(chosen, fileIn.files[0] ? `${fileIn.files[0].name} · ${fmtInt(fileIn.files[0].size)} bytes` : 'No file chosen');
  fileIn.addEventListener('change', showChosen);
  drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', e => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files.length) {
      fileIn.files = e.dataTransfer.files;
      showChosen();
    }
  });

  const form = h('form', { class: 'stack', id: 'dataset-upload' }, drop, fileIn,
    h('div', { class: 'row wrap' }, field('Sheet (XLSX only)', sheetIn), h('span', { class: 'grow' }), submit), progress);
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const file = fileIn.files[0];
    if (!file) return toast('warn', 'Choose a file first');
    if (file.size > 50 * 1024 * 1024) return toast('error', 'The file is larger than 50 MB');
    const fd = new FormData();
    fd.append('file', file, file.name);
    if (sheetIn.value.trim()) fd.append('sheet', sheetIn.value.trim());
    progress.hidden = false;
    setBar(bar, 0);
    fill(report);
    await busy(submit, async () => {
      try {
        const rep = await upload('/api/dataset', fd, p => setBar(bar, p * 100));
        if (!alive) return;
        renderReport(rep || {});
        toast('ok', 'Import finished', [`${rep?.added ?? 0} added, ${rep?.unchanged ?? 0} unchanged, ${(rep?.rejected || []).length} rejected`]);
        loadInfo();
      } catch (err) {
        if (!alive) return;
        fill(report, h('div', { class: 'problem' }, h('strong', null, 'Import refused: '), err.message,
          err.errors?.length ? h('ul', null, err.errors.map(x => h('li', null, `${x.location ? x.location + ': ' : ''}${x.message}`))) : null));
      } finally {
        progress.hidden = true;
      }
    });
  });

  function renderReport(rep) {
    const rej = rep.rejected || [];
    fill(report,
      h('div', { class: 'count-grid' },
        h('div', { class: 'count c-ok' }, h('span', { class: 'count-n' }, fmtInt(rep.added || 0)), h('span', { class: 'count-k' }, 'added')),
        h('div', { class: 'count' }, h('span', { class: 'count-n' }, fmtInt(rep.unchanged || 0)), h('span', { class: 'count-k' }, 'unchanged')),
        h('div', { class: `count ${rej.length ? 'c-errors' : ''}` }, h('span', { class: 'count-n' }, fmtInt(rej.length)), h('span', { class: 'count-k' }, 'rejected'))),
      rej.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table rejected' },
        h('thead', null, h('tr', null, h('th', null, 'Row'), h('th', null, 'Reason'))),
        h('tbody', null, rej.map(x => h('tr', null, h('td', { class: 'mono' }, x.row), h('td', null, x.reason)))))) : null);
  }

  async function loadInfo() {
    try {
      const d = await api('/api/dataset');
      if (!alive) return;
      const first = d?.first || [];
      fill(info,
        h('div', { class: 'stat-line info-line' }, h('span', { class: 'big', id: 'dataset-samples' }, fmtInt(d?.samples ?? 0)), h('span', { class: 'muted' }, 'samples')),
        first.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
          h('thead', null, h('tr', null, h('th', null, 'Position'), h('th', null, 'ID'), h('th', null, 'Text'))),
          h('tbody', null, first.map(s => h('tr', { 'data-sample': s.id, tabindex: 0, class: 'an-row' },
            h('td', { class: 'muted' }, s.position ?? ''), h('td', { class: 'mono nowrap' }, s.id), h('td', { class: 'text-cell wrap' }, s.text)))))) : empty('The dataset is empty. Import a file to start.'));
    } catch (err) {
      if (alive) fill(info, h('p', { class: 'error-text' }, `Could not load the dataset: ${err.message}`));
    }
  }
  info.addEventListener('click', e => {
    const tr = e.target.closest('tr[data-sample]');
    if (tr) openSample(tr.dataset.sample);
  });

  root.appendChild(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Dataset'), h('p', { class: 'muted' }, 'The samples every run annotates, in order. Importing adds new samples and leaves the stored ones alone.')),
    h('div', { class: 'grid-2' },
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Stored samples'), info),
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Import'), form, report))));
  loadInfo();
  return () => { alive = false; };
}

