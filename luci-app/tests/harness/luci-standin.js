/*
 * A small stand-in for the parts of LuCI's client-side runtime (luci.js, ui.js)
 * that the mpbond views use, so the view files run UNMODIFIED in a plain page:
 *
 *   L.require(name)    fetches a module's source, reads its 'require x [as y]'
 *                      directives, and runs it as new Function(deps..., source)
 *                      like luci.js does; a returned class is instantiated.
 *   E(), dom           the same semantics as LuCI's dom.create/append/content/attr,
 *                      including the one that matters for safety: a bare string
 *                      child is assigned to innerHTML, only array items become
 *                      text nodes (and a null item in an array becomes "null").
 *   rpc.declare        POSTs LuCI's JSON-RPC "call" to ./ubus and resolves with
 *                      result[1]; a failure rejects as rpc.js does, with an
 *                      Error named RPCError: "RPC call to O/M failed with HTTP
 *                      error N: TEXT", "... with error CODE: MESSAGE" (a
 *                      JSON-RPC error) or "... with ubus code N: TEXT". A
 *                      JSON-RPC error -32002 (access denied: the session
 *                      expired) first runs LuCI's interceptor, which shows
 *                      LuCI's "Session expired" notice (recorded in
 *                      standin.sessionExpired) and stops the polling.
 *                      With ?fixture=URL in the page address it GETs that file
 *                      instead (manual viewing with nothing but a static server).
 *   poll.add           records the function; window.standin.tick() runs every
 *                      registered function once (tests drive time), and
 *                      ?autopoll=1 runs them on a timer for manual viewing.
 *   view.extend        load() -> render() -> into #view, like LuCI's View.
 *   ui.itemlist, _()   as in LuCI (_ returns the source string).
 *
 * Only the APIs above exist; a view that needs anything else fails loudly.
 */
(function() {
	'use strict';

	var dom = {
		elem: function(e) { return e != null && typeof(e) === 'object' && 'nodeType' in e; },
		append: function(node, children) {
			if (Array.isArray(children)) {
				for (var i = 0; i < children.length; i++)
					if (this.elem(children[i])) node.appendChild(children[i]);
					else if (children !== null && children !== undefined) /* sic: LuCI tests the array here */
						node.appendChild(document.createTextNode('' + children[i]));
				return node.lastChild;
			}
			if (typeof(children) === 'function') return this.append(node, children(node));
			if (this.elem(children)) return node.appendChild(children);
			if (children !== null && children !== undefined) { node.innerHTML = '' + children; return node.lastChild; }
			return null;
		},
		content: function(node, children) {
			while (node.firstChild) node.removeChild(node.firstChild);
			return this.append(node, children);
		},
		attr: function(node, attrs) {
			for (var k in attrs) {
				if (!attrs.hasOwnProperty(k) || attrs[k] == null) continue;
				if (typeof(attrs[k]) === 'function') node.addEventListener(k, attrs[k]);
				else if (typeof(attrs[k]) === 'object') node.setAttribute(k, JSON.stringify(attrs[k]));
				else node.setAttribute(k, attrs[k]);
			}
		},
		create: function(html, attr, data) {
			if (!(attr instanceof Object) || Array.isArray(attr)) { data = attr; attr = null; }
			var elem;
			if (Array.isArray(html)) {
				elem = document.createDocumentFragment();
				for (var i = 0; i < html.length; i++) elem.appendChild(this.create(html[i]));
			}
			else if (this.elem(html)) elem = html;
			else if (html.charCodeAt(0) === 60) throw new Error('stand-in: E() with markup is not supported');
			else elem = document.createElement(html);
			this.attr(elem, attr);
			this.append(elem, data);
			return elem;
		}
	};

	var params = new URLSearchParams(location.search);
	var pollFns = [];
	var rpcCalls = [];

	var pollStopped = false;
	var poll = {
		add: function(fn, interval) { pollFns.push({ fn: fn, interval: interval }); },
		stop: function() { pollStopped = true; }
	};

	/* L.raise('RPCError', ...): the message carries a stack trace, as LuCI's does. */
	function rpcError(message) {
		var e = new Error(message + '\n\nstacktrace:\n  at handleCallReply (rpc.js)');
		e.name = 'RPCError';
		return e;
	}

	/* L.notifySessionExpiry: LuCI's own modal, and no more polling. */
	function notifySessionExpiry() {
		poll.stop();
		window.standin.sessionExpired = true;
	}

	var rpc = {
		declare: function(opts) {
			return function() {
				var args = {}, names = opts.params || [];
				for (var i = 0; i < names.length; i++) args[names[i]] = arguments[i];
				rpcCalls.push({ object: opts.object, method: opts.method, args: args });
				var req = params.get('fixture')
					? fetch(params.get('fixture'), { cache: 'no-store' })
					: fetch('ubus', { method: 'POST', headers: { 'Content-Type': 'application/json' },
						body: JSON.stringify({ jsonrpc: '2.0', id: rpcCalls.length, method: 'call',
							params: [ '00000000000000000000000000000000', opts.object, opts.method, args ] }) });
				var what = 'RPC call to ' + opts.object + '/' + opts.method + ' failed with ';
				return req.then(function(r) {
					if (!r.ok) throw rpcError(what + 'HTTP error ' + r.status + ': ' + (r.statusText || '?'));
					return r.json();
				}).then(function(reply) {
					if (params.get('fixture')) return reply;
					if (reply.error) {
						if (reply.error.code === -32002) notifySessionExpiry();
						throw rpcError(what + 'error ' + reply.error.code + ': ' + (reply.error.message || '?'));
					}
					if (!Array.isArray(reply.result) || reply.result[0] !== 0)
						throw rpcError(what + 'ubus code ' + (reply.result ? reply.result[0] : '?') + ': Unknown error');
					return reply.result[1];
				});
			};
		}
	};

	function View() {}
	View.prototype.load = function() {};
	View.prototype.render = function() {};

	var view = {
		extend: function(proto) {
			var Ctor = function() {
				var self = this, vp = document.getElementById('view');
				dom.content(vp, E('div', { class: 'spinning' }, [ 'Loading view…' ]));
				this.ready = Promise.resolve(this.load()).then(function(data) { return self.render(data); })
					.then(function(nodes) { dom.content(vp, nodes); });
			};
			Ctor.prototype = Object.assign(Object.create(View.prototype), proto);
			return Ctor;
		}
	};

	var ui = {
		itemlist: function(node, items, separators) {
			var children = [];
			if (!Array.isArray(separators)) separators = [ separators || E('br') ];
			for (var i = 0; i < items.length; i += 2) {
				if (items[i + 1] === null || items[i + 1] === undefined) continue;
				var sep = separators[(i / 2) % separators.length];
				children.push(E('span', { class: 'nowrap' }, [ items[i] ? E('strong', items[i] + ': ') : '', items[i + 1] ]));
				if (i + 2 < items.length) children.push(dom.elem(sep) ? sep.cloneNode(true) : sep);
			}
			dom.content(node, children);
			return node;
		}
	};

	var modules = { view: view, dom: dom, rpc: rpc, poll: poll, ui: ui };

	var L = {
		bind: function(fn, self) {
			var extra = Array.prototype.slice.call(arguments, 2);
			return function() { return fn.apply(self, extra.concat(Array.prototype.slice.call(arguments))); };
		},
		/* 'view.mpbond.status' -> BASE/view/mpbond/status.js */
		require: function(name) {
			if (modules.hasOwnProperty(name)) return Promise.resolve(modules[name]);
			var url = window.standin.base + name.replace(/\./g, '/') + '.js';
			return fetch(url, { cache: 'no-store' }).then(function(r) {
				if (!r.ok) throw new Error('cannot load ' + url + ': HTTP ' + r.status);
				return r.text();
			}).then(function(source) {
				var re = /^\s*'require\s+([\w.]+)(?:\s+as\s+(\w+))?';?/, head = source.replace(/^\s*'use strict';/, ''), m;
				var deps = [], names = [];
				while ((m = re.exec(head)) !== null) {
					deps.push(m[1]);
					names.push(m[2] || m[1].split('.').pop());
					head = head.slice(m[0].length);
				}
				return Promise.all(deps.map(function(d) {
					if (!modules.hasOwnProperty(d)) throw new Error('stand-in lacks module "' + d + '"');
					return modules[d];
				})).then(function(instances) {
					var result = new Function(names.join(','), source).apply(window, instances);
					return (typeof(result) === 'function') ? new result() : result;
				});
			});
		}
	};

	window.L = L;
	window.E = function() { return dom.create.apply(dom, arguments); };
	window._ = function(s) { return s; };
	window.standin = {
		base: '../../htdocs/luci-static/resources/',
		modules: modules,
		rpcCalls: rpcCalls,
		polls: function() { return pollFns.map(function(p) { return p.interval; }); },
		sessionExpired: false,
		tick: function() {
			return pollStopped ? Promise.resolve() : Promise.all(pollFns.map(function(p) { return p.fn(); }));
		},
		boot: function(viewName) {
			return L.require('view.' + viewName.replace(/\//g, '.')).then(function(v) { return v.ready; });
		}
	};

	if (params.get('autopoll'))
		setInterval(function() { window.standin.tick(); }, 3000);
})();
