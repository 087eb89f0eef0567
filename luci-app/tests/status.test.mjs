// Browser test of view/mpbond/status.js in headless Chromium (node --test).
// Expectations are derived from the fixtures, so fixtures/status.json can be
// replaced by a real capture from the agent (`mpbond-agent status --json`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { here, fixture, startServer, startBrowser, openView, tick } from './lib.mjs';

const COLOURS = { up: 'rgb(46, 156, 58)', degraded: 'rgb(224, 123, 0)', down: 'rgb(208, 48, 42)', unknown: 'rgb(128, 128, 128)' };
let server, browser;

before(async () => { server = await startServer(); browser = await startBrowser(); });
after(async () => { await browser?.close(); server?.proc.kill(); });

const wanRows = (page) => page.$$eval('#mpbond-wans tr.mpbond-wan', (rows) => rows.map((r) => {
  const s = r.querySelector('.mpbond-state');
  return { name: r.dataset.wan, text: r.textContent, state: s.textContent, cls: s.className, colour: getComputedStyle(s).color };
}));
const lines = (page) => page.$$eval('#mpbond-graph polyline', (ls) => ls.map((l) => ({ wan: l.dataset.wan, points: l.getAttribute('points') })));
const text = (page, sel) => page.$eval(sel, (e) => e.textContent);

test('one row per WAN with its state, colour and values', async () => {
  const doc = fixture('status.json');
  // The fixture may be captured from a running agent: fix the one value checked verbatim.
  doc.wans[0].probe_bytes_per_day = 4121000;
  const { page, errors } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const rows = await wanRows(page);
  assert.equal(rows.length, doc.wans.length);
  doc.wans.forEach((w, i) => {
    assert.equal(rows[i].name, w.name);
    assert.equal(rows[i].state, w.state);
    assert.match(rows[i].cls, new RegExp(`\\bmpbond-state-${w.state}\\b`));
    assert.equal(rows[i].colour, COLOURS[w.state]);
    assert.ok(rows[i].text.includes(w.mode), `mode of ${w.name}`);
    for (const a of w.addresses) assert.ok(rows[i].text.includes(a), `address ${a}`);
    assert.ok(rows[i].text.includes(w.gateway ?? '\u2013'), `gateway of ${w.name}`);
    if (w.last_change) assert.ok(rows[i].text.includes(`ago (${w.last_change.cause})`), `last change of ${w.name}`);
  });
  assert.ok(rows[0].text.includes('4.1 MB/day'), rows[0].text);
  const all = await text(page, '#view');
  assert.doesNotMatch(all, /\b(null|undefined|NaN)\b/);
  assert.deepEqual(await page.evaluate(() => window.standin.polls()), [3]);
  assert.deepEqual(await page.evaluate(() => window.standin.rpcCalls[0]), { object: 'mpbond', method: 'status', args: {} });
  assert.equal(await page.$('#mpbond-down, #mpbond-mptcp, #mpbond-missing'), null);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a WAN demoted by the path-quality control shows why', async () => {
  const doc = fixture('status.json');
  Object.assign(doc.wans[1], { mode: 'backup', quality: 'demoted', quality_reason: 'rtt 310 ms vs 15 ms, 0.3 vs 48.1 Mbit/s' });
  doc.wans[0].quality = 'good';
  const { page, errors } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const rows = await wanRows(page);
  assert.ok(rows[1].text.includes('backup (demoted: rtt 310 ms vs 15 ms, 0.3 vs 48.1 Mbit/s)'), rows[1].text);
  assert.ok(!rows[0].text.includes('demoted'), rows[0].text);
  assert.equal((await page.$$('#mpbond-wans .mpbond-demoted')).length, 1);
  assert.deepEqual(errors, []);
  await page.close();
});

test('concentrator, redirect and connection counters', async () => {
  const doc = fixture('status.json');
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const conc = await text(page, '[data-field="concentrator"]');
  assert.ok(conc.includes(doc.concentrator.host) && conc.includes(doc.concentrator.address), conc);
  assert.match(conc, doc.concentrator.reachable ? /\breachable\b/ : /\bunreachable\b/);
  assert.match(await text(page, '[data-field="redirect"]'), doc.concentrator.redirect ? /^active/ : /failing open/);
  const conn = await text(page, '[data-field="connections"]');
  const c = doc.connections;
  for (const s of [`active ${c.active}`, `total ${c.total}`, `fallbacks to plain TCP ${c.fallbacks}`, `direct ${c.direct}`, `refused ${c.refused}`])
    assert.ok(conn.includes(s), `${s} in ${conn}`);
  await page.close();
});

test('several concentrators: one line each with its state, RTT and connections', async () => {
  const doc = structuredClone(fixture('status.json'));
  doc.concentrators = [
    { name: 'vps1', address: '192.0.2.1:4850', priority: 1, state: 'down', rtt_ms: null, connections: 0 },
    { name: 'vps2', address: '192.0.2.2:4850', priority: 2, state: 'active', rtt_ms: 41.2, connections: 3 },
  ];
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const lines = await page.$$eval('[data-field="concentrators"] .mpbond-concentrator',
    (els) => els.map((e) => [e.dataset.name, e.textContent]));
  assert.equal(lines.length, 2, JSON.stringify(lines));
  assert.match(lines[0][1], /^vps1 \(192\.0\.2\.1:4850, priority 1\): down, RTT –, 0 connections$/);
  assert.match(lines[1][1], /^vps2 \(192\.0\.2\.2:4850, priority 2\): active, RTT 41\.2 ms, 3 connections$/);
  // One concentrator: no list (the Concentrator line says it all).
  const { page: one } = await openView(browser, server.base, 'mpbond/status', [fixture('status.json')]);
  assert.equal(await one.$$eval('[data-field="concentrators"]', (els) => els.length), 0);
  await page.close();
  await one.close();
});

test('graph: one polyline per WAN whose points move on each poll tick', async () => {
  const [a, b] = [fixture('status.json'), fixture('status-next.json')];
  const { page } = await openView(browser, server.base, 'mpbond/status', [a, b]);
  const first = await lines(page);
  assert.deepEqual(first.map((l) => l.wan), a.wans.map((w) => w.name));
  await tick(page);
  const second = await lines(page);
  assert.equal(second.length, b.wans.length);
  for (let i = 0; i < second.length; i++) {
    assert.notEqual(second[i].points, first[i].points, `points of ${second[i].wan} changed`);
    assert.equal(second[i].points.split(' ').length, 2, 'two samples after one tick');
  }
  // Higher rx rate => higher on the chart (smaller y) for the newest sample.
  const lastY = second.map((l) => Number(l.points.split(' ').pop().split(',')[1]));
  const max = Math.max(...a.wans.map((w) => w.rx_bps), ...b.wans.map((w) => w.rx_bps));
  for (let i = 0; i < b.wans.length; i++)
    for (let j = 0; j < b.wans.length; j++)
      if (b.wans[i].rx_bps - b.wans[j].rx_bps > max / 50) assert.ok(lastY[i] < lastY[j], `${b.wans[i].name} above ${b.wans[j].name}`);
  const legend = await page.$$eval('#mpbond-legend li', (ls) => ls.map((l) => l.dataset.wan));
  assert.deepEqual(legend, b.wans.map((w) => w.name));
  assert.match(await text(page, '[data-field="connections"]'), new RegExp(`total ${b.connections.total}`));
  await page.close();
});

test('every state gets its colour, an unknown state is shown as unknown', async () => {
  const doc = fixture('status.json');
  const states = ['up', 'degraded', 'down', 'unknown', 'bogus'];
  doc.wans = states.map((s, i) => ({ ...doc.wans[i % doc.wans.length], name: `w${i}`, state: s }));
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const rows = await wanRows(page);
  assert.deepEqual(rows.map((r) => r.state), ['up', 'degraded', 'down', 'unknown', 'unknown']);
  assert.deepEqual(rows.map((r) => r.colour), [COLOURS.up, COLOURS.degraded, COLOURS.down, COLOURS.unknown, COLOURS.unknown]);
  await page.close();
});

test('agent not running: a clear message, and the page recovers when it starts', async () => {
  const down = fixture('agent-down.json');
  const { page } = await openView(browser, server.base, 'mpbond/status', [down, fixture('status.json')]);
  const msg = await text(page, '#mpbond-down');
  assert.match(msg, /The mpbond agent is not running/);
  assert.ok(msg.includes(down.detail));
  assert.equal(await page.$('#mpbond-wans'), null);
  await tick(page);
  assert.equal(await page.$('#mpbond-down'), null);
  assert.equal((await wanRows(page)).length, fixture('status.json').wans.length);
  await page.close();
});

test('ubus call failing (plugin missing): status not available', async () => {
  const { page } = await openView(browser, server.base, 'mpbond/status', [{ ubusStatus: 4 }]);
  assert.match(await text(page, '#mpbond-down'), /mpbond status is not available/);
  await page.close();
});

test('an expired session is left to LuCI: the last status stays, no broken-install advice', async () => {
  const doc = fixture('status.json');
  const expired = { rpcError: { code: -32002, message: 'Access denied' } };
  const { page, errors } = await openView(browser, server.base, 'mpbond/status', [doc, expired]);
  const before = await text(page, '#mpbond-status');
  await tick(page);
  assert.equal(await page.evaluate(() => window.standin.sessionExpired), true, "LuCI's own notice");
  assert.equal(await page.$('#mpbond-down'), null);
  const after = await text(page, '#mpbond-status');
  assert.equal(after, before, 'what was shown stays');
  for (const claim of [/not available/, /installed/, /rpcd/, /stacktrace/])
    assert.doesNotMatch(await text(page, '#view'), claim);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a session refused from the start (HTTP 403) shows no error box of its own', async () => {
  const { page } = await openView(browser, server.base, 'mpbond/status', [{ httpStatus: 403 }]);
  assert.equal(await page.$('#mpbond-down'), null);
  assert.doesNotMatch(await text(page, '#view'), /not available|installed|rpcd/);
  await page.close();
});

test('other failures show one line of detail, without the stack trace', async () => {
  const { page } = await openView(browser, server.base, 'mpbond/status', [{ ubusStatus: 4 }]);
  const msg = await text(page, '#mpbond-down');
  assert.match(msg, /failed with ubus code 4/);
  assert.doesNotMatch(msg, /stacktrace/);
  await page.close();
});

test('MPTCP missing and failing open are shown as warnings', async () => {
  const doc = fixture('status-failopen.json');
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  assert.match(await text(page, '#mpbond-mptcp'), /MPTCP is not available in this kernel/);
  const missing = await page.$$eval('#mpbond-missing p', (ps) => ps.map((p) => p.textContent));
  assert.deepEqual(missing, doc.kernel.missing);
  assert.match(await text(page, '[data-field="redirect"]'), /failing open/);
  assert.match(await text(page, '[data-field="concentrator"]'), /unreachable: probe timed out/);
  await page.screenshot({ path: join(here, 'out', 'status-failopen.png'), fullPage: true });
  await page.close();
});

test('strings from the status document never become markup', async () => {
  const evil = '<img src=x onerror="window.__pwned=1"><b class="inj">x</b>';
  const doc = fixture('status-failopen.json');
  doc.concentrator.host = evil; doc.concentrator.last_error = evil; doc.kernel.missing = [evil];
  doc.wans[0] = { ...doc.wans[0], name: evil, device: evil, mode: evil, gateway: evil, addresses: [evil] };
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc, { error: evil, detail: evil }]);
  const check = async () => {
    assert.equal(await page.$$eval('#view img, #view .inj', (n) => n.length), 0);
    assert.ok((await text(page, '#view')).includes(evil));
  };
  await check();
  await tick(page);
  await check();
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await page.close();
});

test('screenshot after a few minutes of samples', async () => {
  const base = fixture('status.json');
  const docs = Array.from({ length: 40 }, (_, t) => ({
    ...base,
    wans: base.wans.map((w, i) => ({ ...w, rx_bps: w.state === 'down' ? 0 : Math.round(w.rx_bps * (1 + 0.4 * Math.sin(t / (3 + i)))) })),
  }));
  const { page } = await openView(browser, server.base, 'mpbond/status', docs);
  for (let t = 1; t < docs.length; t++) await tick(page);
  const pts = (await lines(page))[0].points.split(' ').length;
  assert.equal(pts, docs.length);
  mkdirSync(join(here, 'out'), { recursive: true });
  await page.screenshot({ path: join(here, 'out', 'status.png'), fullPage: true });
  await page.close();
});

test('data usage: bytes today and this month per WAN, and the data plan', async () => {
  const doc = fixture('status.json');
  const last = doc.wans.length - 1;
  doc.wans.forEach((w, i) => {
    w.usage = { day: '2026-12-06', today_rx_bytes: 1234 + i, today_tx_bytes: 56, period_start: '2026-12-01',
      month_rx_bytes: 19_500_000_000, month_tx_bytes: 600_000_000 };
  });
  Object.assign(doc.wans[last], { metered: true, standby: true, over_allowance: true, allowance_bytes: 20_000_000_000 });
  const { page, errors } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const rows = await page.$$eval('#mpbond-usage tr.mpbond-usage', (rs) => rs.map((r) => ({
    name: r.dataset.wan, cells: [...r.querySelectorAll('td')].map((td) => td.textContent) })));
  assert.deepEqual(rows.map((r) => r.name), doc.wans.map((w) => w.name));
  assert.deepEqual(rows[0].cells, [doc.wans[0].name, 'unmetered', '1.2 kB', '56 B', '20 GB', '600 MB', '2026-12-01', '\u2013']);
  assert.deepEqual(rows[last].cells.slice(1, 3), ['over allowance, standby', '1.2 kB']);
  assert.equal(rows[last].cells[7], '20 GB');
  const over = await page.$eval('#mpbond-usage .mpbond-over', (e) => getComputedStyle(e).color);
  assert.equal(over, COLOURS.down);
  assert.deepEqual(errors, []);
  await page.close();
});

test('data usage of an agent that has not counted yet prints dashes', async () => {
  const doc = fixture('status.json');
  // As an agent reports a WAN before its first count (the fixture may be captured later).
  Object.assign(doc.wans[0], { metered: false, standby: false, over_allowance: false, allowance_bytes: null, usage: null });
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const cells = await page.$$eval('#mpbond-usage tr.mpbond-usage td', (tds) => tds.map((td) => td.textContent));
  assert.equal(cells[1], 'unmetered');
  assert.equal(cells[2], '\u2013');
  assert.doesNotMatch(await text(page, '#view'), /\b(null|undefined|NaN)\b/);
  await page.close();
});

test('UDP flows: the counts, and the bytes of each WAN', async () => {
  const doc = fixture('status.json');
  doc.udp = { active: 3, bonded_active: 2, total: 40, direct: 5, refused: 1, upstream_failed: 0,
    bytes_up: 1_000_000, bytes_down: 90_000_000, datagrams_up: 900, datagrams_down: 70_000,
    drops_queue_full: 4, drops_flow_limit: 0, drops_other_context: 0, drops_lan_busy: 0, resets: 0,
    unattributed_rx_bytes: 0, unattributed_tx_bytes: 0 };
  doc.wans.forEach((w, i) => Object.assign(w, { udp_rx_bytes: 36_000_000 * (i + 1), udp_tx_bytes: 400_000 + i }));
  const { page, errors } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const udp = await text(page, '[data-field="udp"]');
  for (const s of ['active 3', 'bonded 2', 'total 40', 'direct 5', 'refused 1', 'dropped (queue full) 4'])
    assert.ok(udp.includes(s), `${s} in ${udp}`);
  const rows = await page.$$eval('#mpbond-udp-wans tr.mpbond-udp-wan', (rs) => rs.map((r) => ({
    name: r.dataset.wan, cells: [...r.querySelectorAll('td')].map((td) => td.textContent) })));
  assert.deepEqual(rows.map((r) => r.name), doc.wans.map((w) => w.name));
  assert.deepEqual(rows[0].cells, [doc.wans[0].name, '36 MB', '400 kB']);
  assert.deepEqual(rows[1].cells.slice(1), ['72 MB', '400 kB']);
  assert.equal(await page.$('#mpbond-udp-wans .mpbond-udp-unattributed'), null);
  assert.deepEqual(errors, []);
  await page.close();
});

test('UDP bytes on an address no WAN holds get their own row; no UDP, no table', async () => {
  const doc = fixture('status.json');
  doc.udp = { active: 0, bonded_active: 0, total: 1, unattributed_rx_bytes: 5_000, unattributed_tx_bytes: 70 };
  doc.wans.forEach((w) => Object.assign(w, { udp_rx_bytes: null, udp_tx_bytes: null }));
  const { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const cells = await page.$$eval('#mpbond-udp-wans tr.mpbond-udp-unattributed td', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(cells, ['no WAN now', '5.0 kB', '70 B']);
  const first = await page.$$eval('#mpbond-udp-wans tr.mpbond-udp-wan td', (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(first.slice(1, 3), ['\u2013', '\u2013']);
  assert.doesNotMatch(await text(page, '#view'), /\b(null|undefined|NaN)\b/);
  await page.close();
  const off = fixture('status.json');
  delete off.udp;
  const { page: page2 } = await openView(browser, server.base, 'mpbond/status', [off]);
  assert.equal(await page2.$('#mpbond-udp-wans'), null);
  assert.equal(await page2.$('[data-field="udp"]'), null);
  await page2.close();
});

test('bypass by name: the domains, the resolver and the set sizes, or why it is not active', async () => {
  const doc = fixture('status.json');
  doc.bypass_names = { domains: ['bank.example', 'tv.example'], resolver: 'dnsmasq', resolver_active: true,
    ipv4_addresses: 3, ipv6_addresses: 1 };
  const off = { ...fixture('status.json'), bypass_names: { domains: ['bank.example'], resolver: 'none',
    resolver_active: false, resolver_problem: 'this dnsmasq was built without nftset' } };
  let { page } = await openView(browser, server.base, 'mpbond/status', [doc]);
  const row = await text(page, '[data-field="bypass_names"]');
  for (const s of ['bank.example, tv.example', 'filled by dnsmasq', 'addresses 3 IPv4, 1 IPv6'])
    assert.ok(row.includes(s), `${s} in ${row}`);
  await page.close();
  ({ page } = await openView(browser, server.base, 'mpbond/status', [off]));
  assert.match(await text(page, '[data-field="bypass_names"]'), /NOT ACTIVE: this dnsmasq was built without nftset/);
  await page.close();
  ({ page } = await openView(browser, server.base, 'mpbond/status', [fixture('status.json')]));
  assert.equal(await page.$('[data-field="bypass_names"]'), null, 'no row without domains');
  await page.close();
});

test('latency guard: off, waiting, the clamp and the pace of downloads already running', async () => {
  const base = fixture('status.json');
  const guard = { enabled: true, protected_flows: 1, clamp: 401408, release: 4194304, window: 401408, pace: 10625000 };
  const cases = [
    [guard, ['protecting 1 flows', '392 KiB', 'downloads already running are read at 85.0 Mbit/s']],
    [{ ...guard, pace: null }, ['protecting 1 flows', '392 KiB']],
    [{ ...guard, protected_flows: 0, clamp: null, pace: null }, ['on, no protected flow']],
    [{ ...guard, clamp: null, pace: null, window: 8388608 }, ['1 protected flows, nothing to limit', '8192 KiB', '4096 KiB']],
    [{ ...guard, enabled: false, clamp: null, pace: null }, ['off']],
  ];
  for (const [g, want] of cases) {
    const { page } = await openView(browser, server.base, 'mpbond/status', [{ ...base, latency_guard: g }]);
    const row = await text(page, '[data-field="latency_guard"]');
    for (const s of want) assert.ok(row.includes(s), `${s} in ${row}`);
    if (g.pace === null) assert.ok(!row.includes('already running'), row);
    assert.doesNotMatch(row, /\b(null|undefined|NaN)\b/);
    await page.close();
  }
  const none = { ...base };
  delete none.latency_guard;
  const { page } = await openView(browser, server.base, 'mpbond/status', [none]);
  assert.equal(await page.$('[data-field="latency_guard"]'), null, 'no row without the guard in the status');
  await page.close();
});

test('protected UDP flows: mode, legs with their loss before the merge, loss before protection and after, recovered, protection bytes', async () => {
  const doc = fixture('status.json');
  const { page: plain } = await openView(browser, server.base, 'mpbond/status', [doc]);
  assert.equal(await plain.$('#mpbond-protected'), null, 'no section before any flow is protected');
  await plain.close();
  doc.protected = {
    active: 1, total: 2, fallbacks: 1, legs_replaced: 1, protection_bytes: 392000, datagrams_down: 995, lost_down: 5,
    lost_before_down: 40, recovered_down: 35,
    flows: [{
      client: '192.168.1.10:50000', destination: '198.51.100.1:3478', mode: 'fec',
      lost_before_down: 40, recovered_down: 35,
      legs: [{ leg: 0, wan: 'wan', state: 'open', datagrams_down: 950, missed_down: 50 },
        { leg: 2, wan: '<b>lte</b>', state: 'stalled', datagrams_down: 990, missed_down: 10 }],
      datagrams_up: 1000, datagrams_down: 995, lost_down: 5, duplicates_down: 940,
      protection_bytes_up: 200000, protection_bytes_down: 192000, legs_replaced: 1,
    }],
  };
  const { page, errors } = await openView(browser, server.base, 'mpbond/status', [doc]);
  assert.match(await text(page, '[data-field="protected"]'), /active 1, total 2, bonded instead 1, legs replaced 1/);
  assert.equal(await text(page, '[data-field="protected-loss"]'), '0.5 % (5 / 1000)');
  assert.equal(await text(page, '[data-field="protected-bytes"]'), '392 kB');
  assert.equal(await text(page, '[data-field="protected-before"]'), '4.0 % (40 / 1000), recovered 35');
  const rows = await page.$$eval('#mpbond-protected tr.mpbond-protected-flow', (rs) => rs.map((r) => r.textContent));
  assert.equal(rows.length, 1);
  for (const s of ['192.168.1.10:50000', '198.51.100.1:3478', 'fec', '4.0 %', '35', 'wan open (5.0 %)', '<b>lte</b> stalled (1.0 %)', '0.5 %', '392 kB'])
    assert.ok(rows[0].includes(s), `${s} in ${rows[0]}`);
  assert.equal(await page.$('#mpbond-protected b'), null, 'strings never become markup');
  assert.deepEqual(errors, []);
  await page.close();
});
