// Static checks of the package files: the ACL grants exactly what the views
// use, the menu points at views that exist, and the Makefile is a luci.mk one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
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
});
