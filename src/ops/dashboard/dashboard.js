// The live dashboard page: polls the JSON API (src/ops/dashboard/routes.ts) and redraws. Plain DOM:
// every value from the server goes in as text (textContent / attributes), never as HTML.

/* global document, window, fetch, URLSearchParams */

import { barChart, lineChart } from './charts.js';
import { formatBytes, formatCount, formatMoney, formatRate, formatSeconds, formatTime, ordersLine } from './format.js';

const PIPELINE_EVERY_MS = 2000;
const REPORTS_EVERY_MS = 5000;
/** Points kept per chart series: 90 polls of 2 s = 3 minutes. */
const HISTORY = 90;

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  e.append(...children.filter((c) => c !== undefined && c !== null));
  return e;
}

async function getJson(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' } });
  const body = await res.json().catch(() => ({ message: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new Error(body.message ?? `${res.status} ${res.statusText}`);
  return body;
}

const state = {
  /** Per series name: [{ t, v }]. */
  rate: new Map(),
  lag: new Map(),
  freshness: new Map(),
  /** The previous poll's sink counters, for rates. */
  lastSinks: new Map(),
  slots: new Map(),
  customer: null,
  /** The notification panel's customer; null: the busiest. */
  notifCustomer: null,
  /** undefined: the server's default (top country); '' : orders without a customer. */
  country: undefined,
  exportTable: 'gold.daily_billing',
  /** Poller name → its last error, while it fails. */
  failures: new Map(),
};

function push(map, name, t, v) {
  const points = map.get(name) ?? [];
  points.push({ t, v });
  if (points.length > HISTORY) points.shift();
  map.set(name, points);
}

function setStatus() {
  const s = $('#status');
  if (state.failures.size) {
    s.dataset.state = 'error';
    s.textContent = `problem: ${[...state.failures].map(([name, message]) => `${name}: ${message}`).join('; ')}`;
  } else {
    s.dataset.state = 'live';
    s.textContent = `live · updated ${new Date().toLocaleTimeString('en-GB', { timeZone: 'UTC' })} UTC`;
  }
}

/** Run `fn` now and again `ms` after each run ends; a failure shows in the header and in `tile`. */
function every(ms, name, fn, tile) {
  const run = async () => {
    try {
      await fn();
      state.failures.delete(name);
    } catch (e) {
      state.failures.set(name, e.message);
      if (tile) showError(tile, e.message);
    }
    setStatus();
    window.setTimeout(run, ms);
  };
  void run();
}

function showError(tile, message) {
  const t = $(tile);
  t.dataset.state = 'error';
  let p = t.querySelector('.error');
  if (!p) {
    p = el('p', { class: 'error', role: 'alert' });
    t.querySelector('h3, h2').after(p);
  }
  p.textContent = message;
}

function clearError(tile) {
  $(tile).querySelector('.error')?.remove();
}

/** A tile whose gold table is not built yet shows the server's reason. */
function waiting(tile, body) {
  if (body.ready !== false) return false;
  const t = $(tile);
  t.dataset.state = 'waiting';
  clearError(tile);
  t.querySelector('.source').textContent = body.message;
  return true;
}

function sourcesLine(tile, sources) {
  $(tile).dataset.versions = sources.map((s) => `${s.table}@${s.version}`).join(' ');
  $(tile).querySelector('.source').textContent =
    'from ' + sources.map((s) => `${s.table} v${s.version}${s.committedAt ? ` (${formatTime(s.committedAt)})` : ''}`).join(', ');
}

function fact(label, value, field) {
  return el('div', { class: 'fact' }, el('span', { class: 'label' }, label), el('span', { class: 'value', 'data-field': field }, value));
}

function connectorItem(name, stateText, facts, error) {
  const cls = stateText === 'streaming' || stateText === 'running' ? 'ok' : stateText === 'failed' ? 'bad' : 'warn';
  return el(
    'li',
    { 'data-connector': name },
    el('div', { class: 'name' }, el('strong', {}, name), ' ', el('span', { class: `badge ${cls}`, 'data-field': 'state' }, stateText)),
    ...facts,
    error ? el('p', { class: 'error' }, error) : undefined,
  );
}

// ---- pipeline ----

/** An incremental snapshot's progress: `public.orders 12,000 / 50,000 rows (+2 queued)`. */
function incrementalText(i) {
  const total = i.totalRows === null ? '' : ` / ${formatCount(i.totalRows)}`;
  const queued = i.queued.length ? ` (+${i.queued.length} queued)` : '';
  return `${i.table} ${formatCount(i.rows)}${total} rows${queued}`;
}

function renderPipeline(p) {
  const t = Date.parse(p.at);
  const sources = p.sources.map((s) => {
    const slot = state.slots.get(s.slot);
    push(state.rate, `${s.name} (source)`, t, s.eventsPerSecond);
    push(state.lag, `${s.name} (source)`, t, s.pendingEvents);
    return connectorItem(
      s.name,
      s.state,
      [
        fact('events/s', formatRate(s.eventsPerSecond), 'eventsPerSecond'),
        fact('events', formatCount(s.eventsTotal), 'eventsTotal'),
        fact('slot lag', slot ? formatBytes(slot.lagBytes) : '—', 'slotLag'),
        fact('confirmed', s.confirmedLsn, 'confirmedLsn'),
        ...(s.incrementalSnapshot ? [fact('incremental snapshot', incrementalText(s.incrementalSnapshot), 'incrementalSnapshot')] : []),
      ],
      s.error,
    );
  });
  $('#stage-source .connectors').replaceChildren(
    ...(sources.length ? sources : [el('li', { class: 'muted' }, 'no source in this process')]),
  );

  const kafka = [
    ...p.sources.map((s) => connectorItem(s.name, s.state, [fact('waiting for ack', formatCount(s.pendingEvents), 'pendingEvents')])),
    ...p.sinks.map((s) =>
      connectorItem(s.name, s.state, [fact('lag', s.lagMessages === null ? '—' : `${formatCount(s.lagMessages)} msgs`, 'lagMessages')]),
    ),
  ];
  $('#stage-kafka .connectors').replaceChildren(...(kafka.length ? kafka : [el('li', { class: 'muted' }, '—')]));

  const sinks = p.sinks.map((s) => {
    const prev = state.lastSinks.get(s.name);
    const rate = prev && t > prev.t ? ((s.messages - prev.messages) * 1000) / (t - prev.t) : null;
    state.lastSinks.set(s.name, { t, messages: s.messages });
    push(state.rate, `${s.name} (sink)`, t, rate);
    if (s.lagMessages !== null) push(state.lag, `${s.name} (sink)`, t, s.lagMessages);
    return connectorItem(
      s.name,
      s.state,
      [
        fact('messages/s', formatRate(rate), 'messagesPerSecond'),
        fact('messages', formatCount(s.messages), 'messages'),
        fact('commits', formatCount(s.flushes), 'flushes'),
        fact('dead letters', formatCount(s.deadLetters), 'deadLetters'),
      ],
      s.error,
    );
  });
  $('#stage-sink .connectors').replaceChildren(...(sinks.length ? sinks : [el('li', { class: 'muted' }, 'no sink in this process')]));

  const lake = p.sinks.map((s) => {
    const tables = Object.entries(s.freshnessSeconds).sort(([a], [b]) => (a < b ? -1 : 1));
    const newest = tables.length ? Math.min(...tables.map(([, v]) => v)) : null;
    push(state.freshness, s.name, t, newest);
    const details = el(
      'details',
      {},
      el('summary', {}, 'per table'),
      el('ul', {}, ...tables.map(([table, v]) => el('li', { 'data-table': table }, `${table}: ${formatSeconds(v)}`))),
    );
    return connectorItem(
      s.name,
      s.state,
      [fact('freshness', formatSeconds(newest), 'freshness'), fact('gold builds', formatCount(s.goldRefreshes), 'goldRefreshes'), details],
      undefined,
    );
  });
  $('#stage-lake .connectors').replaceChildren(...(lake.length ? lake : [el('li', { class: 'muted' }, '—')]));

  const series = (map) => [...map].map(([name, points]) => ({ name, points }));
  lineChart($('#chart-rate'), series(state.rate), { label: 'events per second', format: (v) => formatRate(v) });
  lineChart($('#chart-lag'), series(state.lag), { label: 'lag in events', format: (v) => formatCount(v) });
  lineChart($('#chart-freshness'), series(state.freshness), { label: 'freshness in seconds', format: (v) => formatSeconds(v) });
  $('#pipeline').dataset.polls = String(Number($('#pipeline').dataset.polls ?? 0) + 1);
  clearError('#pipeline');
}

// ---- slots ----

function renderSlots(body) {
  const t = body.thresholds;
  $('#slots-note').textContent =
    `Every slot of the server. Warning at retained WAL ≥ ${formatBytes(t.retainedWalWarningBytes)} or lag ≥ ${formatBytes(t.lagWarningBytes)}; ` +
    `critical at ≥ ${formatBytes(t.retainedWalCriticalBytes)} or ≥ ${formatBytes(t.lagCriticalBytes)}, or wal_status unreserved/lost.`;
  state.slots = new Map(body.slots.map((s) => [s.name, s]));
  clearError('#slots');
  $('#slots').dataset.polls = String(Number($('#slots').dataset.polls ?? 0) + 1);
  const td = (label, value, field) => el('td', { 'data-label': label, 'data-field': field }, value ?? '—');
  const rows = body.slots.map((s) =>
    el(
      'tr',
      { class: `level-${s.level}`, 'data-slot': s.name, 'data-level': s.level, title: s.problems.join('\n') || 'ok' },
      td('Slot', s.name, 'name'),
      td('Tide connector', s.connector ?? 'not Tide', 'connector'),
      td('Plugin', s.plugin, 'plugin'),
      td('Type', s.type, 'type'),
      td('Database', s.database, 'database'),
      td('Active (pid)', s.active ? `yes (${s.activePid})` : 'no', 'active'),
      td('Restart LSN', s.restartLsn, 'restartLsn'),
      td('Confirmed LSN', s.confirmedFlushLsn, 'confirmedFlushLsn'),
      el('td', { class: 'num', 'data-label': 'Lag', 'data-field': 'lagBytes', 'data-value': s.lagBytes }, formatBytes(s.lagBytes)),
      el(
        'td',
        { class: 'num', 'data-label': 'Retained WAL', 'data-field': 'retainedWalBytes', 'data-value': s.retainedWalBytes },
        formatBytes(s.retainedWalBytes),
      ),
      td('wal_status', s.walStatus, 'walStatus'),
      td('Safe WAL size', s.safeWalSizeBytes === null ? 'unlimited' : formatBytes(s.safeWalSizeBytes), 'safeWalSize'),
      td('Inactive for', s.active ? '—' : s.inactiveSeconds === null ? 'unknown' : formatSeconds(s.inactiveSeconds), 'inactive'),
    ),
  );
  $('#slots-table tbody').replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 13 }, 'no replication slots'))]));
}

// ---- reports ----

async function refreshOrders() {
  const body = await getJson('/api/reports/orders');
  if (waiting('#tile-orders', body)) return;
  const line = $('#orders-line');
  // The same words as ordersLine(), with the time kept on one line.
  line.replaceChildren(`Orders: ${formatCount(body.orders)} — last update: `, el('span', { class: 'nowrap' }, formatTime(body.lastUpdate)));
  line.dataset.orders = String(body.orders);
  line.dataset.lastUpdate = body.lastUpdate ?? '';
  barChart(
    $('#chart-minutes'),
    body.perMinute.map((m) => ({ label: m.minute, short: `${m.minute.slice(11, 16)} UTC`, value: m.orders })),
    { label: 'orders per minute, last hour with orders', format: (v) => formatCount(v) },
  );
  sourcesLine('#tile-orders', body.sources);
  clearError('#tile-orders');
  $('#tile-orders').dataset.state = 'ready';
  if (state.customer !== null) await refreshCustomer();
}

async function refreshCustomer() {
  const out = $('#customer-line');
  out.hidden = false;
  try {
    const c = await getJson(`/api/reports/orders?${new URLSearchParams({ customer: state.customer })}`);
    if (c.ready === false) {
      out.textContent = c.message;
      out.dataset.state = 'waiting';
      return;
    }
    out.textContent = `Customer ${c.customer}${c.country ? ` (${c.country})` : ''}: ${ordersLine(c.orders, c.lastUpdate)} · billed ${formatMoney(c.amountBilled)}`;
    out.dataset.state = 'ready';
    out.dataset.customer = String(c.customer);
    out.dataset.orders = String(c.orders);
    out.dataset.lastUpdate = c.lastUpdate ?? '';
  } catch (e) {
    out.textContent = e.message;
    out.dataset.state = 'error';
  }
}

async function refreshNotifications() {
  const query = state.notifCustomer === null ? '' : `?${new URLSearchParams({ customer: state.notifCustomer })}`;
  const body = await getJson(`/api/reports/notifications${query}`);
  if (waiting('#tile-notifications', body)) return;
  const line = $('#notifications-line');
  line.replaceChildren(
    `${body.customerName ?? `Customer ${body.customer}`}: ${formatCount(body.notifications)} in the last hour — last update: `,
    el('span', { class: 'nowrap' }, formatTime(body.lastUpdate)),
  );
  line.dataset.customer = String(body.customer);
  line.dataset.notifications = String(body.notifications);
  line.dataset.lastUpdate = body.lastUpdate ?? '';
  barChart(
    $('#chart-notifications'),
    body.perMinute.map((m) => ({ label: m.minute, short: `${m.minute.slice(11, 16)} UTC`, value: m.notifications })),
    { label: "notifications per minute, the customer's last hour", format: (v) => formatCount(v) },
  );
  const select = $('#notif-customer');
  const listed = body.customers.some((c) => c.customer === body.customer)
    ? body.customers
    : [{ customer: body.customer, name: body.customerName, notifications: body.notifications }, ...body.customers];
  select.replaceChildren(
    ...listed.map((c) => el('option', { value: String(c.customer) }, `${c.name ?? c.customer} — ${formatCount(c.notifications)}`)),
  );
  select.value = String(body.customer);
  sourcesLine('#tile-notifications', body.sources);
  clearError('#tile-notifications');
  $('#tile-notifications').dataset.state = 'ready';
}

async function refreshDaily() {
  const body = await getJson('/api/reports/daily-revenue');
  if (waiting('#tile-revenue', body)) return;
  barChart(
    $('#chart-daily'),
    body.points.map((p) => ({ label: p.day, value: p.revenue })),
    { label: 'revenue per UTC day', format: formatMoney },
  );
  $('#daily-table tbody').replaceChildren(
    ...body.points
      .slice()
      .reverse()
      .map((p) =>
        el(
          'tr',
          { 'data-day': p.day },
          el('td', {}, p.day),
          el('td', { class: 'num' }, formatCount(p.orders)),
          el('td', { class: 'num' }, formatMoney(p.revenue)),
        ),
      ),
  );
  sourcesLine('#tile-revenue', body.sources);
  clearError('#tile-revenue');
  $('#tile-revenue').dataset.state = 'ready';
}

async function refreshProducts() {
  const query = state.country === undefined ? '' : `?${new URLSearchParams({ country: state.country })}`;
  const body = await getJson(`/api/reports/top-products${query}`);
  if (waiting('#tile-products', body)) return;
  const select = $('#country');
  const chosen = body.country ?? '';
  select.replaceChildren(
    ...body.countries.map((c) => el('option', { value: c.country ?? '' }, `${c.country ?? '(no customer)'} — ${formatMoney(c.revenue)}`)),
  );
  select.value = chosen;
  $('#products tbody').replaceChildren(
    ...body.products.map((p) =>
      el(
        'tr',
        { 'data-rank': p.rank, 'data-product-no': p.productNo, 'data-units': p.units, 'data-revenue': p.revenue },
        el('td', {}, String(p.rank)),
        el('td', { class: 'product' }, p.name ?? p.productNo, ' ', el('small', { class: 'muted' }, p.productNo)),
        el('td', { class: 'num' }, formatCount(p.units)),
        el('td', { class: 'num' }, formatMoney(p.revenue)),
      ),
    ),
  );
  $('#tile-products').dataset.country = chosen;
  sourcesLine('#tile-products', body.sources);
  clearError('#tile-products');
  $('#tile-products').dataset.state = 'ready';
}

async function refreshExports() {
  const { tables } = await getJson('/api/reports/exports');
  const select = $('#export-table');
  if (!tables.includes(state.exportTable) && tables.length) state.exportTable = tables[0];
  select.replaceChildren(...tables.map((t) => el('option', { value: t }, t)));
  select.value = state.exportTable;
  $('#export-link').href = `/api/export/${encodeURIComponent(state.exportTable)}.csv`;
  $('#tile-export').dataset.state = tables.length ? 'ready' : 'waiting';
}

// ---- wiring ----

function start() {
  // One poll for both: the pipeline panel shows each source's slot lag from the slots' answer.
  every(
    PIPELINE_EVERY_MS,
    'pipeline',
    async () => {
      const [slots, pipeline] = await Promise.allSettled([getJson('/api/slots'), getJson('/api/pipeline')]);
      if (slots.status === 'fulfilled') {
        renderSlots(slots.value);
        state.failures.delete('slots');
      } else {
        showError('#slots', slots.reason.message);
        state.failures.set('slots', slots.reason.message);
      }
      if (pipeline.status === 'rejected') throw pipeline.reason;
      renderPipeline(pipeline.value);
    },
    '#pipeline',
  );
  every(REPORTS_EVERY_MS, 'orders', refreshOrders, '#tile-orders');
  every(REPORTS_EVERY_MS, 'notifications', refreshNotifications, '#tile-notifications');
  every(REPORTS_EVERY_MS, 'daily revenue', refreshDaily, '#tile-revenue');
  every(REPORTS_EVERY_MS, 'top products', refreshProducts, '#tile-products');
  every(REPORTS_EVERY_MS, 'exports', refreshExports, '#tile-export');

  $('#customer-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('#customer').value.trim();
    state.customer = value === '' ? null : value;
    if (state.customer === null) $('#customer-line').hidden = true;
    else refreshCustomer();
  });
  $('#notif-customer').addEventListener('change', () => {
    state.notifCustomer = $('#notif-customer').value;
    refreshNotifications().catch((e) => showError('#tile-notifications', e.message));
  });
  $('#country').addEventListener('change', () => {
    state.country = $('#country').value;
    refreshProducts().catch((e) => showError('#tile-products', e.message));
  });
  $('#export-table').addEventListener('change', () => {
    state.exportTable = $('#export-table').value;
    $('#export-link').href = `/api/export/${encodeURIComponent(state.exportTable)}.csv`;
  });
}

start();
