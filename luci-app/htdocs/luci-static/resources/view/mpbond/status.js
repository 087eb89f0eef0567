'use strict';
'require view';
'require dom';
'require rpc';
'require poll';
'require ui';

/*
 * mpbond status page. Draws the agent's status document (docs/STATUS.md,
 * schema "mpbond.status/1"), fetched over ubus from the rpcd plugin
 * /usr/libexec/rpcd/mpbond, and refreshes it every 3 seconds.
 *
 * Every value from the document reaches the DOM as a text node: strings are
 * always handed to E() inside an array (a bare string child is parsed as
 * HTML by LuCI's dom.append), and the SVG graph is built with
 * createElementNS and textContent.
 *
 * A call refused for the session (it expired or was logged out: uhttpd
 * answers JSON-RPC error -32002 "Access denied", or HTTP 403) is left to
 * LuCI, which shows its own "Session expired" notice: the page keeps what it
 * shows and claims no broken install.
 */

var POLL_SECS = 3;
var HISTORY = 60; /* samples kept per WAN: 60 x 3 s = the last 3 minutes */
var SVG_NS = 'http://www.w3.org/2000/svg';
var GRAPH_W = 600, GRAPH_H = 160;
var STATES = { up: '#2e9c3a', degraded: '#e07b00', down: '#d0302a', unknown: '#808080' };
var PALETTE = [ '#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2' ];

var callStatus = rpc.declare({
	object: 'mpbond',
	method: 'status'
});

/* What fetchStatus gives for a session error: nothing to draw. */
var SESSION_ERROR = {};

function isSessionError(err) {
	var name = err && err.name, msg = String(err && err.message || err);
	return name === 'PermissionError' || name === 'SessionError' ||
		/failed with (error -32002|HTTP error 403)\b/.test(msg);
}

/* Formatting: null means unknown and prints as a dash, never as zero. */
function dash(v) { return (v === null || v === undefined || v === '') ? '\u2013' : String(v); }

function fmtRate(bps) {
	if (typeof(bps) !== 'number') return dash(null);
	var units = [ 'bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s' ], i = 0;
	while (bps >= 1000 && i < units.length - 1) { bps /= 1000; i++; }
	return (i ? bps.toFixed(bps < 10 ? 2 : 1) : bps.toFixed(0)) + ' ' + units[i];
}

/* Bytes in decimal units, as carriers bill them (1 GB = 10^9 bytes). */
function fmtBytes(n) {
	if (typeof(n) !== 'number') return dash(null);
	var units = [ 'B', 'kB', 'MB', 'GB', 'TB' ], i = 0;
	while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
	return (i ? n.toFixed(n < 10 ? 1 : 0) : n.toFixed(0)) + ' ' + units[i];
}

/* The latency guard ([udp] latency_guard): off, waiting for a protected flow, or what
 * it does to the bulk downloads while one runs (docs/STATUS.md, latency_guard). */
function guardText(g) {
	var kib = function(b) { return typeof(b) === 'number' ? Math.round(b / 1024) + ' KiB' : dash(null); };
	if (!g.enabled)
		return _('off');
	if (typeof(g.clamp) === 'number')
		return _('protecting') + ' ' + dash(g.protected_flows) + ' ' + _('flows') + ': ' +
			_('new bulk connections open with a receive window of') + ' ' + kib(g.clamp) +
			(typeof(g.pace) === 'number' ? '; ' + _('downloads already running are read at') + ' ' + fmtRate(g.pace * 8) : '');
	if (g.protected_flows > 0)
		return dash(g.protected_flows) + ' ' + _('protected flows, nothing to limit (the paths\' window') + ' ' +
			kib(g.window) + ' ' + _('is not below') + ' ' + kib(g.release) + ')';
	return _('on, no protected flow');
}

/* What a WAN's data plan does to it now. */
function planText(w) {
	if (!w.metered) return _('unmetered');
	return (w.over_allowance ? _('over allowance') : _('metered')) + ', ' +
		(w.standby ? _('standby') : _('in use'));
}

/* The mode, and why the agent made a WAN a backup if it did: "backup (demoted: rtt 310 ms vs 15 ms, ...)". */
function fmtMode(w) {
	if (w.quality !== 'demoted') return dash(w.mode);
	return E('span', { class: 'mpbond-demoted', style: 'color:' + STATES.degraded },
		[ dash(w.mode) + ' (' + _('demoted') + ': ' + dash(w.quality_reason) + ')' ]);
}

/* Missed over expected in percent, one decimal: "0.5 %". */
function fmtPct(missed, expected) {
	if (typeof(missed) !== 'number' || typeof(expected) !== 'number') return dash(null);
	return (expected > 0 ? (missed * 100 / expected).toFixed(1) : '0.0') + ' %';
}

function fmtNum(v, unit, digits) {
	return (typeof(v) === 'number') ? v.toFixed(digits) + ' ' + unit : dash(null);
}

/* The last state change: "down 12s ago (passive)". */
function fmtChange(c) {
	if (!c || typeof(c.secs_ago) !== 'number') return dash(null);
	return dash(c.state) + ' ' + fmtUptime(c.secs_ago) + ' ' + _('ago') + ' (' + dash(c.cause) + ')';
}

/* Bytes a day, decimal units: "4.1 MB/day". */
function fmtBytesDay(b) {
	if (typeof(b) !== 'number') return dash(null);
	var units = [ 'B', 'kB', 'MB', 'GB' ], i = 0;
	while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
	return (i ? b.toFixed(b < 10 ? 1 : 0) : b.toFixed(0)) + ' ' + units[i] + '/' + _('day');
}

function fmtUptime(s) {
	if (typeof(s) !== 'number') return dash(null);
	var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
	return (d ? d + 'd ' : '') + h + 'h ' + m + 'm ' + Math.floor(s % 60) + 's';
}

function stateOf(wan) { return STATES.hasOwnProperty(wan.state) ? wan.state : 'unknown'; }

function svg(tag, attrs, children) {
	var el = document.createElementNS(SVG_NS, tag);
	for (var k in attrs) el.setAttribute(k, attrs[k]);
	(children || []).forEach(function(c) { el.appendChild(c); });
	return el;
}

function svgText(x, y, anchor, text) {
	var t = svg('text', { x: x, y: y, 'text-anchor': anchor, 'font-size': 11, fill: '#666' });
	t.textContent = text;
	return t;
}

function row(cells, attrs) {
	return E('tr', Object.assign({ class: 'tr' }, attrs || {}), cells.map(function(c) {
		return E('td', { class: 'td left' }, Array.isArray(c) ? c : [ c ]);
	}));
}

function kvTable(pairs) {
	return E('table', { class: 'table' }, pairs.map(function(p) {
		return E('tr', { class: 'tr' }, [
			E('td', { class: 'td left', width: '33%' }, [ p[0] ]),
			E('td', { class: 'td left', 'data-field': p[2] }, [ p[1] ])
		]);
	}));
}

function alertBox(level, title, lines, id) {
	return E('div', { class: 'alert-message ' + level, id: id }, [
		E('h4', {}, [ title ])
	].concat(lines.map(function(l) { return E('p', {}, [ l ]); })));
}

return view.extend({
	handleSaveApply: null,
	handleSave: null,
	handleReset: null,

	fetchStatus: function() {
		return callStatus().catch(function(err) {
			if (isSessionError(err))
				return SESSION_ERROR;
			/* The first line: LuCI appends a stack trace to its error messages. */
			var detail = String(err && err.message || err).split('\n')[0];
			return { error: 'status service unavailable', detail: detail };
		});
	},

	load: function() {
		return this.fetchStatus();
	},

	render: function(status) {
		this.history = {}; /* WAN name -> [rx_bps, ...], oldest first */
		this.colours = {}; /* WAN name -> graph colour, kept for the page's lifetime */
		this.root = E('div', { id: 'mpbond-status' });
		this.update(status);
		poll.add(L.bind(function() {
			return this.fetchStatus().then(L.bind(this.update, this));
		}, this), POLL_SECS);
		return E('div', {}, [ E('h2', {}, [ _('mpbond') ]), this.root ]);
	},

	update: function(st) {
		if (st === SESSION_ERROR)
			return;
		dom.content(this.root, this.sections(st || {}));
	},

	sections: function(st) {
		if (st.error !== undefined || typeof(st.schema) !== 'string')
			return [ this.renderDown(st) ];
		var out = this.renderWarnings(st);
		if (st.schema.split('/')[0] !== 'mpbond.status' || st.schema.split('/')[1] !== '1')
			out.push(alertBox('warning', _('Unknown status format'), [ dash(st.schema) ], 'mpbond-schema'));
		var wans = Array.isArray(st.wans) ? st.wans : [];
		this.record(wans);
		return out.concat([ this.renderSummary(st), this.renderWans(wans), this.renderProtected(st.protected),
			this.renderUsage(wans) ]).concat(st.udp ? [ this.renderUdp(st.udp, wans) ] : []).concat([ this.renderGraph(wans) ]);
	},

	renderDown: function(st) {
		var agentDown = (st.error === 'agent not running');
		return alertBox('danger',
			agentDown ? _('The mpbond agent is not running') : _('mpbond status is not available'),
			[ dash(st.detail || st.error),
			  agentDown ? _('LAN traffic is not bonded. Check "logread -e mpbond" and start the service with "/etc/init.d/mpbond start".')
			            : _('Check that the mpbond package is installed and that rpcd has been restarted.') ],
			'mpbond-down');
	},

	renderWarnings: function(st) {
		var k = st.kernel || {}, out = [];
		if (k.mptcp === false)
			out.push(alertBox('danger', _('MPTCP is not available in this kernel'),
				[ _('net.mptcp.enabled is not 1, so connections cannot be spread over the WANs.'),
				  _('Kernel release') + ': ' + dash(k.release) ], 'mpbond-mptcp'));
		if (Array.isArray(k.missing) && k.missing.length)
			out.push(alertBox('warning', _('Kernel features missing'), k.missing.map(dash), 'mpbond-missing'));
		return out;
	},

	/* With several concentrators: one line each, its state coloured
	 * (active/standby/down), RTT and the connections through it now. */
	concentratorRows: function(list) {
		if (!Array.isArray(list) || list.length < 2)
			return [];
		var colour = { active: STATES.up, standby: '#1f77b4', down: STATES.down };
		return [ [ _('Concentrators'), E('div', {}, list.map(function(c) {
			var state = String(c.state);
			return E('div', { class: 'mpbond-concentrator', 'data-name': String(c.name) }, [
				dash(c.name) + ' (' + dash(c.address) + ', ' + _('priority') + ' ' + dash(c.priority) + '): ',
				E('span', { class: 'mpbond-conc-state', style: 'color:' + (colour[state] || STATES.unknown) + ';font-weight:bold' }, [ state ]),
				', ' + _('RTT') + ' ' + fmtNum(c.rtt_ms, 'ms', 1) + ', ' + dash(c.connections) + ' ' + _('connections')
			]);
		})), 'concentrators' ] ];
	},

	renderSummary: function(st) {
		var c = st.concentrator || {}, n = st.connections || {};
		var reach = c.reachable ? _('reachable') : _('unreachable') + (c.last_error ? ': ' + c.last_error : '');
		var redirect = c.redirect
			? E('span', { class: 'mpbond-redirect-on', style: 'color:' + STATES.up }, [ _('active: LAN TCP is bonded') ])
			: E('span', { class: 'mpbond-redirect-off', style: 'color:' + STATES.down + ';font-weight:bold' },
				[ _('inactive: failing open, LAN traffic goes out directly, not bonded') ]);
		return E('div', { class: 'cbi-section' }, [
			E('h3', {}, [ _('Overview') ]),
			kvTable([
				[ _('Concentrator'), E('span', { style: 'color:' + (c.reachable ? STATES.up : STATES.down) },
					[ dash(c.host) + ' (' + dash(c.address) + '), ' + reach ]), 'concentrator' ],
				[ _('Concentrator RTT'), fmtNum(c.rtt_ms, 'ms', 1), 'concentrator-rtt' ],
			].concat(this.concentratorRows(st.concentrators)).concat([
				[ _('Redirect'), redirect, 'redirect' ],
				[ _('Connections'), _('active') + ' ' + dash(n.active) + ', ' + _('total') + ' ' + dash(n.total) +
					', ' + _('fallbacks to plain TCP') + ' ' + dash(n.fallbacks) + ', ' + _('direct') + ' ' +
					dash(n.direct) + ', ' + _('refused') + ' ' + dash(n.refused), 'connections' ],
			]).concat(st.udp ? [
				[ _('UDP flows'), _('active') + ' ' + dash(st.udp.active) + ' (' + _('bonded') + ' ' +
					dash(st.udp.bonded_active) + '), ' + _('total') + ' ' + dash(st.udp.total) + ', ' + _('direct') +
					' ' + dash(st.udp.direct) + ', ' + _('refused') + ' ' + dash(st.udp.refused) + '; ' +
					_('up') + ' ' + fmtBytes(st.udp.bytes_up) + ', ' + _('down') + ' ' + fmtBytes(st.udp.bytes_down) +
					' ' + _('(all WANs)') + ', ' + _('dropped (queue full)') + ' ' + dash(st.udp.drops_queue_full) +
					', ' + _('dropped (flow limit)') + ' ' + dash(st.udp.drops_flow_limit),
					'udp' ]
			] : []).concat(st.bypass_names ? [
				[ _('Bypass domains'), (st.bypass_names.domains || []).join(', ') + '; ' +
					(st.bypass_names.resolver_active ? _('filled by') + ' ' + dash(st.bypass_names.resolver) :
						_('NOT ACTIVE') + ': ' + dash(st.bypass_names.resolver_problem)) + '; ' +
					_('addresses') + ' ' + dash(st.bypass_names.ipv4_addresses) + ' IPv4, ' +
					dash(st.bypass_names.ipv6_addresses) + ' IPv6',
					'bypass_names' ]
			] : []).concat(st.latency_guard ? [
				[ _('Latency guard'), guardText(st.latency_guard), 'latency_guard' ]
			] : []).concat([
				[ _('Agent'), _('version') + ' ' + dash(st.version) + ', ' + _('up') + ' ' + fmtUptime(st.uptime_secs) +
					', ' + _('kernel') + ' ' + dash((st.kernel || {}).release), 'agent' ]
			]))
		]);
	},

	renderWans: function(wans) {
		var head = E('tr', { class: 'tr table-titles' }, [
			_('Interface'), _('State'), _('Mode'), _('Addresses'), _('Gateway'), _('RTT'), _('Loss'),
			_('Rx rate'), _('Tx rate'), _('Subflows'), _('Last change'), _('Probe cost')
		].map(function(t) { return E('th', { class: 'th left' }, [ t ]); }));
		var rows = wans.map(function(w) {
			var s = stateOf(w);
			return row([
				dash(w.name) + (w.device && w.device !== w.name ? ' (' + w.device + ')' : ''),
				E('span', { class: 'mpbond-state mpbond-state-' + s, style: 'color:' + STATES[s] + ';font-weight:bold' }, [ s ]),
				fmtMode(w),
				ui.itemlist(E('span'), (Array.isArray(w.addresses) && w.addresses.length ? w.addresses : [ null ])
					.reduce(function(a, x) { return a.concat([ null, dash(x) ]); }, [])),
				dash(w.gateway), fmtNum(w.rtt_ms, 'ms', 1), fmtNum(w.loss_pct, '%', 1),
				fmtRate(w.rx_bps), fmtRate(w.tx_bps), dash(w.subflows),
				fmtChange(w.last_change), fmtBytesDay(w.probe_bytes_per_day)
			], { class: 'tr mpbond-wan', 'data-wan': dash(w.name) });
		});
		if (!rows.length)
			rows.push(E('tr', { class: 'tr placeholder' }, [ E('td', { class: 'td', colspan: 12 }, [ _('No WAN interfaces found') ]) ]));
		return E('div', { class: 'cbi-section' }, [
			E('h3', {}, [ _('WAN interfaces') ]),
			E('table', { class: 'table', id: 'mpbond-wans' }, [ head ].concat(rows))
		]);
	},

	/* Bytes per WAN today and this billing month, and what the data plan does. */
	/* Protected UDP flows (two legs over two WANs): nothing until a flow was classed protect. */
	renderProtected: function(p) {
		if (!p || !(p.total || p.fallbacks || (Array.isArray(p.flows) && p.flows.length)))
			return E('div');
		var seen = (p.datagrams_down || 0) + (p.lost_down || 0);
		var head = E('tr', { class: 'tr table-titles' }, [
			_('Client'), _('Destination'), _('Mode'), _('Legs (loss before merge)'), _('Loss before protection'),
			_('Loss after merge'), _('Recovered'), _('Protection')
		].map(function(t) { return E('th', { class: 'th left' }, [ t ]); }));
		var rows = (Array.isArray(p.flows) ? p.flows : []).map(function(f) {
			var legs = (Array.isArray(f.legs) ? f.legs : []).map(function(l) {
				return dash(l.wan) + ' ' + dash(l.state) + ' (' +
					fmtPct(l.missed_down, (l.datagrams_down || 0) + (l.missed_down || 0)) + ')';
			});
			return row([
				dash(f.client), dash(f.destination) + (f.origin == 'auto' ? ' ' + _('(auto)') : ''), dash(f.mode), legs.length ? legs.join(', ') : _('no legs'),
				fmtPct(f.lost_before_down, (f.datagrams_down || 0) + (f.lost_down || 0)),
				fmtPct(f.lost_down, (f.datagrams_down || 0) + (f.lost_down || 0)),
				dash(f.recovered_down),
				fmtBytes((f.protection_bytes_up || 0) + (f.protection_bytes_down || 0))
			], { class: 'tr mpbond-protected-flow' });
		});
		return E('div', { class: 'cbi-section' }, [
			E('h3', {}, [ _('Protected UDP flows') ]),
			kvTable([
				[ _('Flows'), _('active') + ' ' + dash(p.active) + ', ' + _('total') + ' ' + dash(p.total) + ', ' +
					_('bonded instead') + ' ' + dash(p.fallbacks) + ', ' + _('legs replaced') + ' ' + dash(p.legs_replaced),
					'protected' ],
				[ _('Loss after merge'), fmtPct(p.lost_down, seen) + ' (' + dash(p.lost_down) + ' / ' + dash(seen) + ')',
					'protected-loss' ],
				[ _('Loss before protection'), fmtPct(p.lost_before_down, seen) + ' (' + dash(p.lost_before_down) + ' / ' +
					dash(seen) + '), ' + _('recovered') + ' ' + dash(p.recovered_down), 'protected-before' ],
				[ _('Protection bytes'), fmtBytes(p.protection_bytes), 'protected-bytes' ]
			]),
			E('table', { class: 'table', id: 'mpbond-protected' }, [ head ].concat(rows))
		]);
	},

	renderUsage: function(wans) {
		var head = E('tr', { class: 'tr table-titles' }, [
			_('Interface'), _('Data plan'), _('Today rx'), _('Today tx'), _('Month rx'), _('Month tx'),
			_('Month from'), _('Allowance')
		].map(function(t) { return E('th', { class: 'th left' }, [ t ]); }));
		var rows = wans.map(function(w) {
			var u = w.usage || {}, plan = planText(w);
			var planCell = E('span', {
				class: 'mpbond-plan' + (w.over_allowance ? ' mpbond-over' : ''),
				style: w.over_allowance ? 'color:' + STATES.down + ';font-weight:bold' : ''
			}, [ plan ]);
			return row([
				dash(w.name), planCell, fmtBytes(u.today_rx_bytes), fmtBytes(u.today_tx_bytes),
				fmtBytes(u.month_rx_bytes), fmtBytes(u.month_tx_bytes), dash(u.period_start),
				fmtBytes(w.allowance_bytes)
			], { class: 'tr mpbond-usage', 'data-wan': dash(w.name) });
		});
		if (!rows.length)
			rows.push(E('tr', { class: 'tr placeholder' }, [ E('td', { class: 'td', colspan: 8 }, [ _('No WAN interfaces found') ]) ]));
		return E('div', { class: 'cbi-section' }, [
			E('h3', {}, [ _('Data usage') ]),
			E('table', { class: 'table', id: 'mpbond-usage' }, [ head ].concat(rows))
		]);
	},

	/* LAN UDP flows' bytes per WAN (udp_rx_bytes/udp_tx_bytes), and those on an
	 * address no WAN holds now. Only with the agent's UDP interception on. */
	renderUdp: function(u, wans) {
		var head = E('tr', { class: 'tr table-titles' }, [
			_('Interface'), _('UDP received'), _('UDP sent')
		].map(function(t) { return E('th', { class: 'th left' }, [ t ]); }));
		var rows = wans.map(function(w) {
			return row([ dash(w.name), fmtBytes(w.udp_rx_bytes), fmtBytes(w.udp_tx_bytes) ],
				{ class: 'tr mpbond-udp-wan', 'data-wan': dash(w.name) });
		});
		if ((u.unattributed_rx_bytes || 0) + (u.unattributed_tx_bytes || 0) > 0)
			rows.push(row([ _('no WAN now'), fmtBytes(u.unattributed_rx_bytes), fmtBytes(u.unattributed_tx_bytes) ],
				{ class: 'tr mpbond-udp-unattributed' }));
		if (!rows.length)
			rows.push(E('tr', { class: 'tr placeholder' }, [ E('td', { class: 'td', colspan: 3 }, [ _('No WAN interfaces found') ]) ]));
		return E('div', { class: 'cbi-section' }, [
			E('h3', {}, [ _('UDP flows by WAN') ]),
			E('p', {}, [ _('Intercepted LAN UDP since the agent started: bonded flows count their MPTCP subflows on each WAN, direct flows the WAN the router sent them on.') ]),
			E('table', { class: 'table', id: 'mpbond-udp-wans' }, [ head ].concat(rows))
		]);
	},

	/* Keeps the last HISTORY rx_bps samples per WAN; drops WANs that went away. */
	record: function(wans) {
		var seen = {};
		wans.forEach(L.bind(function(w) {
			var name = dash(w.name), h = this.history[name] || (this.history[name] = []);
			seen[name] = true;
			if (!this.colours[name])
				this.colours[name] = PALETTE[Object.keys(this.colours).length % PALETTE.length];
			h.push(typeof(w.rx_bps) === 'number' ? w.rx_bps : null);
			if (h.length > HISTORY) h.shift();
		}, this));
		Object.keys(this.history).forEach(L.bind(function(n) { if (!seen[n]) delete this.history[n]; }, this));
	},

	renderGraph: function(wans) {
		var names = Object.keys(this.history), max = 1000;
		names.forEach(L.bind(function(n) {
			this.history[n].forEach(function(v) { if (v !== null && v > max) max = v; });
		}, this));
		max *= 1.1;
		var step = GRAPH_W / (HISTORY - 1);
		var grid = [ 0.25, 0.5, 0.75 ].map(function(f) {
			return svg('line', { x1: 0, x2: GRAPH_W, y1: GRAPH_H * f, y2: GRAPH_H * f, stroke: '#ddd' });
		});
		var lines = names.map(L.bind(function(n) {
			var h = this.history[n], off = HISTORY - h.length, pts = [];
			h.forEach(function(v, i) {
				if (v !== null)
					pts.push(((off + i) * step).toFixed(1) + ',' + (GRAPH_H - v / max * GRAPH_H).toFixed(1));
			});
			var line = svg('polyline', { points: pts.join(' '), fill: 'none', stroke: this.colours[n], 'stroke-width': 2 });
			line.setAttribute('data-wan', n);
			return line;
		}, this));
		var chart = svg('svg', {
			id: 'mpbond-graph', viewBox: '-4 -14 ' + (GRAPH_W + 8) + ' ' + (GRAPH_H + 30),
			width: '100%', style: 'max-width:' + (GRAPH_W + 8) + 'px', role: 'img'
		}, grid.concat([
			svg('rect', { x: 0, y: 0, width: GRAPH_W, height: GRAPH_H, fill: 'none', stroke: '#bbb' }),
			svgText(4, -3, 'start', fmtRate(max)),
			svgText(0, GRAPH_H + 13, 'start', '-' + Math.round(HISTORY * POLL_SECS / 60) + ' min'),
			svgText(GRAPH_W, GRAPH_H + 13, 'end', _('now'))
		], lines));
		var byName = {};
		wans.forEach(function(w) { byName[dash(w.name)] = w; });
		var legend = E('ul', { id: 'mpbond-legend', style: 'list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1.5em' },
			names.map(L.bind(function(n) {
				return E('li', { 'data-wan': n }, [
					E('span', { style: 'display:inline-block;width:1em;height:0.6em;margin-right:0.4em;background:' + this.colours[n] }),
					n + ': ' + fmtRate((byName[n] || {}).rx_bps)
				]);
			}, this)));
		return E('div', { class: 'cbi-section' }, [
			E('h3', {}, [ _('Receive rate per WAN') ]), chart, legend
		]);
	}
});
