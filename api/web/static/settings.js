// The config page (#/config: global settings, per-run enable/target, API keys) and the prompts
// page (#/prompts: versions, editor, activation, diff).

import {
  h, fill, clear, setText, icon, selectEl, field, empty, spinner,
  api, query, toast, toastError, confirmDialog, busy, ApiError,
  DOMAINS, fmtTime, fmtRel, annotatorSort, selection, describeSelection,
} from './lib.js';
import { store } from './live.js';

// Known global settings: where they go and how they are edited. Fields the API returns that
// are not listed here still show, under "Other", with an editor chosen by their value's type.
const GROUPS = ['Provider and model', 'Generation', 'Quota', 'Runs', 'Timeouts', 'Dataset', 'Other', 'Legacy (not used)'];
const META = {
  provider: { group: 'Provider and model', options: ['offline', 'gemini', 'openai'] },
  model_name: { group: 'Provider and model', label: 'Model name' },
  base_url: { group: 'Provider and model', label: 'Base URL', placeholder: "the provider's default" },
  temperature: { group: 'Generation', step: 'any' },
  max_output_tokens: { group: 'Generation' },
  thinking_budget: { group: 'Generation', number: true, nullable: true, hint: 'empty sends none; 0 turns thinking off; -1 lets the model decide' },
  safety_threshold: { group: 'Generation', options: ['BLOCK_NONE', 'BLOCK_ONLY_HIGH', 'BLOCK_MEDIUM_AND_ABOVE', 'BLOCK_LOW_AND_ABOVE', 'OFF', ''] },
  stream: { group: 'Generation', hint: 'streamed replies show a call is alive' },
  requests_per_minute: { group: 'Quota' },
  requests_per_day: { group: 'Quota' },
  tokens_per_minute: { group: 'Quota', hint: '0 means no limit' },
  quota_day_zone: { group: 'Quota', hint: 'IANA zone whose midnight resets the daily count' },
  request_delay_seconds: { group: 'Quota', step: 'any', hint: 'pause between two requests of one run' },
  batch_size: { group: 'Runs', hint: 'samples per activity' },
  max_retries: { group: 'Runs', hint: 're-asks of a malformed reply' },
  max_restart_attempts: { group: 'Runs' },
  max_consecutive_errors: { group: 'Runs', hint: 'the same error this many times in a row fails the run' },
  max_concurrent_activities: { group: 'Runs' },
  heartbeat_timeout_seconds: { group: 'Timeouts' },
  request_timeout_seconds: { group: 'Timeouts' },
  stream_idle_timeout_seconds: { group: 'Timeouts' },
  max_retry_backoff_seconds: { group: 'Timeouts' },
  crash_detection_minutes: { group: 'Timeouts', step: 'any' },
  dataset_path: { group: 'Dataset' },
  offline_latency_seconds: { group: 'Dataset', step: 'any', hint: 'pause per sample of the offline annotator' },
  control_check_iterations: { group: 'Legacy (not used)' },
  control_check_seconds: { group: 'Legacy (not used)' },
};

function humanize(key) {
  const s = key.replace(/_/g, ' ');
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** "body.global.batch_size", "body.batch_size", "global.batch_size" -> "batch_size". */
function fieldOf(location) {
  return String(location || '').replace(/^body\./, '').replace(/^global\./, '');
}

function annotatorDomains(a) {
  const d = a && typeof a.domains === 'object' && a.domains ? a.domains : a || {};
  return d;
}

// ---------------------------------------------------------------------------------------------
// Config

export function mountConfig(root) {
  let alive = true;
  let config = null;
  const inputs = new Map(); // key -> {input, kind, wrap, err}

  const formErrors = h('div', { class: 'problem', hidden: true, id: 'global-errors' });
  const groups = h('div', { class: 'config-groups' }, spinner());
  const saveBtn = h('button', { type: 'submit', class: 'btn primary', 'data-save': 'global' }, 'Save settings');
  const dirty = h('span', { class: 'muted', id: 'global-dirty' });
  const form = h('form', { class: 'card', id: 'global-form', novalidate: true },
    h('div', { class: 'card-head' }, h('h2', null, 'Global settings'), h('span', { class: 'muted small' }, 'Written atomically to settings.json')),
    formErrors, groups,
    h('div', { class: 'row wrap sticky-actions' }, saveBtn,
      h('button', { type: 'button', class: 'btn ghost', onclick: () => renderGlobal() }, 'Discard changes'), dirty));

  const runsBox = h('div', null, spinner());
  const keysBox = h('div', null, spinner());

  root.appendChild(h('section', { class: 'page config-page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Config'), h('p', { class: 'muted' }, 'Settings, which runs are enabled with which targets, and the annotators\' API keys.')),
    form,
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Runs'), h('span', { class: 'muted small' }, 'Enabled runs start with "start all"; a live run takes a new target from its run page.')), runsBox),
    h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Annotators and API keys'), h('span', { class: 'muted small' }, 'Keys are write-only: the API never returns them.')), keysBox)));

  // -------- global form

  function control(key, value) {
    const meta = META[key] || {};
    let kind, input;
    if (typeof value === 'boolean') {
      kind = 'bool';
      input = h('input', { type: 'checkbox', checked: value, name: key, id: `g-${key}` });
    } else if (meta.options) {
      kind = 'string';
      const opts = meta.options.includes(value ?? '') ? meta.options : [...meta.options, value ?? ''];
      input = selectEl({ name: key, id: `g-${key}` }, opts.map(o => [o, o === '' ? '(none)' : o]), value ?? '');
    } else if (typeof value === 'number' || meta.number) {
      kind = 'number';
      input = h('input', { type: 'number', name: key, id: `g-${key}`, value: value ?? '', step: meta.step || (Number.isInteger(value) || value === null ? 1 : 'any'), placeholder: meta.nullable ? 'none' : '' });
    } else if (value !== null && typeof value === 'object') {
      kind = 'json';
      input = h('textarea', { name: key, id: `g-${key}`, rows: 3, class: 'mono', value: JSON.stringify(value, null, 2) });
    } else {
      kind = 'string';
      input = h('input', { type: 'text', name: key, id: `g-${key}`, value: value ?? '', placeholder: meta.placeholder || '', spellcheck: 'false' });
    }
    input.addEventListener('input', markDirty);
    input.addEventListener('change', markDirty);
    const err = h('span', { class: 'field-error', role: 'alert' });
    const label = meta.label || humanize(key);
    const wrap = kind === 'bool'
      ? h('div', { class: 'field check-field', 'data-field': key }, h('label', { class: 'check' }, input, h('span', { class: 'field-label' }, label)), meta.hint ? h('span', { class: 'field-hint' }, meta.hint) : null, err)
      : h('div', { class: 'field', 'data-field': key }, h('label', { class: 'field-label', for: `g-${key}` }, label), input, meta.hint ? h('span', { class: 'field-hint' }, meta.hint) : null, err);
    inputs.set(key, { input, kind, wrap, err, meta });
    return wrap;
  }

  function read(key) {
    const { input, kind, meta } = inputs.get(key);
    if (kind === 'bool') return input.checked;
    if (kind === 'number') {
      const v = input.value.trim();
      if (v === '') return meta.nullable ? null : null;
      const n = Number(v);
      return Number.isFinite(n) ? n : v;
    }
    if (kind === 'json') {
      try { return JSON.parse(input.value); } catch { return input.value; }
    }
    return input.value;
  }

  function changes() {
    const g = config?.global || {};
    const out = {};
    for (const key of inputs.keys()) {
      const v = read(key);
      if (JSON.stringify(v) !== JSON.stringify(g[key] ?? null)) out[key] = v;
    }
    return out;
  }

  function markDirty() {
    const n = Object.keys(changes()).length;
    setText(dirty, n ? `${n} unsaved change${n === 1 ? '' : 's'}` : '');
    for (const [key, f] of inputs) f.wrap.classList.toggle('changed', JSON.stringify(read(key)) !== JSON.stringify((config?.global || {})[key] ?? null));
  }

  function clearErrors() {
    formErrors.hidden = true;
    clear(formErrors);
    for (const f of inputs.values()) {
      setText(f.err, '');
      f.wrap.classList.remove('invalid');
      f.input.removeAttribute('aria-invalid');
    }
  }

  function showErrors(err) {
    clearErrors();
    const loose = [];
    let first = null;
    for (const e of err.errors || []) {
      const f = inputs.get(fieldOf(e.location));
      if (f) {
        setText(f.err, f.err.textContent ? `${f.err.textContent}; ${e.message}` : e.message);
        f.wrap.classList.add('invalid');
        f.input.setAttribute('aria-invalid', 'true');
        first ??= f.input;
      } else loose.push(`${e.location ? e.location + ': ' : ''}${e.message}`);
    }
    if (loose.length || !(err.errors || []).length) {
      formErrors.hidden = false;
      fill(formErrors, h('strong', null, err.title || 'The settings were refused'), err.detail && err.detail !== err.title ? h('p', null, err.detail) : null,
        loose.length ? h('ul', null, loose.map(l => h('li', null, l))) : null);
    }
    (first || formErrors).scrollIntoView({ block: 'center', behavior: 'smooth' });
    first?.focus({ preventScroll: true });
  }

  function renderGlobal() {
    inputs.clear();
    clearErrors();
    const g = config?.global || {};
    const byGroup = new Map(GROUPS.map(n => [n, []]));
    // Known fields in the order of META, then the others as the API sent them.
    const keys = [...Object.keys(META).filter(k => k in g), ...Object.keys(g).filter(k => !(k in META))];
    for (const key of keys) byGroup.get((META[key] || {}).group || 'Other').push(control(key, g[key]));
    fill(groups, [...byGroup].filter(([, items]) => items.length).map(([name, items]) =>
      h('fieldset', { class: `group ${name.startsWith('Legacy') ? 'legacy' : ''}` }, h('legend', null, name), h('div', { class: 'field-grid' }, items))));
    setText(dirty, '');
  }

  form.addEventListener('submit', async e => {
    e.preventDefault();
    const patch = changes();
    if (!Object.keys(patch).length) return toast('ok', 'Nothing to save');
    await busy(saveBtn, async () => {
      try {
        const next = await api('/api/config/global', { method: 'PATCH', body: patch });
        if (!alive) return;
        if (next && next.global) config = next;
        else config = await api('/api/config');
        renderGlobal();
        renderRuns();
        renderKeys();
        toast('ok', 'Settings saved', Object.keys(patch).map(k => `${k} = ${JSON.stringify(patch[k])}`));
      } catch (err) {
        if (!alive) return;
        if (err instanceof ApiError && (err.status === 422 || err.status === 400)) {
          showErrors(err);
          toastError('The settings were not saved', err);
        }
        else toastError('Saving the settings failed', err);
      }
    });
  });

  // -------- runs matrix

  const bAnn = selectEl({ 'aria-label': 'annotator' }, [['', 'All annotators']], '');
  const bDom = selectEl({ 'aria-label': 'domain' }, [['', 'All domains'], ...DOMAINS], '');
  const bTarget = h('input', { type: 'number', min: 0, step: 1, class: 'num', placeholder: 'target', 'aria-label': 'target count' });

  async function patchRuns(body, what, onFail) {
    try {
      const next = await api('/api/config/runs', { method: 'PATCH', body });
      if (!alive) return;
      if (next && next.annotators) config = next;
      else config = await api('/api/config');
      renderRuns();
      toast('ok', `Saved · ${what}`);
    } catch (err) {
      onFail?.();
      if (alive) toastError(`Saving ${what} failed`, err);
    }
  }

  function renderRuns() {
    const anns = Object.keys(config?.annotators || {}).sort(annotatorSort);
    if (!anns.length) return fill(runsBox, empty('No annotators in the config.'));
    const cur = bAnn.value;
    fill(bAnn, h('option', { value: '' }, 'All annotators'), anns.map(a => h('option', { value: a }, `Annotator ${a}`)));
    bAnn.value = anns.includes(cur) ? cur : '';
    const table = h('table', { class: 'table run-config', id: 'run-config' },
      h('thead', null, h('tr', null, h('th', null, 'Annotator'), DOMAINS.map(d => h('th', null, d)))),
      h('tbody', null, anns.map(a => {
        const doms = annotatorDomains(config.annotators[a]);
        return h('tr', null, h('th', { scope: 'row' }, `#${a}`), DOMAINS.map(d => {
          const s = doms[d] || {};
          const en = h('input', { type: 'checkbox', checked: Boolean(s.enabled), 'aria-label': `enable ${a} ${d}`, 'data-enable': `${a}/${d}` });
          const tg = h('input', { type: 'number', min: 0, step: 1, class: 'num', value: s.target_count ?? '', 'aria-label': `target ${a} ${d}`, 'data-target': `${a}/${d}` });
          en.addEventListener('change', () => patchRuns({ annotator: a, domain: d, enabled: en.checked }, `${a}/${d} ${en.checked ? 'enabled' : 'disabled'}`, () => { en.checked = !en.checked; }));
          tg.addEventListener('change', () => {
            const n = Number(tg.value);
            if (tg.value === '' || !Number.isInteger(n) || n < 0) {
              toast('warn', 'The target is a whole number, 0 or more');
              tg.value = s.target_count ?? '';
              return;
            }
            patchRuns({ annotator: a, domain: d, target_count: n }, `${a}/${d} target ${n}`, () => { tg.value = s.target_count ?? ''; });
          });
          return h('td', { class: s.enabled ? '' : 'off' }, h('div', { class: 'cell-edit' }, en, tg));
        }));
      })));
    const bulkSel = () => selection(bAnn.value, bDom.value);
    fill(runsBox,
      h('div', { class: 'table-wrap' }, table),
      h('div', { class: 'row wrap bulk-config' },
        h('span', { class: 'muted' }, 'Apply to'), bAnn, bDom,
        h('button', { type: 'button', class: 'btn small', onclick: () => patchRuns({ ...bulkSel(), enabled: true }, `enable ${describeSelection(bulkSel())}`) }, 'Enable'),
        h('button', { type: 'button', class: 'btn small', onclick: () => patchRuns({ ...bulkSel(), enabled: false }, `disable ${describeSelection(bulkSel())}`) }, 'Disable'),
        bTarget,
        h('button', { type: 'button', class: 'btn small', onclick: () => {
          const n = Number(bTarget.value);
          if (bTarget.value === '' || !Number.isInteger(n) || n < 0) return toast('warn', 'The target is a whole number, 0 or more');
          patchRuns({ ...bulkSel(), target_count: n }, `target ${n} for ${describeSelection(bulkSel())}`);
        } }, 'Set target')));
  }

  // -------- keys

  function renderKeys() {
    const anns = Object.entries(config?.annotators || {}).sort((x, y) => annotatorSort(x[0], y[0]));
    if (!anns.length) return fill(keysBox, empty('No annotators in the config.'));
    const g = config?.global || {};
    fill(keysBox, h('div', { class: 'keys' }, anns.map(([id, a]) => {
      const keyIn = h('input', { type: 'password', class: 'key-input', autocomplete: 'new-password', placeholder: a.key ? 'new key' : 'paste a key', 'aria-label': `API key of annotator ${id}`, spellcheck: 'false' });
      const masked = h('span', { class: `mono key-mask ${a.key ? '' : 'muted'}`, title: a.key_from_env ? `From the environment variable MHA_API_KEY_${id}, which overrides the keys file` : '' }, a.key || 'not set');
      const result = h('span', { class: 'key-test' });
      const saveB = h('button', { type: 'submit', class: 'btn small primary', 'data-key': 'save' }, 'Save key');
      const form = h('form', { class: 'inline-form', autocomplete: 'off' }, keyIn, saveB);
      form.addEventListener('submit', async e => {
        e.preventDefault();
        const key = keyIn.value.trim();
        if (!key) return toast('warn', 'Paste a key first');
        await busy(saveB, async () => {
          try {
            const res = await api(`/api/keys/${encodeURIComponent(id)}`, { method: 'PUT', body: { key } });
            keyIn.value = '';
            a.key = res?.key || '****';
            setText(masked, a.key);
            masked.classList.remove('muted');
            removeB.hidden = false;
            toast('ok', `Key of annotator ${id} saved`, [a.key]);
          } catch (err) {
            toastError(`Saving the key of annotator ${id} failed`, err);
          }
        });
      });
      const removeB = h('button', { type: 'button', class: 'btn small danger-outline', 'data-key': 'remove', hidden: !a.key, onclick: async e => {
        if (!await confirmDialog({ title: `Remove the key of annotator ${id}?`, message: 'Its runs fail on their next call until a key is set again.', confirmLabel: 'Remove key', danger: true })) return;
        await busy(e.currentTarget, async () => {
          try {
            await api(`/api/keys/${encodeURIComponent(id)}`, { method: 'DELETE' });
            a.key = '';
            setText(masked, 'not set');
            masked.classList.add('muted');
            removeB.hidden = true;
            toast('ok', `Key of annotator ${id} removed`);
          } catch (err) {
            toastError('Removing the key failed', err);
          }
        });
      } }, icon('trash', 14), 'Remove');
      const testB = h('button', { type: 'button', class: 'btn small', 'data-key': 'test', title: 'One real call to the provider', onclick: async e => {
        fill(result, spinner());
        await busy(e.currentTarget, async () => {
          try {
            const r = await api(`/api/keys/${encodeURIComponent(id)}/test`, { method: 'POST' });
            fill(result, h('span', { class: `chip ${r?.ok ? 'ok' : 'danger'}`, 'data-class': r?.class || '' }, r?.class || (r?.ok ? 'ok' : 'failed')),
              r?.verdict ? h('span', { class: 'small' }, ` ${r.verdict}`) : null,
              r?.latency_ms ? h('span', { class: 'muted small' }, ` ${r.latency_ms} ms`) : null,
              r?.detail ? h('span', { class: 'small key-detail', title: r.detail }, ` ${r.detail}`) : null);
          } catch (err) {
            fill(result, h('span', { class: 'chip danger' }, 'error'), h('span', { class: 'small' }, ` ${err.message}`));
          }
        });
      } }, 'Test');
      return h('div', { class: 'key-row', 'data-key-annotator': id },
        h('div', { class: 'key-who' }, h('strong', null, `Annotator ${id}`),
          h('span', { class: 'muted small' }, [a.provider || g.provider, a.model || a.model_name || g.model_name].filter(Boolean).join(' · ')),
          h('span', { class: 'muted small' }, a.quota_pool ? `pool ${a.quota_pool}` : '',
            a.requests_per_minute ? ` · ${a.requests_per_minute}/min, ${a.requests_per_day}/day` : '', a.base_url ? ` · ${a.base_url}` : '')),
        h('div', { class: 'key-current' }, h('span', { class: 'muted small' }, 'Key '), masked, a.key_from_env ? h('span', { class: 'chip muted tiny' }, 'env') : null),
        form,
        h('div', { class: 'row' }, testB, removeB),
        result);
    })));
  }

  (async () => {
    try {
      config = await api('/api/config');
      if (!alive) return;
      renderGlobal();
      renderRuns();
      renderKeys();
    } catch (err) {
      if (!alive) return;
      const msg = h('p', { class: 'error-text' }, `Could not load the config: ${err.message}`);
      fill(groups, msg);
      fill(runsBox, empty('—'));
      fill(keysBox, empty('—'));
    }
  })();

  return () => { alive = false; };
}

// ---------------------------------------------------------------------------------------------
// Prompts

export function mountPrompts(root, { params }) {
  let alive = true;
  let domain = DOMAINS.includes(params.get('domain')) ? params.get('domain') : DOMAINS[0];
  // '' is the shared template, which every annotator without its own version uses.
  let annotator = params.has('annotator') ? params.get('annotator') : null;
  let data = null; // GET /api/prompts/{domain}
  let viewing = null; // the version shown

  const pDomain = selectEl({ id: 'p-domain', 'aria-label': 'domain' }, DOMAINS, domain);
  const pAnn = h('select', { id: 'p-annotator', 'aria-label': 'annotator' });
  const versionsBox = h('div', null, spinner());
  const activeInfo = h('div', { class: 'active-info' });
  const viewer = h('div', { class: 'viewer' }, empty('Pick a version to read it.'));
  const overview = h('div', { class: 'table-wrap' });

  const nameIn = h('input', { type: 'text', id: 'prompt-name', required: true, placeholder: 'short_name', spellcheck: 'false' });
  const descIn = h('input', { type: 'text', id: 'prompt-description', placeholder: 'what changed and why' });
  const tmplIn = h('textarea', { id: 'prompt-template', rows: 16, class: 'mono', required: true, spellcheck: 'false', placeholder: 'The prompt. {text} is replaced by the sample.' });
  const editErr = h('div', { class: 'problem', hidden: true });
  const saveB = h('button', { type: 'submit', class: 'btn primary' }, 'Save as new version');
  const editor = h('form', { class: 'stack', id: 'prompt-editor' },
    h('div', { class: 'row wrap' }, field('Name', nameIn), field('Description', descIn)),
    field('Template', tmplIn, 'Must contain {text}, which is replaced by the sample text.'),
    editErr, h('div', { class: 'row' }, saveB));

  const dFrom = h('select', { id: 'diff-from', 'aria-label': 'from' });
  const dTo = h('select', { id: 'diff-to', 'aria-label': 'to' });
  const diffOut = h('div', { class: 'diff-box' });
  const diffB = h('button', { type: 'button', class: 'btn', id: 'diff-run' }, 'Compare');

  root.appendChild(h('section', { class: 'page prompts-page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Prompts'), h('p', { class: 'muted' }, 'Numbered versions per annotator and domain; one is active. Every annotation records the hash of the prompt it used.')),
    h('div', { class: 'toolbar' }, h('div', { class: 'row wrap' }, field('Domain', pDomain), field('Annotator', pAnn)), activeInfo),
    h('div', { class: 'grid-2' },
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Versions'), versionsBox),
      h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Version'), viewer)),
    h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Diff'),
      h('div', { class: 'row wrap' }, field('From', dFrom), field('To', dTo), diffB), diffOut),
    h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'New version'), editor),
    h('div', { class: 'card' }, h('div', { class: 'card-title' }, 'Active prompts'), overview)));

  const qs = () => query({ annotator });
  const base = () => `/api/prompts/${encodeURIComponent(domain)}`;

  function syncHash() {
    history.replaceState(null, '', `#/prompts${query({ domain, annotator })}`);
  }

  async function annotators() {
    const set = new Set([...store.runs.values()].map(r => r.annotator));
    if (!set.size) {
      try {
        const c = await api('/api/config');
        for (const a of Object.keys(c?.annotators || {})) set.add(a);
      } catch { /* fall back to none */ }
    }
    if (annotator) set.add(annotator);
    set.delete('');
    return [...set].sort(annotatorSort);
  }

  async function load() {
    syncHash();
    fill(versionsBox, spinner());
    clear(activeInfo);
    try {
      data = await api(`${base()}${qs()}`);
    } catch (err) {
      if (!alive) return;
      data = null;
      fill(versionsBox, h('p', { class: 'error-text' }, `Could not load the versions: ${err.message}`));
      return;
    }
    if (!alive) return;
    renderVersions();
    renderDiffOptions();
    const act = data?.active || {};
    const actName = act.version || act.file || act.source || '—';
    fill(activeInfo, h('span', { class: 'muted' }, 'Active: '), h('strong', null, actName),
      act.source && act.source !== actName ? h('span', { class: 'chip muted' }, act.source) : null,
      act.hash ? h('span', { class: 'mono muted small' }, act.hash) : null);
    // The editor starts from the active template, unless a person has typed in it.
    if (!tmplIn.dataset.edited && act.template) tmplIn.value = act.template;
    if (act.template) showTemplate({ name: 'active', file: act.version || act.file || act.source, template: act.template, hash: act.hash, active: true, source: act.source });
    else fill(viewer, empty('Pick a version to read it.'));
  }

  function renderVersions() {
    const vs = (data?.versions || []).slice().sort((a, b) => (b.number ?? 0) - (a.number ?? 0));
    if (!vs.length) return fill(versionsBox, empty('No saved versions: the run uses the shared or built-in prompt. Save a new version below.'));
    fill(versionsBox, h('div', { class: 'table-wrap' }, h('table', { class: 'table versions', id: 'prompt-versions' },
      h('thead', null, h('tr', null, h('th', null, '#'), h('th', null, 'Name'), h('th', null, 'Created'), h('th', null, 'Hash'), h('th', null, ''))),
      h('tbody', null, vs.map(v => h('tr', { 'data-file': v.file, class: v.active ? 'active-row' : '' },
        h('td', null, `v${v.number ?? '?'}`),
        h('td', null, h('div', null, v.name || v.file, v.active ? h('span', { class: 'chip ok' }, 'active') : null), v.description ? h('div', { class: 'muted small' }, v.description) : null),
        h('td', { class: 'nowrap', title: fmtTime(v.created_at) }, fmtRel(v.created_at)),
        h('td', { class: 'mono small muted' }, (v.hash || '').replace(/^sha256:/, '').slice(0, 10)),
        h('td', { class: 'nowrap' },
          h('button', { type: 'button', class: 'btn small ghost', 'data-prompt-action': 'view', onclick: () => view(v.file) }, 'View'),
          h('button', { type: 'button', class: 'btn small', 'data-prompt-action': 'activate', disabled: Boolean(v.active), onclick: e => activate(v.file, e.currentTarget) }, 'Activate'),
          h('button', { type: 'button', class: 'icon-btn danger-text', 'data-prompt-action': 'delete', disabled: Boolean(v.active), title: v.active ? 'The active version cannot be deleted' : 'Delete this version', 'aria-label': 'delete', onclick: e => remove(v, e.currentTarget) }, icon('trash', 14)))))))));
  }

  function renderDiffOptions() {
    const vs = (data?.versions || []).slice().sort((a, b) => (b.number ?? 0) - (a.number ?? 0));
    const opts = [['builtin', 'built-in'], ['active', 'active'], ...vs.map(v => [v.file, `v${v.number ?? '?'} ${v.name || v.file}`])];
    const f = dFrom.value, t = dTo.value;
    fill(dFrom, opts.map(([v, l]) => h('option', { value: v }, l)));
    fill(dTo, opts.map(([v, l]) => h('option', { value: v }, l)));
    dFrom.value = opts.some(o => o[0] === f) ? f : 'builtin';
    dTo.value = opts.some(o => o[0] === t) ? t : 'active';
  }

  function showTemplate(v) {
    viewing = v;
    fill(viewer,
      h('div', { class: 'row wrap' }, h('strong', null, v.name || v.file), v.active ? h('span', { class: 'chip ok' }, 'active') : null,
        v.source && v.source !== (v.name || v.file) ? h('span', { class: 'chip muted' }, v.source) : null, h('span', { class: 'grow' }),
        h('button', { type: 'button', class: 'btn small ghost', onclick: () => {
          tmplIn.value = v.template || '';
          tmplIn.dataset.edited = '1';
          descIn.value = v.description ? `based on ${v.name || v.file}: ${v.description}` : `based on ${v.name || v.file}`;
          editor.scrollIntoView({ behavior: 'smooth', block: 'start' });
          nameIn.focus({ preventScroll: true });
        } }, 'Edit as new version')),
      v.description ? h('p', { class: 'muted' }, v.description) : null,
      h('div', { class: 'muted small mono' }, [v.file, v.hash, v.created_at ? fmtTime(v.created_at) : ''].filter(Boolean).join(' · ')),
      h('pre', { class: 'template', id: 'prompt-view' }, v.template || ''));
  }

  async function view(file) {
    fill(viewer, spinner());
    try {
      const v = await api(`${base()}/versions/${encodeURIComponent(file)}${qs()}`);
      if (alive) showTemplate({ file, ...v });
    } catch (err) {
      if (alive) fill(viewer, h('p', { class: 'error-text' }, `Could not load ${file}: ${err.message}`));
    }
  }

  async function activate(file, btn) {
    await busy(btn, async () => {
      try {
        await api(`${base()}/versions/${encodeURIComponent(file)}/activate${qs()}`, { method: 'POST' });
        toast('ok', `${file} is active`, [`${annotator ? `annotator ${annotator}` : 'shared template'}, ${domain}. Runs use it from their next batch.`]);
        await load();
        loadOverview();
      } catch (err) {
        toastError('Activating failed', err);
      }
    });
  }

  async function remove(v, btn) {
    if (!await confirmDialog({ title: `Delete ${v.name || v.file}?`, message: 'The version file is removed. Annotations keep the hash of the prompt they used.', confirmLabel: 'Delete version', danger: true })) return;
    await busy(btn, async () => {
      try {
        await api(`${base()}/versions/${encodeURIComponent(v.file)}${qs()}`, { method: 'DELETE' });
        toast('ok', `${v.file} deleted`);
        if (viewing?.file === v.file) fill(viewer, empty('Pick a version to read it.'));
        await load();
      } catch (err) {
        toastError('Deleting failed', err);
      }
    });
  }

  editor.addEventListener('submit', async e => {
    e.preventDefault();
    editErr.hidden = true;
    const body = { name: nameIn.value.trim(), description: descIn.value.trim(), template: tmplIn.value };
    const problems = [];
    if (!body.name) problems.push('Give the version a name.');
    if (!body.template.includes('{text}')) problems.push('The template has no {text} placeholder.');
    if (problems.length) {
      editErr.hidden = false;
      fill(editErr, h('ul', null, problems.map(p => h('li', null, p))));
      return;
    }
    await busy(saveB, async () => {
      try {
        const v = await api(`${base()}${qs()}`, { method: 'POST', body });
        toast('ok', 'Version saved', [`${v?.file || body.name}. Activate it to use it.`]);
        nameIn.value = '';
        delete tmplIn.dataset.edited;
        await load();
        if (v?.file) view(v.file);
      } catch (err) {
        editErr.hidden = false;
        fill(editErr, h('strong', null, 'Not saved: '), err.message,
          err.errors?.length ? h('ul', null, err.errors.map(x => h('li', null, `${x.location ? x.location + ': ' : ''}${x.message}`))) : null);
      }
    });
  });

  diffB.addEventListener('click', async () => {
    await busy(diffB, async () => {
      fill(diffOut, spinner());
      try {
        const d = await api(`${base()}/diff${query({ annotator, from: dFrom.value, to: dTo.value })}`);
        if (!alive) return;
        const text = typeof d === 'string' ? d : d?.unified || '';
        if (!text.trim()) return fill(diffOut, empty('The two are identical.'));
        fill(diffOut, h('pre', { class: 'diff', id: 'prompt-diff' }, text.replace(/\n$/, '').split('\n').map(line => {
          let cls = 'ctx';
          if (line.startsWith('+++') || line.startsWith('---')) cls = 'meta';
          else if (line.startsWith('@@')) cls = 'hunk';
          else if (line.startsWith('+')) cls = 'add';
          else if (line.startsWith('-')) cls = 'del';
          return h('span', { class: `dl ${cls}` }, line || ' ');
        })));
      } catch (err) {
        if (alive) fill(diffOut, h('p', { class: 'error-text' }, `No diff: ${err.message}`));
      }
    });
  });

  async function loadOverview() {
    try {
      const res = await api('/api/prompts');
      if (!alive) return;
      const items = Array.isArray(res) ? res : res?.prompts || res?.items || res?.active || [];
      if (!Array.isArray(items) || !items.length) return fill(overview, empty('No prompt information.'));
      const anns = [...new Set(items.map(i => String(i.annotator)))].sort(annotatorSort);
      const get = (a, d) => items.find(i => String(i.annotator) === a && i.domain === d);
      fill(overview, h('table', { class: 'table prompt-overview' },
        h('thead', null, h('tr', null, h('th', null, 'Annotator'), DOMAINS.map(d => h('th', null, d)))),
        h('tbody', null, anns.map(a => h('tr', null, h('th', { scope: 'row' }, a === '' ? 'shared' : `#${a}`), DOMAINS.map(d => {
          const i = get(a, d);
          if (!i) return h('td', { class: 'muted' }, '—');
          const name = i.version || i.file || i.source || 'active';
          return h('td', null, h('button', { type: 'button', class: 'link-btn', title: i.hash || '', onclick: () => {
            pAnn.value = a;
            pDomain.value = d;
            annotator = a;
            domain = d;
            load();
            window.scrollTo({ top: 0, behavior: 'smooth' });
          } }, name), i.source && i.source !== name ? h('span', { class: 'chip muted tiny' }, i.source) : null,
          i.error ? h('span', { class: 'chip danger tiny', title: i.error }, 'unusable') : null);
        }))))));
    } catch (err) {
      if (alive) fill(overview, h('p', { class: 'muted' }, `No overview: ${err.message}`));
    }
  }

  tmplIn.addEventListener('input', () => { tmplIn.dataset.edited = '1'; });
  pDomain.addEventListener('change', () => { domain = pDomain.value; load(); });
  pAnn.addEventListener('change', () => { annotator = pAnn.value; load(); });

  (async () => {
    const anns = await annotators();
    if (!alive) return;
    if (annotator === null) annotator = anns[0] || '';
    fill(pAnn, h('option', { value: '' }, 'Shared (every annotator)'), anns.map(a => h('option', { value: a }, `Annotator ${a}`)));
    pAnn.value = annotator;
    load();
    loadOverview();
  })();

  return () => { alive = false; };
}
