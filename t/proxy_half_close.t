#!/usr/bin/perl

# Tests for a side that closes only its write half after login: a client
# that sends its last command and shuts down still gets the backend's
# (late) reply; a backend that ends its output still gets what the client
# sends afterwards; the session ends once both sides are done, or at once
# when a side fails; a TLS session ends once either side is done, as stock.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Socket::INET;
use Socket qw/ CRLF SHUT_WR SOL_SOCKET SO_LINGER /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# stock nginx ends a session as soon as one side's data is delivered
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_timeout 20s;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8995 ssl;
        protocol   pop3;
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
$t->run_daemon(\&backend, $d);
$t->run()->plan(20);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

my $size = 256 * 1024;

# (a) the client sends a command and shuts its write half; the backend
# answers half a second later, a reply big enough to be spliced

my $s = login();
$s->send("XSLOW a $size");
$s->socket()->shutdown(SHUT_WR);

SKIP: {
skip 'stock drops the reply to a half-closed client', 3 if $stock;

like($s->read() // '', qr/^\+OK $size octets\r\n$/, 'late reply after client half-close');
my $got = read_message($s);
is(length($got), $size, 'late reply length');
is(md5_hex($got), md5_hex(message($size)), 'late reply byte-exact');

}

ok($s->eof(), 'then the session is closed');
like(wait_file('slow-a'), qr/^XSLOW seen, then EOF$/m, 'backend saw the command and the end');
is(wait_done(1), 1, 'session done once both sides ended');

# (b) the backend sends its reply and shuts its write half; the client
# still sends, a command and then a megabyte

$s = login();
$s->send("XHALF b $size");
like($s->read() // '', qr/^\+OK $size octets\r\n$/, 'reply before backend half-close');
is(md5_hex(read_message($s)), md5_hex(message($size)), 'reply byte-exact');
ok($s->eof(), 'backend half-close reaches the client');

my $upload = 'NOOP' . CRLF . message(1024 * 1024);

SKIP: {
skip 'stock drops what the client sends after the backend half-closed', 2
	if $stock;

write_all($s->socket(), $upload);
$s->socket()->shutdown(SHUT_WR);

is(wait_file('half-b'), md5_hex($upload) . ' ' . length($upload),
	'client data after backend half-close delivered byte-exact');

# (c) both halves closed: the session ends

is(wait_done(2), 2, 'session done after both half-closes');

}

undef $s;

# an error on one side ends the session, though the other is still open:
# the client resets its connection, the backend keeps its own

$s = login();
$s->send('XHOLD e');
$s->check(qr/^\+OK holding\r\n$/, 'backend holding');
my $done = count_done();
setsockopt($s->socket(), SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
close $s->socket();
undef $s;
is(wait_done($done + 1), $done + 1, 'client reset ends the session');
like(wait_file('hold-e'), qr/^EOF$/m, 'backend saw the end');

# TLS: no half-close; a backend's end closes the session once its data is
# delivered, as in stock

$s = Test::Nginx::POP3->new(SSL => 1);
$s->read();
$s->send('USER test');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK logged in/, 'login over tls');
$s->send('XHALF t 1000');
$s->check(qr/^\+OK 1000 octets\r\n$/, 'tls reply before backend half-close');
is(md5_hex(read_message($s)), md5_hex(message(1000)), 'tls reply byte-exact');
ok($s->eof(), 'tls session closed after the backend end');
is(wait_file('half-t'), md5_hex('') . ' 0', 'tls: nothing relayed after the end');
unlike($t->read_file('error.log'), qr/SSL_read\(\) failed/,
	'tls: closed with close_notify, not cut by a shutdown');

undef $s;

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check.
undef $t;

###############################################################################

sub login {
	my $s = Test::Nginx::POP3->new();
	$s->read();
	$s->send('USER test');
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

# false when the connection fails first
sub write_all {
	my ($sock, $data) = @_;
	while (length $data) {
		my $n = $sock->syswrite($data, 65536);
		return 0 unless defined $n;
		substr($data, 0, $n, '');
	}
	return 1;
}

# what the backend wrote to testdir/$name once it is complete (up to 5 s)
sub wait_file {
	my ($name) = @_;
	for (1 .. 50) {
		return $t->read_file($name) if -e "$d/$name.done";
		select undef, undef, undef, 0.1;
	}
	return '';
}

sub count_done {
	my @l = ($t->read_file('error.log') // '') =~ /proxied session done/g;
	return scalar @l;
}

# the count of "proxied session done" lines once it reaches $n (up to 5 s)
sub wait_done {
	my ($n) = @_;
	for (1 .. 50) {
		last if count_done() >= $n;
		select undef, undef, undef, 0.1;
	}
	return count_done();
}

# A deterministic message of $size bytes in CRLF lines, none starting with a dot.
sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('A') + ($_ * 3) % 26) } 0 .. 57) . CRLF;
	my $body = $line x int($size / length($line));
	my $rest = $size - length($body);
	$body .= ('w' x ($rest - 2)) . CRLF if $rest >= 2;
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
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8111), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		if (fork() == 0) {
			serve($c, $dir);
			exit 0;
		}
		close $c;
	}
}

# writes testdir/$name, then testdir/$name.done
sub note_file {
	my ($dir, $name, $text) = @_;
	open my $fh, '>', "$dir/$name" or die;
	print $fh $text;
	close $fh;
	open $fh, '>', "$dir/$name.done" or die;
	close $fh;
}

# XSLOW <tag> <size>: the reply half a second later, then waits for the end
# XHALF <tag> <size>: the reply, a half-close, then reads to the end
# XHOLD <tag>: "+OK holding", reads to the end, and keeps the connection
sub serve {
	my ($c, $dir) = @_;
	$c->autoflush(1);
	print $c "+OK backend ready" . CRLF;
	while (defined(my $l = <$c>)) {
		my ($cmd, $tag, $arg) = $l =~ /^(\S*)\s*(\S*)\s*(.*?)\r?$/;
		$cmd = uc $cmd;
		if ($cmd eq 'USER') {
			print $c "+OK" . CRLF;
		} elsif ($cmd eq 'PASS') {
			print $c "+OK logged in" . CRLF;
		} elsif ($cmd eq 'XSLOW') {
			select undef, undef, undef, 0.5;
			print $c "+OK $arg octets" . CRLF . message($arg) . "." . CRLF;
			1 while defined <$c>;
			note_file($dir, "slow-$tag", "XSLOW seen, then EOF\n");
			return;
		} elsif ($cmd eq 'XHALF') {
			print $c "+OK $arg octets" . CRLF . message($arg) . "." . CRLF;
			shutdown($c, SHUT_WR);
			my $data = '';
			while (read($c, my $buf, 65536)) {
				$data .= $buf;
			}
			note_file($dir, "half-$tag", md5_hex($data) . ' ' . length($data));
			return;
		} elsif ($cmd eq 'XHOLD') {
			print $c "+OK holding" . CRLF;
			1 while defined <$c>;
			note_file($dir, "hold-$tag", "EOF\n");
			# until the test's daemons are stopped
			my $parent = getppid();
			for (1 .. 300) {
				last if getppid() != $parent;
				select undef, undef, undef, 0.1;
			}
			return;
		} elsif ($cmd eq 'QUIT') {
			print $c "+OK bye" . CRLF;
			return;
		} else {
			print $c "+OK $cmd" . CRLF;
		}
	}
}

###############################################################################
