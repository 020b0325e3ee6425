#!/usr/bin/perl

# Tests for the POP3 proxy: the backend login dialogue and how each way a
# backend fails reaches the client, proxy_pass_error_message, proxy_protocol,
# proxy_buffer, proxy_timeout, and pass-through that loses, reorders and
# buffers nothing (10 MiB both ways, a slow reader, a side that closes).

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Select;
use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF SOL_SOCKET SO_RCVBUF SO_SNDBUF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# hardening beyond stock nginx is only checked against our module
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    timeout    2s;
    proxy_timeout 3s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        proxy_pass_error_message on;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        proxy_protocol on;
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        proxy_buffer 1k;
        proxy_timeout 1s;
    }
}

EOF

my $d = $t->testdir();

# daemons are forked: settle their ports first so that all agree
port($_) for 8081, 8111, 8120 .. 8125;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, 8111, $d);
$t->run_daemon(\&backend, $_, $d) for 8121 .. 8125;
$t->run()->plan(35);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111, 8121 .. 8125;

###############################################################################

sub login {
	my ($user, $pass, $port) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port // 8110));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send("PASS $pass");
	return $s;
}

# a multi-line reply, dot-terminated, undone from its byte-stuffing
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

# the login dialogue and pass-through

my $s = login('user', 'secret');
$s->check(qr/^\+OK logged in as user\r\n$/, 'backend reply to PASS reaches the client');
$s->send('NOOP');
$s->check(qr/^\+OK NOOP\r\n$/, 'commands reach the backend');
like($t->read_file('backend-8111.log'), qr/\AUSER user\r\nPASS secret\r\nNOOP\r\n/,
	'backend saw USER and PASS from the dialogue');

# 10 MiB from the backend, byte-exact

$s->send('RETR ' . 10 * 1024 * 1024);
like($s->read(), qr/^\+OK \d+ octets/, 'retr 10m');
my $got = read_message($s);
is(length($got), 10 * 1024 * 1024, 'retr 10m length');
is(md5_hex($got), md5_hex(message(10 * 1024 * 1024)), 'retr 10m content');

# 10 MiB to the backend, byte-exact

my $upload = message(10 * 1024 * 1024);
$s->send('XUPL ' . length($upload));
$s->check(qr/^\+ go ahead/, 'upload accepted');
write_all($s->socket(), $upload);
$s->check(qr/^\+OK \Q@{[ md5_hex($upload) ]}\E\r\n$/, 'upload 10m byte-exact');

# commands pipelined with PASS are delivered after login, in order

$s = Test::Nginx::POP3->new();
$s->read();
$s->print('USER user' . CRLF . 'PASS secret' . CRLF . 'NOOP' . CRLF . 'STAT' . CRLF);
$s->ok('pipelined user');
$s->check(qr/^\+OK logged in/, 'pipelined pass');
$s->check(qr/^\+OK NOOP/, 'pipelined after login 1');
$s->check(qr/^\+OK STAT/, 'pipelined after login 2');

# a slow reader: nginx does not read from the backend without bound

$s = login('user', 'secret');
$s->read();
setsockopt($s->socket(), SOL_SOCKET, SO_RCVBUF, 65536);
my $size = 32 * 1024 * 1024;
$s->send("RETR $size");
select undef, undef, undef, 2;
my $sent = $t->read_file('backend-8111.sent') || 0;
cmp_ok($sent, '<', $size * 3 / 4, 'backend blocked while the client does not read');
$s->read();
$got = read_message($s);
is(md5_hex($got), md5_hex(message($size)), 'slow reader gets every byte');

# the backend closes right after a big reply: all of it is delivered first

$s = login('user', 'secret');
$s->read();
$s->send('RCLO ' . 1024 * 1024);
$s->read();
$got = read_message($s);
is(length($got), 1024 * 1024, 'delivered before the close');
ok($s->eof(), 'then closed');

# the client closes right after sending: all of it reaches the backend

$s = login('user', 'secret');
$s->read();
$upload = message(512 * 1024);
$s->send('XUPL ' . length($upload));
$s->read();
write_all($s->socket(), $upload);
$s->send('QUIT');
close $s->socket();
select undef, undef, undef, 1;
like($t->read_file('backend-8111.log'), qr/^UPLOADED \Q@{[ md5_hex($upload) ]}\E\r?$/m,
	'client data delivered before the close');

# proxy_buffer 1k, and proxy_timeout

$s = login('user', 'secret', 8114);
$s->read();
$s->send('RETR 300000');
$s->read();
is(md5_hex(read_message($s)), md5_hex(message(300000)), 'proxy_buffer 1k');
ok($s->eof(), 'proxy_timeout closes an idle session');

# backend failures

$s = login('down', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'backend down');

$s = login('garbage', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'backend greeting garbage');

$s = login('garbage', 'x', 8112);
$s->check(qr/^garbage from the backend\r\n$/, 'garbage passed with proxy_pass_error_message');

$s = login('closer', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'backend closed mid-dialogue');

$s = login('refuser', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'backend refused the password');

$s = login('refuser', 'x', 8112);
$s->check(qr/^-ERR authentication failed\r\n$/, 'backend refusal passed on');

$s = login('silent', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'backend silent until timeout');

# proxy_protocol towards the backend

$s = login('pp', 'x', 8113);
$s->check(qr/^\+OK logged in/, 'login with proxy_protocol');
like($t->read_file('backend-8125.log'),
	qr/\APROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\nUSER pp\r\n/,
	'PROXY header first');

# CR/LF inside decoded credentials never becomes a backend command

SKIP: {
skip 'hardening beyond stock nginx', 5 if $stock;

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0user\0secret\r\nDELE 1", ''));
$s->check(qr/^-ERR invalid command\r\n$/, 'CR/LF in a PLAIN password refused');

$s->send('AUTH LOGIN ' . encode_base64("user\r\nDELE 2", ''));
$s->check(qr/^-ERR invalid command\r\n$/, 'CR/LF in a LOGIN user name refused');

unlike($t->read_file('backend-8111.log'), qr/^DELE/m, 'nothing injected');

# NUL passes every parser of a line; the backend dialogue refuses it, from
# the client and from the auth server alike
$s = login("nul\0user", 'secret');
$s->check(qr/^-ERR internal server error\r\n$/, 'NUL in USER never sent on');

$s = login('nulpass', 'secret');
$s->check(qr/^-ERR internal server error\r\n$/,
	'NUL in Auth-Pass never sent on');

}

# sessions still open at shutdown make nginx 1.22 log alerts
undef $s;
$t->stop();

like($t->read_file('error.log'),
	qr/upstream sent invalid response: "garbage from the backend" while reading response from upstream, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+, login: "garbage", upstream: 127\.0\.0\.1:\d+/,
	'error log names client, server, login and upstream');
like($t->read_file('error.log'), qr/client logged in, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+, login: "user", upstream: 127\.0\.0\.1:\d+/,
	'login logged');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################

# A deterministic message of $size bytes in CRLF lines, none starting with a dot.
sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('a') + $_ % 26) } 0 .. 73) . CRLF;
	my $body = $line x int($size / length($line));
	my $rest = $size - length($body);
	$body .= ('x' x ($rest - 2)) . CRLF if $rest >= 2;
	$body .= 'y' if $rest == 1;
	return $body;
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	my %backends = (down => 8120, garbage => 8121, closer => 8122,
		silent => 8123, refuser => 8124, pp => 8125);
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		my $port = port($backends{$user // ''} // 8111);
		my $pass = ($user // '') eq 'nulpass'
			? "Auth-Pass: se\0cret" . CRLF : '';
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: $port" . CRLF
			. $pass . CRLF;
		close $c;
	}
}

sub backend {
	my ($num, $dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($num), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	my @held;
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		if ($num == 8123) {
			push @held, $c;
			next;
		}
		if ($num == 8121) {
			print $c "garbage from the backend" . CRLF;
			close $c;
			next;
		}
		serve($c, $num, $dir);
		close $c;
	}
}

sub note_line {
	my ($dir, $num, $line) = @_;
	open my $fh, '>>', "$dir/backend-$num.log" or die;
	print $fh $line;
	close $fh;
}

sub serve {
	my ($c, $num, $dir) = @_;
	print $c "+OK backend ready" . CRLF;
	while (defined(my $l = <$c>)) {
		note_line($dir, $num, $l);
		my ($cmd, $arg) = $l =~ /^(\S*)\s*(.*?)\r?$/;
		$cmd = uc $cmd;
		if ($cmd eq 'PROXY') {
			next;
		} elsif ($cmd eq 'USER') {
			return if $num == 8122;
			print $c "+OK" . CRLF;
		} elsif ($cmd eq 'PASS') {
			if ($num == 8124) {
				print $c "-ERR authentication failed" . CRLF;
				next;
			}
			my ($u) = `cat $dir/backend-$num.log` =~ /.*^USER (.*?)\r$/ms;
			print $c "+OK logged in as " . ($u // '') . CRLF;
		} elsif ($cmd eq 'RETR' || $cmd eq 'RCLO') {
			setsockopt($c, SOL_SOCKET, SO_SNDBUF, 65536);
			my $body = message($arg);
			print $c "+OK $arg octets" . CRLF;
			my $off = 0;
			while ($off < length $body) {
				my $n = syswrite($c, $body, 65536, $off);
				last unless defined $n;
				$off += $n;
				open my $fh, '>', "$dir/backend-$num.sent";
				print $fh $off;
				close $fh;
			}
			print $c "." . CRLF;
			return if $cmd eq 'RCLO';
		} elsif ($cmd eq 'XUPL') {
			print $c "+ go ahead" . CRLF;
			my $data = '';
			while (length($data) < $arg) {
				my $n = read($c, $data, $arg - length($data), length $data);
				last unless $n;
			}
			note_line($dir, $num, "UPLOADED " . md5_hex($data) . CRLF);
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
