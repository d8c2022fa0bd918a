// The agreement page (#/agreement): per domain, the pairwise κ matrix as a heat map, α with its
// interval, coverage and the most disputed samples. It recomputes as annotations arrive.

import { h, fill, empty, spinner, api, debounce, fmtInt, icon, download, toastError } from './lib.js';
import { store } from './live.js';

const DOMAINS = ['urgency', 'therapeutic', 'intensity', 'adjunct', 'modality', 'redressal'];

function num(fig) {
  return fig && fig.value !== null && fig.value !== undefined ? fig.value.toFixed(3) : '–';
}

// heat colours a κ: red below 0 through amber to green at 1 (Landis & Koch's bands).
function heat(v) {
  if (v === null || v === undefined) return 'var(--surface-2, transparent)';
  const x = Math.max(-1, Math.min(1, v));
  const hue = x <= 0 ? 0 : 120 * x;
  return `hsl(${hue} 65% ${x <= 0 ? 55 : 45}% / .85)`;
}

function band(v) {
  if (v === null || v === undefined) return 'undefined';
  if (v < 0) return 'worse than chance';
  if (v <= 0.2) return 'slight';
  if (v <= 0.4) return 'fair';
  if (v <= 0.6) return 'moderate';
  if (v <= 0.8) return 'substantial';
  return 'almost perfect';
}

function figureLine(label, fig) {
  if (!fig) return null;
  const ci = fig.ci ? ` [${fig.ci.low.toFixed(3)}, ${fig.ci.high.toFixed(3)}]` : '';
  const why = fig.value === null ? ` (${fig.reason || 'undefined'})` : '';
  return [h('dt', null, label), h('dd', { 'data-stat': fig.statistic }, `${num(fig)}${ci}${why} · ${fmtInt(fig.units)} samples`)];
}

function matrix(cohen) {
  const names = cohen.annotators;
  const at = new Map(cohen.pairs.map(p => [`${p.a}\u0000${p.b}`, p.kappa]));
  const cell = (a, b) => {
    if (a === b) return h('td', { class: 'heat self', title: `${a} with itself` }, '1');
    const k = at.get(`${a}\u0000${b}`) || at.get(`${b}\u0000${a}`);
    const v = k ? k.value : null;
    return h('td', { class: 'heat', style: `background:${heat(v)}`, title: `κ ${a}–${b}: ${num(k)} (${band(v)}), ${k ? k.units : 0} samples` }, num(k));
  };
  return h('table', { class: 'heatmap', 'aria-label': "Cohen's κ for every pair of annotators" },
    h('thead', null, h('tr', null, h('th', null, ''), ...names.map(n => h('th', { scope: 'col' }, n)))),
    h('tbody', null, ...names.map(a => h('tr', null, h('th', { scope: 'row' }, a), ...names.map(b => cell(a, b))))));
}

function domainCard(d) {
  const r = d.report;
  const card = h('div', { class: 'card agreement-card', 'data-domain': d.domain });
  if (!r) {
    fill(card, h('div', { class: 'card-head' }, h('h2', { class: 'card-name' }, d.domain)), h('p', { class: 'muted' }, d.error));
    return card;
  }
  const c = r.coverage;
  const head = h('div', { class: 'card-head' }, h('h2', { class: 'card-name' }, d.domain),
    r.headline ? h('span', { class: `chip ${r.headline.value === null ? '' : r.headline.value > 0.6 ? 'ok' : r.headline.value > 0.2 ? 'warn' : 'danger'}`, 'data-headline': num(r.headline) },
      `${r.headline.statistic.replace('alpha_', 'α ')} ${num(r.headline)}`) : h('span', { class: 'chip' }, r.scale.replace('_', ' ')));
  const kv = h('dl', { class: 'kv' },
    h('dt', null, 'Samples'), h('dd', null, `${fmtInt(c.pairable)} labelled by two or more of ${fmtInt(c.samples)}; ${fmtInt(c.complete)} by all ${r.annotators.length}`));
  for (const [label, fig] of [['α ordinal', r.alpha_ordinal], ['α MASI', r.alpha_masi], ['α Jaccard', r.alpha_jaccard], ['α nominal', r.alpha_nominal], ["Fleiss' κ", r.fleiss_kappa]]) {
    const line = figureLine(label, fig);
    if (line) kv.append(...line);
  }
  if (r.cohen_kappa) kv.append(...figureLine("Light's κ", r.cohen_kappa.light_kappa));
  const body = [head, kv];
  if (r.cohen_kappa && r.cohen_kappa.annotators.length > 1) body.push(h('div', { class: 'table-wrap' }, matrix(r.cohen_kappa)));
  if (r.code_alpha && r.code_alpha.length) {
    body.push(h('details', { class: 'codes' }, h('summary', null, 'Per code (binary α)'),
      h('table', { class: 'table small' }, h('thead', null, h('tr', null, h('th', null, 'Code'), h('th', null, 'Chosen'), h('th', null, 'α'))),
        h('tbody', null, ...r.code_alpha.map(x => h('tr', null, h('td', null, x.code), h('td', null, fmtInt(x.chosen)), h('td', { title: x.alpha.reason || '' }, num(x.alpha))))))));
  }
  if (r.points) {
    body.push(h('table', { class: 'table small' }, h('thead', null, h('tr', null, h('th', null, 'Annotator'), h('th', null, 'Lists'), h('th', null, 'Mean points'), h('th', null, 'Median'))),
      h('tbody', null, ...r.points.map(p => h('tr', null, h('td', null, p.annotator), h('td', null, fmtInt(p.labels)), h('td', null, p.mean_points.toFixed(1)), h('td', null, p.median_points.toFixed(1)))))));
  }
  if (r.note) body.push(h('p', { class: 'muted small' }, r.note));
  if (d.domain !== 'redressal') {
    body.push(h('div', { class: 'row wrap' }, ...[['csv', 'Consensus CSV'], ['jsonl', 'Consensus JSONL'], ['labelstudio', 'Label Studio tasks']].map(([fmt, label]) =>
      h('button', { type: 'button', class: 'btn small', 'data-export': fmt, onclick: () => save(`/api/consensus/${d.domain}/export?format=${fmt}`) }, icon('download', 14), label))));
    body.push(disputedBlock(d.domain));
  }
  fill(card, ...body);
  return card;
}

function disputedBlock(domain) {
  const list = h('div', { class: 'disputed-list' });
  const box = h('details', { class: 'disputed' }, h('summary', null, 'Most disputed samples'), list);
  box.addEventListener('toggle', async () => {
    if (!box.open || list.dataset.loaded) return;
    fill(list, spinner());
    try {
      const reply = await api(`/api/consensus/${domain}?disputed=5`);
      list.dataset.loaded = '1';
      fill(list, ...(reply.samples.length ? reply.samples.map(s => h('div', { class: 'disputed-item' },
        h('div', { class: 'row between' }, h('strong', null, s.sample_id),
          h('span', { class: 'muted' }, `agreement ${(s.agreement * 100).toFixed(0)}% · ${s.tie ? 'tie: ' + s.tied.join(' / ') : 'consensus ' + (s.consensus || 'none')}`)),
        h('p', { class: 'sample-text' }, s.text),
        h('ul', { class: 'replies' }, ...s.replies.map(x => h('li', null, h('strong', null, x.annotator), ` ${x.label || '(' + x.status + ')'}`, h('details', null, h('summary', null, 'reply'), h('pre', null, x.raw_reply))))))) : [empty('No sample has two labels yet.')]));
    } catch (err) {
      fill(list, h('p', { class: 'problem' }, String(err.message || err)));
    }
  });
  return box;
}

async function save(url) {
  try {
    await download(url);
  } catch (err) {
    toastError('Download failed', err);
  }
}

export function mountAgreement(root) {
  let alive = true;
  const grid = h('div', { class: 'agreement-grid', id: 'agreement' }, spinner());
  const stamp = h('span', { class: 'muted small' });
  root.appendChild(h('section', { class: 'page' },
    h('div', { class: 'page-head' }, h('div', { class: 'row between wrap' }, h('h1', null, 'Agreement'),
      h('button', { type: 'button', class: 'btn small', id: 'agreement-xlsx', onclick: () => save('/api/agreement/export') }, icon('download', 14), 'Workbook (XLSX)')),
      h('p', { class: 'muted' }, 'How far the annotators agree, per domain, over the samples two or more of them labelled ok. Malformed, error and blocked rows are missing values. Intervals: seeded bootstrap, 95 %, 1 000 resamples.'), stamp),
    grid));

  async function load() {
    try {
      const reply = await api('/api/agreement');
      if (!alive) return;
      const byDomain = new Map(reply.domains.map(d => [d.domain, d]));
      const open = new Set([...grid.querySelectorAll('details[open]')].map(x => x.closest('[data-domain]')?.dataset.domain + ':' + x.className));
      fill(grid, ...DOMAINS.filter(d => byDomain.has(d)).map(d => domainCard(byDomain.get(d))));
      for (const x of grid.querySelectorAll('details')) {
        if (open.has(x.closest('[data-domain]')?.dataset.domain + ':' + x.className)) x.open = true;
      }
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (alive) fill(grid, h('div', { class: 'card problem' }, String(err.message || err)));
    }
  }
  const soon = debounce(load, 1500);
  const off = store.on('annotations', soon);
  load();
  return () => { alive = false; off(); };
}
