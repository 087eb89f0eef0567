'use strict';
'require view';
'require form';
'require uci';
'require tools.widgets as widgets';

/*
 * mpbond settings: a form on /etc/config/mpbond. The option names are the
 * ones the agent reads (router-agent/src/config/uci/map.rs, MAPPINGS); the
 * agent rejects unknown options, so this form writes no others. Empty
 * optional fields are removed, and the agent then uses its defaults, shown
 * here as placeholders.
 */

function pattern(re, msg) {
	return function(section_id, value) {
		return (value === '' || re.test(value)) ? true : msg;
	};
}

/*
 * The host, port, client ID and key a concentrator is reached and
 * authenticated by: the globals' single concentrator and each entry of the
 * concentrator list declare them here, so both check them alike.
 * `add(name, title, description)` declares a form.Value in its section;
 * `labels` gives [title, description] by name. Returns the options by name.
 */
function concentratorOptions(add, labels) {
	var checks = {
		host: function(o) { o.datatype = 'host'; },
		port: function(o) { o.datatype = 'port'; o.placeholder = '4850'; },
		client_id: function(o) {
			o.validate = pattern(/^[A-Za-z0-9._-]{1,32}$/, _('Use 1 to 32 letters, digits, dots, underscores or dashes'));
		},
		key: function(o) {
			o.password = true;
			o.validate = pattern(/^[0-9A-Fa-f]{64}$/, _('The key is 64 hexadecimal characters'));
		}
	};
	var options = {};
	[ 'host', 'port', 'client_id', 'key' ].forEach(function(name) {
		var o = add(name, labels[name][0], labels[name][1]);
		checks[name](o);
		options[name] = o;
	});
	return options;
}

return view.extend({
	render: function() {
		var m, s, o;

		m = new form.Map('mpbond', _('mpbond'),
			_('Bonds every WAN with MPTCP: LAN TCP connections are carried to a concentrator on a VPS, which connects to the destination. Enter the values printed by the concentrator\'s installer.'));

		s = m.section(form.NamedSection, 'globals', 'globals', _('Global settings'));
		s.addremove = false;
		s.tab('general', _('General'));
		s.tab('lan', _('LAN and bypass'));
		s.tab('probe', _('Health probes'));
		s.tab('udp', _('UDP and QUIC'));
		s.tab('advanced', _('Advanced'));

		o = s.taboption('general', form.Flag, 'enabled', _('Enabled'));
		o.rmempty = false;

		concentratorOptions(function(name, title, description) {
			return s.taboption('general', form.Value, name, title, description);
		}, {
			host: [ _('Concentrator host'), _('IP address or host name of the VPS. Leave host, client ID and key empty when the concentrators are listed under "Concentrators" below.') ],
			port: [ _('Concentrator port') ],
			client_id: [ _('Client ID'), _('1 to 32 of A-Z a-z 0-9 . _ -') ],
			key: [ _('Key'), _('64 hexadecimal characters.') ]
		});

		o = s.taboption('lan', widgets.DeviceSelect, 'lan_interface', _('LAN devices'),
			_('TCP from these devices is redirected into the bond.'));
		o.multiple = true;
		o.noaliases = true;
		o.placeholder = 'br-lan';

		o = s.taboption('lan', form.DynamicList, 'bypass_destination', _('Bypass destinations'),
			_('Prefixes that are never bonded (private and local ranges and the concentrator always are).'));
		o.datatype = 'or(ipaddr,cidr)';

		o = s.taboption('lan', form.DynamicList, 'bypass_source', _('Bypass sources'),
			_('LAN prefixes whose traffic is never bonded.'));
		o.datatype = 'or(ipaddr,cidr)';

		o = s.taboption('lan', form.DynamicList, 'bypass_domain', _('Bypass domains'),
			_('Domain names (and every name under them) whose traffic is never bonded, TCP and UDP, e.g. a bank that refuses the VPS address. Needs the dnsmasq-full package.'));
		o.datatype = 'hostname';

		o = s.taboption('lan', form.Value, 'dnsmasq_conf', _('dnsmasq file for bypass domains'),
			_('Written by the agent into a directory dnsmasq reads (its conf-dir). Empty: mpbond-bypass.conf in the first dnsmasq instance\'s conf-dir.'));
		o.placeholder = '/tmp/dnsmasq.cfg01411c.d/mpbond-bypass.conf';
		o.validate = function(section_id, value) {
			return (!value || value.charAt(0) == '/') ? true : _('An absolute path');
		};

		o = s.taboption('probe', form.Value, 'interval_ms', _('Probe interval (ms)'),
			_('How often the concentrator is probed; each WAN takes these unless its entry overrides them.'));
		o.datatype = 'range(100,3600000)';
		o.placeholder = '1000';

		o = s.taboption('probe', form.Value, 'timeout_ms', _('Probe timeout (ms)'));
		o.datatype = 'range(100,3600000)';
		o.placeholder = '1500';

		o = s.taboption('probe', form.Value, 'down_after', _('Down after'),
			_('Failed probes in a row before the redirect is withdrawn and LAN TCP goes out directly.'));
		o.datatype = 'range(1,1000)';
		o.placeholder = '2';

		o = s.taboption('probe', form.Value, 'up_after', _('Up after'), _('Good probes in a row before it is restored.'));
		o.datatype = 'range(1,1000)';
		o.placeholder = '1';

		o = s.taboption('udp', form.Flag, 'udp_enabled', _('Bond UDP'),
			_('LAN UDP (QUIC, calls, games) goes through the concentrator, each flow over every WAN. Off: UDP leaves by the router\'s NAT.'));
		o.default = '1';

		o = s.taboption('udp', form.ListValue, 'udp_default', _('UDP default'),
			_('For UDP no rule below matches. Block answers with ICMP port unreachable, so browsers fall back from QUIC to TCP at once.'));
		o.value('bond', _('Bond'));
		o.value('direct', _('Direct (NAT)'));
		o.value('block', _('Block'));
		o.value('protect', _('Protect (two WANs at once)'));
		o.default = 'bond';

		o = s.taboption('udp', form.Flag, 'udp_auto_protect', _('Protect real-time flows automatically'),
			_('A flow of small datagrams at a steady rate (a call, a game) that no rule protects is sent over two WANs at once after two seconds. Costs one extra copy of such flows; the server sees the flow\'s source port change once.'));
		o.default = '0';

		o = s.taboption('udp', form.Flag, 'udp_latency_guard', _('Keep bulk downloads from delaying protected flows'),
			_('While a protected flow runs, bulk downloads get a receive window just large enough to fill the WANs, so they keep about 10 ms queued on them instead of up to the ISP\'s whole buffer. New connections skip TCP Fast Open meanwhile. With SQM (fq_codel or CAKE) on the WANs this is not needed.'));
		o.default = '1';

		o = s.taboption('udp', form.Value, 'udp_idle_timeout_secs', _('UDP idle timeout (s)'));
		o.datatype = 'range(5,86400)';
		o.placeholder = '120';

		o = s.taboption('advanced', form.Value, 'log_level', _('Log level'), _('A RUST_LOG filter; see logread -e mpbond.'));
		[ 'error', 'warn', 'info', 'debug', 'trace' ].forEach(function(l) { o.value(l); });
		o.placeholder = 'info';

		o = s.taboption('advanced', form.Value, 'listen_port', _('Local proxy port'));
		o.datatype = 'port';
		o.placeholder = '4851';

		o = s.taboption('advanced', form.Value, 'table_base', _('First routing table'),
			_('The agent owns a range of routing tables starting here.'));
		o.datatype = 'uinteger';
		o.placeholder = '2000';

		o = s.taboption('advanced', form.Value, 'rule_priority_base', _('First rule priority'),
			_('The agent owns a range of ip rule priorities starting here.'));
		o.datatype = 'range(1,32000)';
		o.placeholder = '2000';

		o = s.taboption('advanced', form.Value, 'route_protocol', _('Route protocol number'));
		o.datatype = 'range(1,255)';
		o.placeholder = '93';

		o = s.taboption('advanced', form.Value, 'congestion', _('Congestion control'),
			_('Of the connections to the concentrator (uploads). bbr keeps a lossy line (LTE) useful; "system" keeps the kernel default. bbr needs kmod-tcp-bbr.'));
		o.datatype = 'string';
		o.placeholder = 'bbr';

		o = s.taboption('advanced', form.Flag, 'path_quality', _('Demote WANs that hurt the bond'),
			_('A WAN far slower and farther than the best one (or losing many probes) becomes a backup until it has been good for a while.'));
		o.default = '1';
		o.rmempty = false;

		o = s.taboption('advanced', form.Value, 'quality_rtt_ratio', _('Demote from RTT ratio'),
			_('A WAN whose RTT is at least this many times the best WAN\'s, and that carries little, is demoted.'));
		o.datatype = 'range(2,100)';
		o.placeholder = '8';
		o.depends('path_quality', '1');

		o = s.taboption('advanced', form.Value, 'quality_restore_after_secs', _('Restore after (s)'),
			_('How long a demoted WAN must be good again before it carries traffic.'));
		o.datatype = 'range(1,3600)';
		o.placeholder = '30';
		o.depends('path_quality', '1');

		o = s.taboption('advanced', form.Value, 'state_dir', _('State directory'),
			_('Where the data usage of each WAN is kept (written every 15 minutes and at stop). /tmp is lost at reboot.'));
		o.placeholder = '/etc/mpbond';
		o.validate = pattern(/^\//, _('An absolute path'));

		s = m.section(form.GridSection, 'wan', _('WAN interfaces'),
			_('One entry per logical interface. "Backup" interfaces carry traffic only when no "on" interface works.'));
		s.addremove = true;
		s.anonymous = true;
		s.nodescriptions = true;

		o = s.option(widgets.NetworkSelect, 'interface', _('Interface'));
		o.nocreate = true;
		o.rmempty = false;
		/* As in mwan3, a named section without `option interface` is that interface. */
		o.cfgvalue = function(section_id) {
			var v = uci.get('mpbond', section_id, 'interface');
			return v || (uci.get('mpbond', section_id, '.anonymous') ? null : section_id);
		};

		o = s.option(widgets.DeviceSelect, 'device', _('Device'), _('Only if the kernel device is not found from the interface.'));
		o.modalonly = true;
		o.noaliases = true;

		o = s.option(form.ListValue, 'mode', _('Mode'));
		o.value('on', _('On'));
		o.value('backup', _('Backup'));
		o.value('off', _('Off'));
		o.default = 'on';

		o = s.option(form.Flag, 'metered', _('Metered'),
			_('A capped or paid-per-byte line (LTE): carries nothing while an unmetered WAN is up, and takes over at once when none is.'));
		o.default = '0';

		o = s.option(form.Value, 'allowance', _('Monthly allowance'),
			_('Received + sent, with a unit: 500MB, 20GB (1 GB = 10^9 bytes). Past it the WAN is used only when no other WAN works.'));
		o.modalonly = true;
		o.depends('metered', '1');
		o.placeholder = _('none');
		o.validate = pattern(/^\s*\d+(\.\d+)?\s*[MGT]B\s*$/i, _('A number and a unit: MB, GB or TB'));

		o = s.option(form.Value, 'reset_day', _('Billing month starts on day'));
		o.modalonly = true;
		o.datatype = 'range(1,28)';
		o.placeholder = '1';

		o = s.option(form.Value, 'interval_ms', _('Probe interval (ms)'));
		o.modalonly = true;
		o.datatype = 'range(100,3600000)';
		o.placeholder = _('as in Health probes');

		o = s.option(form.Value, 'idle_interval_ms', _('Idle probe interval (ms)'),
			_('Between probes while the WAN is healthy and carries no traffic (a busy WAN is not probed).'));
		o.modalonly = true;
		o.datatype = 'range(100,3600000)';
		o.placeholder = '3000';

		o = s.option(form.Value, 'timeout_ms', _('Probe timeout (ms)'));
		o.modalonly = true;
		o.datatype = 'range(100,3600000)';
		o.placeholder = _('as in Health probes');

		o = s.option(form.Value, 'down_after', _('Down after'), _('Failed probes in a row before the WAN is down.'));
		o.modalonly = true;
		o.datatype = 'range(1,1000)';
		o.placeholder = _('as in Health probes');

		o = s.option(form.Value, 'up_after', _('Up after'), _('Good probes in a row before the WAN is up again.'));
		o.modalonly = true;
		o.datatype = 'range(1,1000)';
		o.placeholder = _('as in Health probes');

		s = m.section(form.GridSection, 'udp_rule', _('UDP rules'),
			_('Tried in order; the first whose ports and prefix both match decides.'));
		s.addremove = true;
		s.anonymous = true;
		s.sortable = true;

		o = s.option(form.Value, 'ports', _('Destination ports'), _('A port or FIRST-LAST.'));
		o.validate = pattern(/^\s*\d{1,5}(\s*-\s*\d{1,5})?\s*$/, _('A port or a range FIRST-LAST'));

		o = s.option(form.Value, 'prefix', _('Destination prefix'));
		o.datatype = 'cidr';

		o = s.option(form.ListValue, 'action', _('Action'));
		o.value('bond', _('Bond'));
		o.value('direct', _('Direct (NAT)'));
		o.value('block', _('Block'));
		o.value('protect', _('Protect (two WANs at once)'));
		o.default = 'block';
		o.rmempty = false;

		o = s.option(form.ListValue, 'mode', _('Protection'),
			_('Duplicate: every datagram on both WANs. FEC: each datagram once, with about 7 % of repair data plus the datagrams sent again when a WAN stalls.'));
		o.value('', _('Duplicate (default)'));
		o.value('duplicate', _('Duplicate'));
		o.value('fec', _('FEC'));
		o.depends('action', 'protect');
		o.optional = true;

		s = m.section(form.GridSection, 'concentrator', _('Concentrators'),
			_('Several concentrators, for failover: new connections go to the one with the lowest priority that answers, move to the next within about a second when it stops, and come back 10 s after it answers again (3 good probes in a row). Connections already running through a concentrator that dies end with a reset. The agent fails open only when none answers. Use either this list or the host, client ID and key above.'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;

		o = s.option(form.Value, 'priority', _('Priority'), _('1 to 255, lower preferred.'));
		o.datatype = 'range(1,255)';
		o.rmempty = false;

		var entry = concentratorOptions(function(name, title) {
			return s.option(form.Value, name, title);
		}, {
			host: [ _('Host') ],
			port: [ _('Port') ],
			client_id: [ _('Client ID') ],
			key: [ _('Key') ]
		});
		entry.host.rmempty = false;
		entry.client_id.rmempty = false;
		entry.key.rmempty = false;
		entry.key.modalonly = true;

		return m.render();
	}
});
