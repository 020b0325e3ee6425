#!/usr/bin/perl

# Tests for the client's hostname through nginx's resolver (PTR, then a
# forward lookup): Client-Host and XCLIENT NAME for a good name, NXDOMAIN,
# a failing or silent DNS server, a forward lookup that disagrees, and PTR
# answers that are not hostnames (CR/LF injection, CVE-2026-28753). The DNS
# server is a fake one in this file, one UDP port per behaviour.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# DNS behaviour per mail server: listen port => [dns port, mode]
my %modes = (
	8025 => [8053, 'ok'],
	8026 => [8054, 'nxdomain'],
	8027 => [8055, 'servfail'],
	8028 => [8056, 'crlf'],
	8029 => [8057, 'mismatch'],
	8030 => [8058, 'silent'],
	8031 => [8059, 'forward-nxdomain'],
	8032 => [8060, 'underscore'],
	8033 => [8061, 'slow'],
);

my $servers = join '', map {
	"    server {\n"
	. "        listen 127.0.0.1:%%PORT_$_%%;\n"
	. "        protocol smtp;\n"
	. "        resolver 127.0.0.1:%%PORT_$modes{$_}[0]_UDP%% ipv6=off;\n"
	. "    }\n"
} sort keys %modes;

my $t = Test::Nginx->new()->has(qw/mail smtp/)
	->write_file_expand('nginx.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;
error_log %%TESTDIR%%/debug.log debug;
worker_shutdown_timeout 1s;

events {
}

mail {
    auth_http    127.0.0.1:%%PORT_8081%%/auth;
    server_name  mx.test;
    resolver_timeout 1s;

$servers
    server {
        listen 127.0.0.1:%%PORT_8034%%;
        protocol smtp;
    }

    server {
        listen 127.0.0.1:%%PORT_8035%%;
        protocol smtp;
        resolver 127.0.0.1:%%PORT_8058_UDP%% ipv6=off;
        resolver_timeout 30s;
    }
}

EOF

my $d = $t->testdir();
port($_) for 8081, 8082, 8035;
port($modes{$_}[0], udp => 1) for keys %modes;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&backend, $d);
$t->run_daemon(\&dns_daemon, @{$modes{$_}}) for keys %modes;
$t->run()->plan(26);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8082;

###############################################################################

sub last_line_of {
	my ($file, $re) = @_;
	my @l = grep { /$re/ } split /^/m, $t->read_file($file);
	return $l[-1] // '';
}

# logs in on the server for `$port`; returns Client-Host and XCLIENT NAME
sub host_of {
	my ($port) = @_;
	my $s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send('AUTH PLAIN ' . encode_base64("\0test$port\0secret", ''));
	$s->read();
	$s->send('QUIT');
	$s->read();
	my ($host) = last_line_of('auth.log', qr/^Auth-User: test$port\|/)
		=~ /Client-Host: ([^|]*)/;
	my ($name) = last_line_of('backend.log', qr/LOGIN=test$port /)
		=~ /NAME=(.*)\r\n/;
	return ($host // '', $name // '');
}

is_deeply([host_of(8025)], ['client.example', 'client.example'],
	'name from ptr, confirmed forward');
is_deeply([host_of(8026)], ['[UNAVAILABLE]', '[UNAVAILABLE]'], 'nxdomain');
is_deeply([host_of(8027)], ['[TEMPUNAVAIL]', '[TEMPUNAVAIL]'], 'server failure');
is_deeply([host_of(8028)], ['[TEMPUNAVAIL]', '[TEMPUNAVAIL]'],
	'crlf in ptr answer');
is_deeply([host_of(8029)], ['[UNAVAILABLE]', '[UNAVAILABLE]'],
	'forward lookup disagrees');
is_deeply([host_of(8030)], ['[TEMPUNAVAIL]', '[TEMPUNAVAIL]'],
	'dns server never answers');
is_deeply([host_of(8031)], ['[UNAVAILABLE]', '[UNAVAILABLE]'],
	'forward lookup nxdomain');
is_deeply([host_of(8032)], ['[TEMPUNAVAIL]', '[TEMPUNAVAIL]'],
	'underscore in ptr answer');
is_deeply([host_of(8034)], ['[UNAVAILABLE]', '[UNAVAILABLE]'], 'no resolver');

unlike($t->read_file('auth.log'), qr/evil/, 'injected name not sent to auth');
unlike($t->read_file('backend.log'), qr/evil|^X-Injected/m,
	'injected name not sent to backend');

# commands sent while the name is looked up wait for the greeting

my $s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8033));
$s->send('EHLO early.example');
$s->send('NOOP');
is($s->getline(), "220 mx.test ESMTP ready\r\n", 'greeting first');
$s->ok('ehlo sent during the lookup');
$s->check(qr/^250 2\.0\.0 OK/, 'noop sent during the lookup');
$s->send('AUTH PLAIN ' . encode_base64("\0test8033\0secret", ''));
$s->authok('login after a slow lookup');
like(last_line_of('auth.log', qr/^Auth-User: test8033\|/),
	qr/Client-Host: client\.example\|/, 'slow name used');

# a client that leaves during the lookup

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8030));
undef $s;
select undef, undef, undef, 1.5;

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8025));
$s->check(qr/^220 /, 'still serving after a client left mid-lookup');

# a debug build says which function finished each lookup: the forward
# lookup of a confirmed name is a name lookup, though nginx keeps its one
# IPv4 answer where an address lookup keeps its address
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

SKIP: {
skip 'hardening beyond stock nginx', 3 if $stock;

# worker_shutdown_timeout ends a session waiting for its name, and the
# lookup still pending is cancelled, not left to call back into it
my $queries = () = $t->read_file('silent.log') =~ /\n/g;
$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8035));
for (1 .. 50) {
	last if (() = $t->read_file('silent.log') =~ /\n/g) > $queries;
	select undef, undef, undef, 0.1;
}
$t->reload();
is($s->read(), undef, 'session mid-lookup closed by worker_shutdown_timeout');

skip 'not a debug build', 2 unless $debug;
# the old worker may still be on its way out (slow under valgrind)
for (1 .. 100) {
	last if $t->read_file('debug.log') =~ /resolve addr done: -2/;
	select undef, undef, undef, 0.1;
}
my $dlog = $t->read_file('debug.log');
like($dlog, qr/resolve name done: 0/, 'forward lookup finished as one');
like($dlog, qr/resolve addr done: -2/, 'pending lookup cancelled');

}

undef $s;
$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/127\.0\.0\.1 could not be resolved \(3: Host not found\)/,
	'nxdomain logged');
like($log, qr/127\.0\.0\.1 could not be resolved \(2: Server failure\)/,
	'server failure logged');
like($log, qr/127\.0\.0\.1 could not be resolved \(110: Operation timed out\)/,
	'timeout logged');
like($log, qr/127\.0\.0\.1 resolved to invalid host name "evil/,
	'invalid name logged');
like($log, qr/127\.0\.0\.1 resolved to invalid host name "a_b\.example"/,
	'underscore logged');
like($log, qr/"client\.example" could not be resolved \(3: Host not found\)/,
	'forward nxdomain logged');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################

sub auth_daemon {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		# one line per request, headers joined by "|"
		(my $flat = $req) =~ s/\r\n/|/g;
		$flat =~ s/^.*?(Auth-User)/$1/s;
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $flat . "\n";
		close $fh;
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8082) . CRLF . CRLF;
		close $c;
	}
}

sub backend {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8082), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "220 backend ready" . CRLF;
		while (defined(my $l = <$c>)) {
			open my $fh, '>>', "$dir/backend.log" or die;
			print $fh $l;
			close $fh;
			if ($l =~ /^QUIT/) {
				print $c "221 bye" . CRLF;
				last;
			}
			print $c ($l =~ /^XCLIENT/ ? "220 ok" : "250 ok") . CRLF;
		}
		close $c;
	}
}

sub dns_name {
	my ($name) = @_;
	return join('', map { chr(length) . $_ } split /\./, $name) . "\0";
}

sub dns_daemon {
	my ($port, $mode) = @_;
	my $sock = IO::Socket::INET->new(Proto => 'udp',
		LocalAddr => '127.0.0.1:' . port($port, udp => 1))
		or die "dns listen: $!";
	my %ptr = (ok => 'client.example', mismatch => 'client.example',
		'forward-nxdomain' => 'client.example', slow => 'client.example',
		crlf => "evil\r\nX-Injected: 1.example", underscore => 'a_b.example');
	while (1) {
		my $from = $sock->recv(my $q, 512);
		next unless defined $from && length $q > 12;
		my ($id) = unpack 'n', $q;
		my $pos = 12;
		my @labels;
		while ($pos < length $q) {
			my $len = ord substr $q, $pos++, 1;
			last unless $len;
			push @labels, substr $q, $pos, $len;
			$pos += $len;
		}
		my ($type) = unpack 'n', substr $q, $pos, 2;
		my $question = substr $q, 12, $pos + 4 - 12;
		my $name = lc join '.', @labels;

		if ($mode eq 'silent') {
			# counted, so that a test can wait for a lookup to be under way
			open my $fh, '>>', "$d/silent.log" or die;
			print $fh "$name\n";
			close $fh;
			next;
		}
		select undef, undef, undef, 0.5 if $mode eq 'slow';

		my ($rcode, @answers) = (0);
		if ($type == 12) {
			if ($mode eq 'nxdomain') {
				$rcode = 3;
			} elsif ($mode eq 'servfail') {
				$rcode = 2;
			} else {
				@answers = ([12, dns_name($ptr{$mode})]);
			}
		} elsif ($type == 1) {
			if ($mode eq 'forward-nxdomain') {
				$rcode = 3;
			} else {
				@answers = ([1, pack 'C4',
					$mode eq 'mismatch' ? (192, 0, 2, 7) : (127, 0, 0, 1)]);
			}
		}
		my $resp = pack('n6', $id, 0x8180 | $rcode, 1, scalar @answers, 0, 0)
			. $question;
		$resp .= pack('n3Nn', 0xc00c, $_->[0], 1, 0, length $_->[1]) . $_->[1]
			for @answers;
		$sock->send($resp, 0, $from);
	}
}

###############################################################################
