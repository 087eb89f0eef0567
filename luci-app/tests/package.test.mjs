// Static checks of the package files: the ACL grants exactly what the views
// use, the menu points at views that exist, the Makefile is a luci.mk one, and
// cross/package-luci.sh turns the app into an .ipk without an SDK.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appDir } from './lib.mjs';

const read = (p) => readFileSync(join(appDir, p), 'utf8');
const viewDir = 'htdocs/luci-static/resources/view/mpbond';

test('the ACL grants exactly the ubus methods the views declare, and the mpbond config', () => {
  const acl = JSON.parse(read('root/usr/share/rpcd/acl.d/luci-app-mpbond.json'));
  assert.deepEqual(Object.keys(acl), ['luci-app-mpbond']);
  const declared = {};
  for (const f of readdirSync(join(appDir, viewDir))) {
    for (const m of read(join(viewDir, f)).matchAll(/rpc\.declare\(\{\s*object:\s*'([\w.-]+)',\s*method:\s*'(\w+)'/g))
      (declared[m[1]] ??= []).push(m[2]);
  }
  assert.deepEqual(declared, { mpbond: ['status'] });
  const { read: r, write: w, ...rest } = acl['luci-app-mpbond'];
  assert.deepEqual(Object.keys(rest), ['description']);
  assert.deepEqual(r, { ubus: declared, uci: ['mpbond'] });
  assert.deepEqual(w, { uci: ['mpbond'] });
});

test('the menu is under Services and names views that exist', () => {
  const menu = JSON.parse(read('root/usr/share/luci/menu.d/luci-app-mpbond.json'));
  assert.deepEqual(menu['admin/services/mpbond'].depends.acl, ['luci-app-mpbond']);
  const views = Object.values(menu).filter((e) => e.action.type === 'view').map((e) => e.action.path);
  assert.deepEqual(views, ['mpbond/status', 'mpbond/settings']);
  for (const v of views) assert.ok(existsSync(join(appDir, 'htdocs/luci-static/resources/view', `${v}.js`)), v);
});

test('the Makefile is a luci.mk package', () => {
  const mk = read('Makefile');
  for (const line of ['LUCI_DEPENDS:=+mpbond +luci-base', 'PKG_LICENSE:=Apache-2.0', 'include ../../luci.mk'])
    assert.ok(mk.includes(line), line);
  assert.match(mk, /^LUCI_TITLE:=.+/m);
  // A removal reloads rpcd, defined before luci.mk calls BuildPackage.
  const postrm = mk.indexOf('define Package/luci-app-mpbond/postrm');
  assert.ok(postrm >= 0 && postrm < mk.indexOf('include ../../luci.mk'), 'postrm before luci.mk');
  assert.match(mk.slice(postrm), /^\/etc\/init\.d\/rpcd reload/m);
});

test('cross/package-luci.sh makes an opkg package of the pages, indexed for a feed', () => {
  const out = mkdtempSync(join(tmpdir(), 'mpbond-luci-ipk-'));
  try {
    const env = { ...process.env, SOURCE_DATE_EPOCH: '1700000000' };
    // Under umask 077, so every mode the feed needs is set explicitly.
    const script = join(appDir, '../cross/package-luci.sh');
    const r = spawnSync('sh', ['-c', 'umask 077 && exec sh "$@"', 'sh', script, out], { encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    const ipk = r.stdout.trim();
    assert.match(ipk, /luci-app-mpbond_[\d.]+-r1_all\.ipk$/);
    const tar = (...a) => spawnSync('tar', a, { encoding: 'utf8' });
    assert.deepEqual(tar('-tzf', ipk).stdout.trim().split('\n'), ['./debian-binary', './data.tar.gz', './control.tar.gz']);
    const data = spawnSync('sh', ['-c', `tar -xzOf '${ipk}' ./data.tar.gz | tar -tzvf -`], { encoding: 'utf8' }).stdout;
    const files = Object.fromEntries(data.trim().split('\n').filter((l) => l.startsWith('-'))
      .map((l) => { const f = l.split(/\s+/); return [f[5], f[0]]; }));
    const want = {
      './www/luci-static/resources/view/mpbond/status.js': '-rw-r--r--',
      './www/luci-static/resources/view/mpbond/settings.js': '-rw-r--r--',
      './usr/share/luci/menu.d/luci-app-mpbond.json': '-rw-r--r--',
      './usr/share/rpcd/acl.d/luci-app-mpbond.json': '-rw-r--r--',
      './usr/libexec/rpcd/mpbond': '-rwxr-xr-x',
    };
    assert.deepEqual(files, want);
    const control = spawnSync('sh', ['-c', `tar -xzOf '${ipk}' ./control.tar.gz | tar -xzOf - ./control`], { encoding: 'utf8' }).stdout;
    assert.match(control, /^Package: luci-app-mpbond$/m);
    assert.match(control, /^Architecture: all$/m);
    assert.match(control, /^Depends: libc, mpbond, luci-base$/m);
    const index = readFileSync(join(out, 'Packages'), 'utf8');
    assert.match(index, /^Filename: luci-app-mpbond_[\d.]+-r1_all\.ipk$/m);
    for (const f of ['Packages', 'Packages.gz', ipk])
      assert.equal(statSync(f.startsWith('/') ? f : join(out, f)).mode & 0o777, 0o644, `${f} is world-readable`);
    // postinst and postrm make rpcd reload (its plugin and ACLs), only on a live router.
    const scripts = spawnSync('sh', ['-c', `tar -xzOf '${ipk}' ./control.tar.gz | tar -tzvf -`], { encoding: 'utf8' }).stdout;
    assert.match(scripts, /^-rwxr-xr-x\s.*\s\.\/postrm$/m);
    const postrm = spawnSync('sh', ['-c', `tar -xzOf '${ipk}' ./control.tar.gz | tar -xzOf - ./postrm`], { encoding: 'utf8' }).stdout;
    assert.match(postrm, /^\/etc\/init\.d\/rpcd reload/m);
    const image = spawnSync('sh', ['-c', postrm], { encoding: 'utf8', env: { ...process.env, IPKG_INSTROOT: out } });
    assert.equal(image.status, 0, 'an image build skips it');
    const again = spawnSync('sh', [join(appDir, '../cross/package-luci.sh'), out], { encoding: 'utf8', env });
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(readFileSync(ipk), readFileSync(again.stdout.trim()), 'the same inputs give the same bytes');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
