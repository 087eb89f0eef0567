// The settings view against the agent's UCI schema. settings.js runs
// unmodified with recording stand-ins for LuCI's `form` and `tools.widgets`;
// every option it declares must be one the agent reads (the MAPPINGS table in
// router-agent/src/config/uci/map.rs, since the agent rejects unknown options)
// and, once it exists, one the shipped /etc/config/mpbond names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { appDir } from './lib.mjs';

const repo = join(appDir, '..');
const MAP_RS = join(repo, 'router-agent/src/config/uci/map.rs');
const SHIPPED = join(repo, 'openwrt/mpbond/files/mpbond.config');

/** Runs settings.js like LuCI's loader does and returns what it declared. */
function declared() {
  const source = readFileSync(join(appDir, 'htdocs/luci-static/resources/view/mpbond/settings.js'), 'utf8');
  const sections = [];
  class Option {
    constructor(section, cls, name) { Object.assign(this, { cls: cls.name, name, values: [] }); section.options.push(this); }
    value(v) { this.values.push(v); }
    depends(opt, v) { (this.deps ||= []).push([opt, v]); }
  }
  class Section {
    constructor(cls, args) { Object.assign(this, { cls, args, options: [], tabs: [] }); sections.push(this); }
    tab(name) { this.tabs.push(name); }
    option(cls, name) { return new Option(this, cls, name); }
    taboption(tab, cls, name) { assert.ok(this.tabs.includes(tab), `tab ${tab} declared`); return this.option(cls, name); }
  }
  const named = (n) => Object.defineProperty(class {}, 'name', { value: n });
  const form = Object.fromEntries(['NamedSection', 'GridSection', 'Flag', 'Value', 'ListValue', 'DynamicList']
    .map((n) => [n, named(n)]));
  form.Map = class { constructor(config) { this.config = config; } section(cls, ...args) { return new Section(cls.name, args); } render() { return this; } };
  const widgets = { DeviceSelect: named('DeviceSelect'), NetworkSelect: named('NetworkSelect') };
  const view = { extend: (proto) => proto };
  const conf = { wan: { '.anonymous': false }, cfg0a1b2c: { '.anonymous': true }, wanb: { '.anonymous': false, interface: 'lte' } };
  const uci = { get: (config, sid, opt) => (config === 'mpbond' ? conf[sid]?.[opt] : undefined) };
  const modules = { view, form, uci, 'tools.widgets': widgets };
  const deps = [...source.matchAll(/^'require ([\w.]+)(?: as (\w+))?';$/gm)];
  assert.ok(deps.length >= 3);
  const fn = new Function(...deps.map((d) => d[2] || d[1]), source);
  globalThis._ = (s) => s;
  const map = fn(...deps.map((d) => { assert.ok(d[1] in modules, `stand-in has ${d[1]}`); return modules[d[1]]; })).render();
  return { map, sections };
}

/** [section type, option name, kind] for every row of MAPPINGS (rustfmt may wrap a row). */
function agentOptions() {
  const rs = readFileSync(MAP_RS, 'utf8');
  // Rows are `script_only("section", "option", Kind)`, `global("option", Kind, "field")`
  // (section globals) or `wan("option", Kind, "field")` (section wan).
  const rows = [
    ...[...rs.matchAll(/\bscript_only\(\s*"(\w+)",\s*"(\w+)",\s*(\w+)/g)].map((r) => [r[1], r[2], r[3]]),
    ...[...rs.matchAll(/\bglobal\(\s*"(\w+)",\s*(\w+)/g)].map((r) => ['globals', r[1], r[2]]),
    ...[...rs.matchAll(/\bwan\(\s*"(\w+)",\s*(\w+)/g)].map((r) => ['wan', r[1], r[2]]),
    ...[...rs.matchAll(/\budp_rule\(\s*"(\w+)",\s*(\w+)/g)].map((r) => ['udp_rule', r[1], r[2]]),
    ...[...rs.matchAll(/\bconcentrator\(\s*"(\w+)",\s*(\w+)/g)].map((r) => ['concentrator', r[1], r[2]]),
  ];
  assert.ok(rows.length > 10, 'MAPPINGS found in map.rs');
  return rows;
}

test('settings declare the globals and wan sections of the mpbond config', () => {
  const { map, sections } = declared();
  assert.equal(map.config, 'mpbond');
  assert.deepEqual(sections.map((s) => [s.cls, ...s.args.slice(0, 2)]),
    [['NamedSection', 'globals', 'globals'], ['GridSection', 'wan', 'WAN interfaces'],
      ['GridSection', 'udp_rule', 'UDP rules'], ['GridSection', 'concentrator', 'Concentrators']]);
  const g = Object.fromEntries(sections[0].options.map((o) => [o.name, o]));
  assert.equal(g.key.password, true);
  for (const n of ['bypass_destination', 'bypass_source']) {
    assert.equal(g[n].cls, 'DynamicList');
    assert.match(g[n].datatype, /\bcidr\b/);
  }
  assert.equal(g.bypass_domain.cls, 'DynamicList');
  assert.equal(g.bypass_domain.datatype, 'hostname');
  assert.equal(g.dnsmasq_conf.validate('globals', 'tmp/x.conf'), 'An absolute path');
  assert.equal(g.dnsmasq_conf.validate('globals', '/tmp/dnsmasq.d/m.conf'), true);
  assert.equal(g.lan_interface.multiple, true);
  const w = Object.fromEntries(sections[1].options.map((o) => [o.name, o]));
  assert.equal(w.interface.cls, 'NetworkSelect');
  // A named wan section without `option interface` is that interface (mwan3 style).
  assert.deepEqual(['wan', 'cfg0a1b2c', 'wanb'].map((sid) => w.interface.cfgvalue(sid)), ['wan', null, 'lte']);
  assert.deepEqual(w.mode.values, ['on', 'backup', 'off']);
});

test('a WAN can be metered, with an allowance and a reset day; the state directory is set', () => {
  const { sections } = declared();
  const g = Object.fromEntries(sections[0].options.map((o) => [o.name, o]));
  assert.equal(g.state_dir.placeholder, '/etc/mpbond');
  assert.equal(g.state_dir.validate('globals', 'var/x'), 'An absolute path');
  const w = Object.fromEntries(sections[1].options.map((o) => [o.name, o]));
  assert.equal(w.metered.cls, 'Flag');
  assert.equal(w.metered.modalonly, undefined, 'metered shows in the grid');
  assert.deepEqual(w.allowance.deps, [['metered', '1']]);
  for (const ok of ['20GB', '500 MB', '1.5gb', '']) assert.equal(w.allowance.validate('lte', ok), true, ok);
  for (const bad of ['20', 'GB', '20 GiB', '-1GB']) assert.notEqual(w.allowance.validate('lte', bad), true, bad);
  assert.equal(w.reset_day.datatype, 'range(1,28)');
});

test('every option is one the agent reads, with a matching kind', () => {
  const { sections } = declared();
  const known = new Map(agentOptions().map(([s, o, k]) => [`${s}.${o}`, k]));
  const kinds = { Flag: ['Bool'], DynamicList: ['List'], ListValue: ['Choice'], Value: ['Text', 'Number'], NetworkSelect: ['Text'] };
  for (const s of sections) {
    for (const o of s.options) {
      const id = `${s.cls === 'NamedSection' ? s.args[1] : s.args[0]}.${o.name}`;
      assert.ok(known.has(id), `${id} is in MAPPINGS`);
      const kind = o.cls === 'DeviceSelect' ? (o.multiple ? 'List' : 'Text') : kinds[o.cls];
      assert.ok([].concat(kind).includes(known.get(id)), `${id}: ${o.cls} vs ${known.get(id)}`);
    }
  }
});

test('every option is in the shipped /etc/config/mpbond', { skip: !existsSync(SHIPPED) && 'not written yet' }, () => {
  const text = readFileSync(SHIPPED, 'utf8');
  for (const s of declared().sections)
    for (const o of s.options)
      assert.match(text, new RegExp(`^\\s*#?\\s*(option|list)\\s+${o.name}\\b`, 'm'), `${o.name} in mpbond.config`);
});

test('UDP actions are the four the agent parses, protect included', () => {
  const { sections } = declared();
  const g = Object.fromEntries(sections[0].options.map((o) => [o.name, o]));
  const r = Object.fromEntries(sections[2].options.map((o) => [o.name, o]));
  const udpRs = readFileSync(new URL('../../router-agent/src/config/udp.rs', import.meta.url), 'utf8');
  const parsed = [...udpRs.matchAll(/^\s*"(\w+)" => Ok\(UdpAction::/gm)].map((m) => m[1]);
  assert.deepEqual(parsed, ['bond', 'direct', 'block', 'protect']);
  assert.deepEqual(g.udp_default.values, parsed);
  assert.deepEqual(r.action.values, parsed);
});

test('several concentrators: a named section each, with priority, host, port, client id and key', () => {
  const { sections } = declared();
  const c = sections.find((s) => s.args[0] === 'concentrator');
  assert.ok(c, 'a concentrator section');
  const o = Object.fromEntries(c.options.map((x) => [x.name, x]));
  assert.deepEqual(Object.keys(o), ['priority', 'host', 'port', 'client_id', 'key']);
  assert.equal(o.priority.datatype, 'range(1,255)');
  assert.equal(o.key.password, true);
  assert.equal(o.key.validate('vps2', '12'), 'The key is 64 hexadecimal characters');
  // The globals' host, client id and key are optional: the list replaces them.
  const g = Object.fromEntries(sections[0].options.map((x) => [x.name, x]));
  for (const n of ['host', 'client_id', 'key']) assert.notEqual(g[n].rmempty, false, n);
});

test('the globals and each concentrator entry check host, port, client id and key alike', () => {
  const { sections } = declared();
  const g = Object.fromEntries(sections[0].options.map((x) => [x.name, x]));
  const c = Object.fromEntries(sections.find((s) => s.args[0] === 'concentrator').options.map((x) => [x.name, x]));
  const key = '0123456789abcdefABCDEF0123456789abcdef0123456789abcdef0123456789';
  const cases = {
    client_id: [['home', true], ['a.b_c-9', true], ['', true], ['x'.repeat(32), true],
      ['x'.repeat(33), 'Use 1 to 32 letters, digits, dots, underscores or dashes'],
      ['my router', 'Use 1 to 32 letters, digits, dots, underscores or dashes']],
    key: [[key, true], ['', true], [key.slice(1), 'The key is 64 hexadecimal characters'],
      [`${key.slice(1)}g`, 'The key is 64 hexadecimal characters']],
  };
  for (const [sid, o] of [['globals', g], ['vps2', c]]) {
    assert.equal(o.host.datatype, 'host', `${sid} host`);
    assert.equal(o.port.datatype, 'port', `${sid} port`);
    assert.equal(o.port.placeholder, '4850', `${sid} port`);
    assert.equal(o.key.password, true, `${sid} key`);
    for (const [name, rows] of Object.entries(cases))
      for (const [value, want] of rows) assert.equal(o[name].validate(sid, value), want, `${sid} ${name} ${value}`);
  }
  // In the list each entry needs them; the key is edited in the entry's dialog only.
  for (const n of ['host', 'client_id', 'key']) assert.equal(c[n].rmempty, false, n);
  assert.equal(c.key.modalonly, true);
});
