// The status page: asks /api/... once a second and redraws. Everything a peer or a script chose (room names,
// caller ids, error texts) reaches the page as text nodes or attribute values, never as HTML.
'use strict';

const REFRESH_MS = 1000;
const lists = {
  files: { offset: 0, limit: 100 },
  conns: { offset: 0, limit: 100, room: '' },
  rooms: { offset: 0, limit: 100 },
  apps: { offset: 0, limit: 100 },
  calls: { offset: 0, limit: 100 },
  channels: { offset: 0, limit: 100 },
};
const PAGE_SIZES = [25, 100, 500, 1000];

// el builds an element; strings and numbers become text nodes.
function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function $(id) { return document.getElementById(id); }
function setText(id, text) { $(id).textContent = text; }

function fmtInt(n) { return Number(n || 0).toLocaleString('en-US'); }
function plural(n, one, many) { return fmtInt(n) + ' ' + (Number(n) === 1 ? one : many); }

function fmtDur(s) {
  s = Math.max(0, Math.floor(s || 0));
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return d + 'd ' + h + 'h';
  if (h) return h + 'h ' + m + 'm';
  if (m) return m + 'm ' + sec + 's';
  return sec + 's';
}

function fmtBytes(n) {
  n = Number(n || 0);
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + ' MiB';
  return (n / (1 << 30)).toFixed(2) + ' GiB';
}

function fmtTime(iso) {
  if (!iso || iso.startsWith('0001-')) return '';
  const t = new Date(iso);
  return isNaN(t) ? '' : t.toLocaleTimeString('en-GB');
}

function badge(state) { return el('span', { class: 'state ' + String(state || '').replace(/[^a-z]/g, '') }, state || '?'); }
function num(v) { return el('td', { class: 'num' }, v); }

// fill replaces a section's table body with rows, or a placeholder row when there are none.
function fill(tbody, rows, cols, empty) {
  if (rows.length === 0) rows = [el('tr', {}, el('td', { class: 'empty', colspan: cols }, empty))];
  tbody.replaceChildren(...rows);
}

function body(sectionId, tableId) {
  const root = tableId ? $(tableId) : $(sectionId).querySelector('table');
  return root.querySelector('tbody');
}

async function getJSON(path) {
  // location.origin, not a relative URL: a page opened as http://user:token@host/ has credentials in its
  // base URL, which fetch refuses; the browser sends the credentials it was given for this origin anyway.
  const r = await fetch(location.origin + path, { cache: 'no-store', credentials: 'same-origin' });
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(path + ': ' + ((data && data.error) || r.status + ' ' + r.statusText));
  return data;
}

function query(name, extra) {
  const l = lists[name];
  const q = new URLSearchParams({ offset: l.offset, limit: l.limit });
  for (const [k, v] of Object.entries(extra || {})) if (v) q.set(k, v);
  return q.toString();
}

// pager draws "1–100 of 10,000" with previous/next buttons and a page size.
function pager(name, page) {
  const nav = document.querySelector('nav.pager[data-list="' + name + '"]');
  if (!nav) return;
  const l = lists[name];
  const shown = page.items.length;
  const from = shown ? page.offset + 1 : 0;
  const to = page.offset + shown;
  const size = el('select', { 'aria-label': 'rows per page' });
  for (const n of PAGE_SIZES) {
    const o = el('option', { value: n }, n + ' per page');
    if (n === l.limit) o.selected = true;
    size.append(o);
  }
  size.addEventListener('change', () => { l.limit = Number(size.value); l.offset = 0; refreshNow(); });
  const prev = el('button', { type: 'button', onclick: () => { l.offset = Math.max(0, l.offset - l.limit); refreshNow(); } }, '‹ previous');
  prev.disabled = page.offset === 0;
  const next = el('button', { type: 'button', onclick: () => { l.offset += l.limit; refreshNow(); } }, 'next ›');
  next.disabled = page.offset + l.limit >= page.total;
  const label = el('span', { class: 'range' }, from + '–' + to + ' of ' + fmtInt(page.total));
  nav.replaceChildren(prev, label, next, size, page.truncated ? el('span', { class: 'err' }, 'list cut at the response size bound (admin.status_max_bytes)') : '');
  // A list that shrank under the current page goes back to its last page.
  if (page.total > 0 && page.offset >= page.total) { l.offset = Math.floor((page.total - 1) / l.limit) * l.limit; refreshNow(); }
}

function setDisabled(sectionId, disabled, what) {
  const s = $(sectionId);
  s.classList.toggle('disabled', disabled);
  if (disabled) {
    for (const tb of s.querySelectorAll('tbody')) fill(tb, [], tb.parentElement.querySelectorAll('th').length, what);
    for (const nav of s.querySelectorAll('nav.pager')) nav.replaceChildren();
  }
}

function renderStatus(st) {
  setText('version', st.version + (st.commit ? ' (' + st.commit.slice(0, 12) + ')' : '') + ', ' + st.go);
  setText('uptime', fmtDur(st.uptime_s));
  setText('generation', 'generation ' + st.generation);
  setText('config', st.config_file || 'built-in defaults');
  setText('node', st.node ? st.node + ' in cluster ' + st.cluster : 'single engine (no cluster)');
  const t = st.totals;
  const live = { socket: plural(t.socket_connections, 'connection', 'connections') + ', ' + plural(t.rooms, 'room', 'rooms'),
    relay: plural(t.relay_applications, 'application', 'applications') + ', centers ' + t.centers_up + ' up / ' + t.centers_down + ' down / ' + t.centers_stalled + ' stalled',
    esl: plural(t.calls, 'call', 'calls'), channels: t.channels_up + ' of ' + t.channels + ' up', admin: 'this page' };
  fill(body('parts'), st.parts.map(p => el('tr', {}, el('td', {}, p.name), el('td', { class: 'mono' }, p.addrs.join(', ') || '—'),
    el('td', {}, live[p.name] || ''))), 3, 'no parts');
  const on = new Set(st.parts.map(p => p.name));
  return on;
}

function renderScripts(sc) {
  setText('scripts-generation', 'generation ' + sc.generation + (sc.loaded_at ? ', loaded ' + fmtTime(sc.loaded_at) : '') + ', ' + plural(sc.files.total, 'file', 'files') + ' in ' + sc.dir);
  const lr = sc.last_reload;
  const p = $('reload');
  p.replaceChildren('last load: ', badge(lr.ok ? 'ok' : 'failed'), ' at ' + fmtTime(lr.at),
    lr.ok ? '' : el('span', { class: 'err' }, ' — generation ' + lr.generation + ' keeps serving; ' + lr.errors_total + ' error' + (lr.errors_total === 1 ? '' : 's') + ':'));
  $('reload-errors').replaceChildren(...lr.errors.map(e => el('li', {}, e.text)));
  fill(body('scripts'), sc.files.items.map(f => el('tr', {},
    el('td', { class: 'mono' }, f.file, f.module ? el('span', { class: 'muted' }, ' (module)') : ''),
    el('td', {}, f.handlers.length ? f.handlers.map(h => h.kind + ' ' + h.name).join(', ') : el('span', { class: 'muted' }, '—')))), 2, 'no scripts');
  pager('files', sc.files);
}

function showRoom(room) {
  lists.conns.room = room;
  lists.conns.offset = 0;
  refreshNow();
}

function renderConns(page) {
  const room = lists.conns.room;
  setText('socket-total', room ? fmtInt(page.total) + ' in room ' + JSON.stringify(room) : fmtInt(page.total));
  const f = $('room-filter');
  f.hidden = !room;
  if (room) f.replaceChildren('members of ', el('strong', {}, room), ' ', el('button', { type: 'button', onclick: () => showRoom('') }, 'show all connections'));
  fill(body('socket'), page.items.map(c => el('tr', { 'data-id': c.id },
    el('td', { class: 'mono id' }, c.id),
    el('td', { class: 'mono' }, c.remote),
    el('td', {}, c.rooms.join(', ') + (c.rooms_count > c.rooms.length ? ' (+' + (c.rooms_count - c.rooms.length) + ' more)' : '')),
    num(fmtDur(c.age_s)), num(c.pending_actions), num(fmtInt(c.actions)), num(fmtInt(c.requests)))), 7,
  room ? 'nobody in this room' : 'no connections');
  pager('conns', page);
}

function renderRooms(page) {
  setText('rooms-total', fmtInt(page.total));
  fill(body('rooms'), page.items.map(r => el('tr', {},
    el('td', {}, el('button', { type: 'button', title: 'list the members', onclick: () => showRoom(r.name) }, r.name)),
    num(fmtInt(r.members)),
    el('td', { class: 'mono' }, r.first_members.map(m => m.id.slice(0, 8)).join(' ') + (r.members > r.first_members.length ? ' …' : '')))), 3, 'no rooms');
  pager('rooms', page);
}

function renderRelay(rl) {
  const t = { up: 0, down: 0, stalled: 0 };
  for (const c of rl.centers) t[c.state] = (t[c.state] || 0) + 1;
  setText('centers-total', rl.centers.length + ': ' + t.up + ' up, ' + t.down + ' down, ' + t.stalled + ' stalled');
  setText('relay-facts', 'relay ' + rl.id + ', ' + (rl.guaranteed ? 'guaranteed (' + (rl.journal === 'jetstream' ? 'JetStream journal ' + fmtBytes(rl.journal_bytes) + ', this node ' + rl.role :
    'journal ' + fmtBytes(rl.journal_bytes)) + ')' : 'not guaranteed') +
    ', ' + plural(rl.rules, 'route rule', 'route rules') + ', ' + plural(rl.connections, 'application connection', 'application connections'));
  fill(body('relay', 'centers'), rl.centers.map(c => el('tr', { 'data-center': c.name },
    el('td', {}, c.name), el('td', { class: 'mono' }, c.addr), el('td', {}, badge(c.state), c.state === 'stalled' ? ' ' + fmtDur(c.idle_s) : ''),
    num(fmtInt(c.queued) + (c.queued_bytes ? ' (' + fmtBytes(c.queued_bytes) + ')' : '')), num(fmtInt(c.sent)), num(fmtInt(c.acked)),
    num(fmtInt(c.rejected)), num(fmtInt(c.dropped)),
    el('td', { class: 'err' }, c.last_error ? c.last_error + ' (' + fmtTime(c.last_error_at) + ')' : ''))), 9, 'no centers configured');
  const apps = rl.applications;
  setText('apps-total', fmtInt(apps.total));
  fill(body('relay', 'apps'), apps.items.map(a => el('tr', {}, el('td', {}, a.login), el('td', { class: 'mono' }, a.remote), num(fmtBytes(a.queued_bytes)))), 3, 'no applications logged in');
  pager('apps', apps);
}

function renderCalls(page) {
  setText('calls-total', fmtInt(page.total) + ' in flight');
  fill(body('calls'), page.items.map(c => el('tr', { 'data-uuid': c.uuid },
    el('td', { class: 'mono id' }, c.uuid), el('td', {}, c.flow), el('td', {}, c.state + (c.answered ? ', answered' : '')),
    num(fmtDur(c.duration_s)), el('td', {}, c.caller + (c.caller_name && c.caller_name !== c.caller ? ' (' + c.caller_name + ')' : '')),
    el('td', {}, c.destination), el('td', { class: 'mono' }, c.remote))), 7, 'no calls');
  pager('calls', page);
}

function renderChannels(page) {
  setText('channels-total', fmtInt(page.total));
  fill(body('channels'), page.items.map(c => el('tr', { 'data-channel': c.name },
    el('td', {}, c.name), el('td', {}, c.protocol), el('td', { class: 'mono' }, c.addr), el('td', {}, badge(c.state)),
    num(fmtInt(c.buffered_messages) + ' (' + fmtBytes(c.buffered_bytes) + ')'), num(fmtInt(c.awaiting_reply)),
    num(fmtInt(c.received_messages) + ' (' + fmtBytes(c.received_bytes) + ')'),
    el('td', { class: 'err' }, c.last_error))), 8, 'no channels configured');
  pager('channels', page);
}

async function refresh() {
  const on = renderStatus(await getJSON('/api/status'));
  renderScripts(await getJSON('/api/scripts?' + query('files')));
  setDisabled('socket', !on.has('socket'), 'the socket part is disabled');
  setDisabled('rooms', !on.has('socket'), 'the socket part is disabled');
  if (on.has('socket')) {
    renderConns(await getJSON('/api/socket/connections?' + query('conns', { room: lists.conns.room })));
    renderRooms(await getJSON('/api/socket/rooms?' + query('rooms')));
  }
  setDisabled('relay', !on.has('relay'), 'the relay is disabled');
  if (on.has('relay')) renderRelay(await getJSON('/api/relay?' + query('apps')));
  setDisabled('calls', !on.has('esl'), 'call control (esl) is disabled');
  if (on.has('esl')) renderCalls(await getJSON('/api/calls?' + query('calls')));
  setDisabled('channels', !on.has('channels'), 'no channel is configured');
  if (on.has('channels')) renderChannels(await getJSON('/api/channels?' + query('channels')));
}

let timer = null;
let running = false;
let again = false;

async function cycle() {
  clearTimeout(timer);
  if (running) { again = true; return; }
  running = true;
  const live = $('live');
  try {
    await refresh();
    $('error').hidden = true;
    live.className = 'live on';
    live.textContent = 'live, updated ' + new Date().toLocaleTimeString('en-GB');
  } catch (e) {
    const b = $('error');
    b.textContent = 'Cannot read the engine\'s state: ' + e.message + ' (retrying every second)';
    b.hidden = false;
    live.className = 'live off';
    live.textContent = 'not updating';
  } finally {
    running = false;
    if (again) { again = false; cycle(); } else timer = setTimeout(cycle, REFRESH_MS);
  }
}

function refreshNow() { cycle(); }

document.addEventListener('DOMContentLoaded', cycle);
