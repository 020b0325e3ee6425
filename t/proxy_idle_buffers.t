#!/usr/bin/perl

# Tests for proxied sessions that sit idle between bursts, as IMAP clients
# in IDLE do: this module gives a direction's relay buffer back once it is
# drained and takes one again when its side has something to send. A
# session woken after both buffers went relays correctly both ways, woken
# by the client or by the backend; a direction with a write pending (a
# client that does not read a 4 MiB reply) keeps its bytes while the other
# direction is woken; with and without TLS on the client side.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Socket::INET;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::IMAP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# stock keeps both buffers for the session's life and logs nothing of them
my $ours = ($ENV{TEST_NGINX_GLOBALS} // '') =~ /ngx_mail_rs/;
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl imap socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

error_log %%TESTDIR%%/debug.log debug;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_timeout 30s;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8993 ssl;
        protocol   imap;
    }
}

EOF

my $d = $t->testdir();

$t->write_file('openssl.conf', <<EOF);
[ req ]
default_bits = 2048
encrypt_key = no
distinguished_name = req_distinguished_name
[ req_distinguished_name ]
EOF

system('openssl req -x509 -new '
	. "-config $d/openssl.conf -subj /CN=localhost/ "
	. "-out $d/localhost.crt -keyout $d/localhost.key "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create a certificate: $!\n";

port($_) for 8081, 8144;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->run()->plan(2 * 14);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8144;

###############################################################################

my $big = 4 * 1024 * 1024;
my $upload = message(64 * 1024);

for my $ssl (0, 1) {
	my $m = $ssl ? 'tls' : 'plain';

	my $start = log_size();
	my $s = Test::Nginx::IMAP->new(SSL => $ssl);
	$s->read();
	$s->send('a LOGIN test secret');
	$s->check(qr/^a OK/, "$m: login");

	# both directions drained: both buffers go

	SKIP: {
	skip 'stock keeps its buffers', 1 unless $ours;
	skip 'not a debug build', 1 unless $debug;

	my $log = substr(wait_log(qr/released: upstream to client/, $start),
		$start);
	ok($log =~ /client logged in.*released: client to upstream/s
		&& $log =~ /client logged in.*released: upstream to client/s,
		"$m: both buffers released after login");

	}

	# woken by the client: a buffer is taken each way, and given back

	my $mark = log_size();
	$s->send('b ECHO hello');
	$s->check(qr/^b OK echo hello\r\n$/, "$m: client wakes the session");

	SKIP: {
	skip 'stock keeps its buffers', 2 unless $ours;
	skip 'not a debug build', 2 unless $debug;

	my $since = substr(wait_log(qr/released: upstream to client/, $mark),
		$mark);
	like($since, qr/taken: client to upstream.*taken: upstream to client/s,
		"$m: buffers taken on wake-up");
	like($since, qr/taken: upstream to client.*released: upstream to client/s,
		"$m: and released again");

	}

	# woken by the backend: a line it sends a second later, the session
	# idle meanwhile

	$mark = log_size();
	$s->send('c LATER');
	$s->check(qr/^c OK later\r\n$/, "$m: reply before the backend's push");
	$s->check(qr/^\* 1 EXISTS\r\n$/, "$m: backend wakes the session");

	SKIP: {
	skip 'stock keeps its buffers', 1 unless $ours;
	skip 'not a debug build', 1 unless $debug;

	like(substr($t->read_file('debug.log'), $mark),
		qr/released: upstream to client.*taken: upstream to client/s,
		"$m: the push found its buffer released");

	}

	# a 4 MiB reply the client does not read yet: while it is pending,
	# the client uploads 64 KiB, then reads everything

	$s->send("d BIG $big");
	select undef, undef, undef, 0.5;
	$mark = log_size();
	write_all($s->socket(), "e UP " . length($upload) . CRLF . $upload);

	$s->check(qr/^\* BIG $big\r\n$/, "$m: pending reply starts");
	my $got = read_bytes($s, $big);
	is(md5_hex($got), md5_hex(message($big)), "$m: pending reply byte-exact");
	$s->check(qr/^d OK big\r\n$/, "$m: pending reply ends");
	is($s->read(), 'e OK ' . md5_hex($upload) . CRLF,
		"$m: upload sent while a reply was pending, byte-exact");

	SKIP: {
	skip 'stock keeps its buffers', 1 unless $ours;
	skip 'not a debug build', 1 unless $debug;

	like(substr($t->read_file('debug.log'), $mark),
		qr/taken: client to upstream/, "$m: upload took a buffer");

	}

	# idle again, and woken again

	select undef, undef, undef, 0.3;
	$s->send('f ECHO again');
	$s->check(qr/^f OK echo again\r\n$/, "$m: woken once more");
}

###############################################################################

sub log_size {
	return length($t->read_file('debug.log') // '');
}

# the debug log once its part from $from on matches (up to 5 s)
sub wait_log {
	my ($re, $from) = @_;
	my $log = '';
	for (1 .. 50) {
		$log = $t->read_file('debug.log') // '';
		return $log if substr($log, $from // 0) =~ $re;
		select undef, undef, undef, 0.1;
	}
	return '';
}

# a TLS socket's syswrite sends one record at most
sub write_all {
	my ($sock, $data) = @_;
	while (length $data) {
		my $n = $sock->syswrite($data);
		return 0 unless defined $n;
		substr($data, 0, $n, '');
	}
	return 1;
}

sub read_bytes {
	my ($s, $n) = @_;
	my $got = '';
	while (length($got) < $n) {
		my $l = $s->getline();
		last unless defined $l;
		$got .= $l;
	}
	return $got;
}

# A deterministic message of $size bytes in CRLF lines.
sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('A') + ($_ * 7) % 26) } 0 .. 61) . CRLF;
	my $body = $line x int($size / length($line));
	my $rest = $size - length($body);
	$body .= ('z' x ($rest - 2)) . CRLF if $rest >= 2;
	$body .= 'y' if $rest == 1;
	return $body;
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		while (defined(my $l = <$c>)) {
			last if $l eq CRLF;
		}
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8144) . CRLF . CRLF;
		close $c;
	}
}

sub backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8144), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		if (fork() == 0) {
			serve($c);
			exit 0;
		}
		close $c;
	}
}

# LOGIN (its literals answered); ECHO <text>; LATER: the reply, and "* 1 EXISTS" a second later;
# BIG <n>: n bytes between an untagged line and the tagged reply;
# UP <n>: reads n bytes, answers their MD5
sub serve {
	my ($c) = @_;
	$c->autoflush(1);
	print $c "* OK backend ready" . CRLF;
	while (defined(my $l = <$c>)) {
		# the proxy sends the login's strings as literals
		while ($l =~ /\{(\d+)\}\r\n$/) {
			print $c "+ go ahead" . CRLF;
			read($c, my $lit, $1);
			$l .= $lit . (<$c> // '');
		}
		my ($tag, $cmd, $arg) = $l =~ /^(\S+) (\S+) ?(.*?)\r?\n?$/s;
		next unless defined $cmd;
		$cmd = uc $cmd;
		if ($cmd eq 'LOGIN') {
			print $c "$tag OK logged in" . CRLF;
		} elsif ($cmd eq 'ECHO') {
			print $c "$tag OK echo $arg" . CRLF;
		} elsif ($cmd eq 'LATER') {
			print $c "$tag OK later" . CRLF;
			select undef, undef, undef, 1;
			print $c "* 1 EXISTS" . CRLF;
		} elsif ($cmd eq 'BIG') {
			print $c "* BIG $arg" . CRLF . message($arg) . "$tag OK big" . CRLF;
		} elsif ($cmd eq 'UP') {
			my $data = '';
			while (length($data) < $arg) {
				last unless read($c, my $buf, $arg - length($data));
				$data .= $buf;
			}
			print $c "$tag OK " . md5_hex($data) . CRLF;
		} else {
			print $c "$tag BAD" . CRLF;
		}
	}
}

###############################################################################
