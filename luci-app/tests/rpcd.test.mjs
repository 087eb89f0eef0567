// The rpcd exec plugin /usr/libexec/rpcd/mpbond, run with `sh` (and busybox sh
// when present) against stand-in agents given by $MPBOND_AGENT.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appDir, fixture, fixtureDir } from './lib.mjs';

const PLUGIN = join(appDir, 'root/usr/libexec/rpcd/mpbond');
const dir = mkdtempSync(join(tmpdir(), 'mpbond-rpcd-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// With busybox, the plugin also runs with ONLY busybox applets on $PATH, as on OpenWrt.
const bbdir = join(dir, 'bin');
mkdirSync(bbdir);
const hasBusybox = spawnSync('busybox', ['--install', '-s', bbdir]).status === 0 && existsSync(join(bbdir, 'tr'));
const shells = [{ label: 'sh', sh: 'sh', PATH: process.env.PATH },
  ...(hasBusybox ? [{ label: 'busybox sh, busybox applets only', sh: join(bbdir, 'sh'), PATH: bbdir }] : [])];

function agent(name, body) {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

function plugin(shell, args, { agentPath, stdin = '{}' } = {}) {
  const r = spawnSync(shell.sh, [PLUGIN, ...args], {
    input: stdin, encoding: 'utf8', timeout: 10000,
    env: { PATH: shell.PATH, ...(agentPath ? { MPBOND_AGENT: agentPath } : {}) },
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

const statusFile = join(fixtureDir('status.json'), 'status.json');
const good = agent('good', `[ "$1 $2" = "status --json" ] || exit 9\ncat '${statusFile}'`);
const down = agent('down', `echo 'cannot connect to "/var/run/mpbond/agent.sock": \\ No such file\ttab' >&2\nexit 1`);
const junk = agent('junk', 'echo "not json"');
// A document with UDP flows and their bytes per WAN (docs/STATUS.md), on one line as the agent prints it.
const withUdp = { ...fixture('status.json'),
  udp: { active: 2, bonded_active: 1, total: 9, direct: 1, refused: 0, upstream_failed: 0, bytes_up: 1200,
    bytes_down: 64000, datagrams_up: 3, datagrams_down: 50, drops_queue_full: 0, drops_flow_limit: 0,
    drops_other_context: 0, drops_lan_busy: 0, resets: 0, unattributed_rx_bytes: 0, unattributed_tx_bytes: 0 } };
withUdp.wans = withUdp.wans.map((w, i) => ({ ...w, udp_rx_bytes: 32000 + i, udp_tx_bytes: 600 + i }));
const udpFile = join(dir, 'status-udp.json');
writeFileSync(udpFile, JSON.stringify(withUdp));
const udpAgent = agent('udp', `[ "$1 $2" = "status --json" ] || exit 9\ncat '${udpFile}'`);
const marker = join(dir, 'pwned');

for (const sh of shells) {
  test(`${sh.label}: list names the one method`, () => {
    assert.deepEqual(JSON.parse(plugin(sh, ['list'])), { status: {} });
  });

  test(`${sh.label}: call status passes the agent's document through`, () => {
    assert.deepEqual(JSON.parse(plugin(sh, ['call', 'status'], { agentPath: good })), fixture('status.json'));
  });

  test(`${sh.label}: UDP flows and their bytes per WAN pass through unchanged`, () => {
    assert.deepEqual(JSON.parse(plugin(sh, ['call', 'status'], { agentPath: udpAgent })), withUdp);
  });

  test(`${sh.label}: a failing agent gives a valid error object`, () => {
    const out = JSON.parse(plugin(sh, ['call', 'status'], { agentPath: down }));
    assert.equal(out.error, 'agent not running');
    assert.equal(out.detail, 'exit status 1: cannot connect to "/var/run/mpbond/agent.sock": \\ No such file tab');
    assert.equal(JSON.parse(plugin(sh, ['call', 'status'], { agentPath: junk })).error, 'agent not running');
    assert.match(JSON.parse(plugin(sh, ['call', 'status'], { agentPath: join(dir, 'absent') })).detail, /is not installed/);
  });

  test(`${sh.label}: request data is read and ignored`, () => {
    const stdin = JSON.stringify({ x: `$(touch ${marker})`, y: `'; touch ${marker}; '` });
    JSON.parse(plugin(sh, ['call', 'status'], { agentPath: good, stdin }));
    assert.equal(existsSync(marker), false);
    assert.equal(JSON.parse(plugin(sh, ['call', 'other'], { stdin })).error, 'unknown method');
  });
}

test('the plugin is executable and parses with sh -n', () => {
  assert.equal(spawnSync('sh', ['-n', PLUGIN]).status, 0);
  assert.match(readFileSync(PLUGIN, 'utf8'), /^#!\/bin\/sh\n/);
  assert.ok(statSync(PLUGIN).mode & 0o111, 'executable bit');
});

const hasShellcheck = spawnSync('shellcheck', ['--version']).status === 0;
test('shellcheck is clean', { skip: !hasShellcheck && 'shellcheck not installed' }, () => {
  const r = spawnSync('shellcheck', ['-s', 'sh', PLUGIN], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout);
});
