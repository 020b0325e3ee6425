#!/usr/bin/perl

# Tests for bulk pass-through after login: megabytes both ways byte-exact
# on a plain session (where this module moves them with splice(2)) and on a
# TLS one (where it cannot), commands after and behind bulk data kept in
# order, and no descriptor left in the worker once bulk sessions end.

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
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_timeout 10s;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        starttls   on;
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

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->run()->plan(16);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

# the descriptors of a worker that has served a session and is idle
my $worker = worker_pid();
my $s = login();
$s->send('QUIT');
$s->read();
undef $s;
my $fds_before = settled_fds($worker);
my @fds_before = fd_targets($worker);

my $mib = 1024 * 1024;

# a plain session: bulk both ways, then commands behind it

$s = login();
$s->send('RETR ' . 4 * $mib);
like($s->read(), qr/^\+OK \d+ octets/, 'retr 4m');
my $got = read_message($s);
is(length($got), 4 * $mib, 'retr 4m length');
is(md5_hex($got), md5_hex(message(4 * $mib)), 'retr 4m byte-exact');

$s->send('NOOP');
$s->check(qr/^\+OK NOOP\r\n$/, 'a command after a bulk reply');

my $upload = message(4 * $mib);
$s->send('XUPL ' . length($upload));
$s->check(qr/^\+ go ahead/, 'upload accepted');
write_all($s->socket(), $upload . 'NOOP' . CRLF);
$s->check(qr/^\+OK \Q@{[ md5_hex($upload) ]}\E\r\n$/, 'upload 4m byte-exact');
$s->check(qr/^\+OK NOOP\r\n$/, 'a command right behind the upload');

# commands pipelined behind a request for a bulk reply

$s->print('RETR ' . $mib . CRLF . 'NOOP' . CRLF . 'RETR ' . 2 * $mib . CRLF . 'STAT' . CRLF);
$s->read();
is(md5_hex(read_message($s)), md5_hex(message($mib)), 'pipelined retr 1m');
$s->check(qr/^\+OK NOOP\r\n$/, 'pipelined noop in order');
$s->read();
is(md5_hex(read_message($s)), md5_hex(message(2 * $mib)), 'pipelined retr 2m');
$s->check(qr/^\+OK STAT\r\n$/, 'pipelined stat in order');

# a TLS session: the same bytes

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('STLS');
$s->read();
starttls($s);
$s->send('USER bulk');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK logged in/, 'login over tls');

$s->send('RETR ' . 4 * $mib);
$s->read();
is(md5_hex(read_message($s)), md5_hex(message(4 * $mib)), 'retr 4m over tls byte-exact');

$s->send('XUPL ' . length($upload));
$s->read();
write_all($s->socket(), $upload);
$s->check(qr/^\+OK \Q@{[ md5_hex($upload) ]}\E\r\n$/, 'upload 4m over tls byte-exact');

$s->send('QUIT');
$s->check(qr/^\+OK bye/, 'quit over tls');

undef $s;

# the worker holds as many descriptors as before the bulk sessions

SKIP: {
skip 'no /proc', 1 unless defined $fds_before;

my $fds_after = settled_fds($worker);
is($fds_after, $fds_before, 'no descriptor left behind')
	or diag("before: @fds_before\nafter: @{[ fd_targets($worker) ]}");

}

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check.
undef $t;

###############################################################################

sub login {
	my $s = Test::Nginx::POP3->new();
	$s->read();
	$s->send('USER bulk');
	$s->read();
	$s->send('PASS secret');
	$s->read();
	return $s;
}

# a multi-line reply, dot-terminated
sub read_message {
	my ($s) = @_;
	my $body = '';
	while (defined(my $l = $s->read())) {
		last if $l eq ".\r\n";
		$body .= $l;
	}
	return $body;
}

sub write_all {
	my ($sock, $data) = @_;
	while (length $data) {
		my $n = $sock->syswrite($data, 65536);
		die "write: $!" unless defined $n;
		substr($data, 0, $n, '');
	}
}

# TLS on the client's socket after STLS
sub starttls {
	my ($s) = @_;
	require IO::Socket::SSL;
	IO::Socket::SSL->start_SSL($s->socket,
		SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE())
		or die 'TLS: ' . IO::Socket::SSL::errstr();
}

# the only worker of the nginx under test, by the master's pid file
sub worker_pid {
	my $master = $t->read_file('nginx.pid');
	return undef unless defined $master;
	chomp $master;
	for (1 .. 50) {
		if (open my $fh, '<', "/proc/$master/task/$master/children") {
			my ($pid) = split ' ', (<$fh> // '');
			return $pid if $pid;
		}
		select undef, undef, undef, 0.1;
	}
	return undef;
}

sub open_fds {
	my ($pid) = @_;
	return undef unless defined $pid && opendir(my $dh, "/proc/$pid/fd");
	return scalar grep { !/^\./ } readdir $dh;
}

# the count once it has not changed for half a second (at most 10 s)
sub settled_fds {
	my ($pid) = @_;
	my ($last, $same) = (open_fds($pid), 0);
	for (1 .. 100) {
		select undef, undef, undef, 0.1;
		my $now = open_fds($pid);
		$same = (defined $now && defined $last && $now == $last) ? $same + 1 : 0;
		$last = $now;
		last if $same >= 5;
	}
	return $last;
}

sub fd_targets {
	my ($pid) = @_;
	return () unless defined $pid && opendir(my $dh, "/proc/$pid/fd");
	return map { readlink("/proc/$pid/fd/$_") // '?' } sort grep { !/^\./ } readdir $dh;
}

# A deterministic message of $size bytes in CRLF lines, none starting with a dot.
sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('A') + $_ % 26) } 0 .. 61) . CRLF;
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
			. "Auth-Port: " . port(8111) . CRLF . CRLF;
		close $c;
	}
}

sub backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8111), Listen => 16,
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

sub serve {
	my ($c) = @_;
	$c->autoflush(1);
	print $c "+OK backend ready" . CRLF;
	while (defined(my $l = <$c>)) {
		my ($cmd, $arg) = $l =~ /^(\S*)\s*(.*?)\r?$/;
		$cmd = uc $cmd;
		if ($cmd eq 'USER') {
			print $c "+OK" . CRLF;
		} elsif ($cmd eq 'PASS') {
			print $c "+OK logged in" . CRLF;
		} elsif ($cmd eq 'RETR') {
			print $c "+OK $arg octets" . CRLF . message($arg) . "." . CRLF;
		} elsif ($cmd eq 'XUPL') {
			print $c "+ go ahead" . CRLF;
			my $data = '';
			while (length($data) < $arg) {
				my $n = read($c, $data, $arg - length($data), length $data);
				last unless $n;
			}
			print $c "+OK " . md5_hex($data) . CRLF;
		} elsif ($cmd eq 'QUIT') {
			print $c "+OK bye" . CRLF;
			return;
		} else {
			print $c "+OK $cmd" . CRLF;
		}
	}
}

###############################################################################
