// Renders the OpenAPI document the api derives from its Go types, so the reference needs
// nothing from the network but the api itself.
import { h } from './lib.js';

const root = document.getElementById('docs');

function ref(doc, schema) {
  if (schema && schema.$ref) return doc.components.schemas[schema.$ref.split('/').pop()] || {};
  return schema || {};
}

// shape writes a schema as an indented JSON-like outline: field names, types, enums, limits.
function shape(doc, schema, depth = 0, seen = new Set()) {
  const pad = '  '.repeat(depth);
  if (schema && schema.$ref) {
    if (seen.has(schema.$ref)) return schema.$ref.split('/').pop();
    seen = new Set(seen).add(schema.$ref);
  }
  const s = ref(doc, schema);
  const type = Array.isArray(s.type) ? s.type.filter(t => t !== 'null').join('|') : s.type;
  if (type === 'object' || s.properties) {
    const props = Object.entries(s.properties || {});
    if (!props.length) return 'object';
    const req = new Set(s.required || []);
    const lines = props.map(([name, p]) => `${pad}  ${name}${req.has(name) ? '' : '?'}: ${shape(doc, p, depth + 1, seen)}${note(ref(doc, p))}`);
    return `{\n${lines.join('\n')}\n${pad}}`;
  }
  if (type === 'array') return `[${shape(doc, s.items, depth, seen)}]`;
  return type || 'any';
}

function note(s) {
  const bits = [];
  if (s.enum) bits.push('one of ' + s.enum.filter(v => v !== '').join(', '));
  if (s.minimum !== undefined) bits.push('≥ ' + s.minimum);
  if (s.maximum !== undefined) bits.push('≤ ' + s.maximum);
  if (s.format) bits.push(s.format);
  if (s.description) bits.push(s.description);
  return bits.length ? '   // ' + bits.join('; ') : '';
}

function operation(doc, path, method, op) {
  const params = (op.parameters || []).map(p => h('tr', {},
    h('td', {}, h('code', {}, p.name)), h('td', {}, p.in), h('td', {}, p.required ? 'yes' : ''),
    h('td', {}, (ref(doc, p.schema).type || '') + note(ref(doc, p.schema)).replace('   // ', ' · ')),
    h('td', {}, p.description || '')));
  const parts = [];
  if (op.description) parts.push(h('p', {}, op.description));
  if (params.length) {
    parts.push(h('h4', {}, 'Parameters'), h('table', {},
      h('thead', {}, h('tr', {}, ...['name', 'in', 'required', 'type', 'about'].map(t => h('th', {}, t)))),
      h('tbody', {}, ...params)));
  }
  const body = op.requestBody?.content?.['application/json']?.schema;
  if (body) parts.push(h('h4', {}, 'Request body (JSON)'), h('div', { class: 'schema' }, shape(doc, body)));
  for (const [code, resp] of Object.entries(op.responses || {})) {
    const content = resp.content || {};
    const json = content['application/json']?.schema;
    parts.push(h('h4', {}, `${code} ${resp.description || ''}`));
    if (json) parts.push(h('div', { class: 'schema' }, shape(doc, json)));
    else if (Object.keys(content).length) parts.push(h('p', {}, Object.keys(content).join(', ')));
  }
  return h('details', { class: 'op', id: op.operationId },
    h('summary', {}, h('span', { class: `method m-${method}` }, method.toUpperCase()), h('span', { class: 'path' }, path),
      h('span', { class: 'summary' }, op.summary || '')),
    h('div', { class: 'body' }, ...parts));
}

async function main() {
  const res = await fetch('/api/openapi.json', { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`openapi.json: ${res.status}`);
  const doc = await res.json();
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ['other'])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  root.replaceChildren(
    h('h1', {}, doc.info.title), h('p', { class: 'intro' }, doc.info.description || ''),
    h('p', { class: 'intro' }, 'Errors are RFC 9457 problem details: title, status, detail and errors[] with one location and message per bad field.'),
    h('nav', { class: 'toc' }, ...[...byTag.keys()].map(t => h('a', { href: '#tag-' + t }, t))),
    ...[...byTag.entries()].flatMap(([tag, ops]) => [h('h2', { id: 'tag-' + tag }, tag), ...ops]));
}

main().catch(err => root.replaceChildren(h('p', {}, 'The reference could not be loaded: ' + err.message)));
