#!/usr/bin/perl

# Tests for the auth_http client with POP3: the exact request, auth_http_header,
# escaping, unix: URLs, Auth-Wait and login attempts, and every way an auth
# server can fail: down, silent, garbage, a hostname or bad port, no password.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use IO::Socket::UNIX;
use MIME::Base64;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    auth_http_header  X-Auth-Key "secret key";
    auth_http_timeout 1s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        pop3_auth  plain apop cram-md5;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        auth_http  unix:%%TESTDIR%%/auth.sock:/unix-auth;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        auth_http  127.0.0.1:8114/down;
    }

    server {
        listen     127.0.0.1:8115 proxy_protocol;
        protocol   pop3;
        set_real_ip_from 127.0.0.1;
    }
}

EOF

my $d = $t->testdir();

# daemons are forked: settle their ports first so that all agree
port($_) for 8081, 8111, 8114;

$t->run_daemon(\&auth_daemon, 'inet', $d);
$t->run_daemon(\&auth_daemon, 'unix', $d);
$t->run_daemon(\&backend, $d);
$t->run()->plan(35);

$t->waitforsocket('127.0.0.1:' . port(8081));
$t->waitforsocket('127.0.0.1:' . port(8111));
for (1 .. 50) { last if -S "$d/auth.sock"; select undef, undef, undef, 0.1; }

###############################################################################

sub login {
	my ($user, $pass, %opts) = @_;
	my $s = Test::Nginx::POP3->new(%opts);
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send("PASS $pass");
	return $s;
}

sub requests {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return @r;
}

sub last_request {
	my @r = requests();
	return $r[-1] // '';
}

# the request, byte for byte

my $s = login('ok', 'pass word%');
$s->check(qr/^\+OK backend says hello\r\n$/, 'logged in');
is(last_request(), "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\n"
	. "Auth-Method: plain\r\nAuth-User: ok\r\nAuth-Pass: pass%20word%25\r\n"
	. "Auth-Protocol: pop3\r\nAuth-Login-Attempt: 1\r\n"
	. "Client-IP: 127.0.0.1\r\nX-Auth-Key: secret key\r\n\r\n",
	'request exactly as stock');
like($t->read_file('backend.log'), qr/^USER ok\r\nPASS pass word%\r\n/m,
	'backend got the client password');
$s->send('QUIT');
$s->check(qr/^\+OK bye/, 'pass-through to the backend');

# login escaping: space, percent and control characters

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0ok 1%\x7f\0p\tw", ''));
$s->check(qr/^\+OK backend/, 'auth plain with odd characters');
like(last_request(), qr/^Auth-User: ok%201%25\x7f\r\nAuth-Pass: p%09w\r$/m,
	'user and password escaped');

# APOP: the salt goes to the auth server, Auth-Pass comes back

$s = Test::Nginx::POP3->new();
my ($salt) = $s->read() =~ /(<[^>]+>)/;
$s->send('APOP ok ' . ('f' x 32));
$s->check(qr/^\+OK backend/, 'apop');
my $r = last_request();
my $want = "Auth-Method: apop\r\nAuth-User: ok\r\nAuth-Pass: " . ('f' x 32)
	. "\r\nAuth-Salt: $salt\r\nAuth-Protocol: pop3\r\n";
ok(index($r, $want) > 0, 'apop request with salt');
like($t->read_file('backend.log'), qr/^PASS from-auth-server\r$/m,
	'backend got Auth-Pass');

# Auth-User replaces the login

$s = login('rename', 'x');
$s->check(qr/^\+OK backend/, 'auth-user login');
like($t->read_file('backend.log'), qr/^USER renamed\r$/m, 'backend got Auth-User');

# refused: the text reaches the client, and the session ends

$s = login('refuse', 'x');
$s->check(qr/^-ERR go away, please\r\n$/, 'refused with the text');
ok($s->eof(), 'closed after a refusal without Auth-Wait');

# refused with Auth-Wait: the client may try again, attempts are counted

$s = login('retry', 'x');
$s->check(qr/^-ERR try again\r\n$/, 'refused with auth-wait');
$s->send('USER ok');
$s->ok('user after a refusal');
$s->send('PASS secret');
$s->check(qr/^\+OK backend/, 'second attempt logged in');
like(last_request(), qr/^Auth-User: ok\r\n.*^Auth-Login-Attempt: 2\r$/ms,
	'second attempt counted');

# Auth-Status: WAIT asks again after Auth-Wait seconds, same attempt number

$s = login('wait', 'x');
$s->check(qr/^\+OK backend/, 'logged in after wait');
my @waits = grep { /Auth-User: wait\r/ } requests();
is(scalar @waits, 2, 'asked twice');
like($waits[1], qr/^Auth-Login-Attempt: 1\r$/m, 'wait is not a new attempt');

# what the auth server sends that cannot be used

$s = login('garbage', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'garbage response');

$s = login('hostname', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'hostname in auth-server');

$s = login('badport', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'bad auth-port');

$s = login('noserver', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'no auth-server');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('APOP ok-nopass ' . ('f' x 32));
$s->check(qr/^-ERR internal server error\r\n$/, 'apop without auth-pass');

$s = login('silent', 'x');
$s->check(qr/^-ERR internal server error\r\n$/, 'auth server timed out');

# auth server down

$s = login('ok', 'x', PeerAddr => '127.0.0.1:' . port(8113));
$s->check(qr/^-ERR internal server error\r\n$/, 'auth server down');

# unix: auth_http

$s = login('ok', 'secret', PeerAddr => '127.0.0.1:' . port(8112));
$s->check(qr/^\+OK backend/, 'unix socket auth server');
like($t->read_file('auth-unix.log'),
	qr/^GET \/unix-auth HTTP\/1\.0\r\nHost: localhost\r\n/, 'unix request');

# a PROXY header from the client: Proxy-Protocol-* headers, and the real IP

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8115));
$s->print("PROXY TCP4 192.0.2.1 192.0.2.2 1234 110" . CRLF);
$s->ok('greeting after a PROXY header');
$s->send('USER ok');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK backend/, 'login behind a PROXY header');
$r = last_request();
ok(index($r, "Client-IP: 192.0.2.1\r\nProxy-Protocol-Addr: 192.0.2.1\r\n"
	. "Proxy-Protocol-Port: 1234\r\nProxy-Protocol-Server-Addr: 192.0.2.2\r\n"
	. "Proxy-Protocol-Server-Port: 110\r\nX-Auth-Key: secret key\r\n") > 0,
	'proxy protocol headers and real ip');

# sessions still open at shutdown make nginx 1.22 log alerts
undef $s;
$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/sent invalid header in response/, 'garbage logged');
like($log, qr/sent invalid server address:"example\.com"/, 'hostname logged');
like($log, qr/auth http server .* timed out/, 'timeout logged');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################

sub auth_daemon {
	my ($kind, $dir) = @_;
	my $server = $kind eq 'unix'
		? IO::Socket::UNIX->new(Local => "$dir/auth.sock", Listen => 64)
		: IO::Socket::INET->new(Proto => 'tcp',
			LocalAddr => '127.0.0.1:' . port(8081),
			Listen => 64, ReuseAddr => 1);
	die "auth listen: $!" unless $server;
	my $file = $kind eq 'unix' ? "$dir/auth-unix.log" : "$dir/auth.log";
	my (@held, %waited);
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		open my $fh, '>>', $file or die;
		print $fh $req;
		close $fh;
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		$user //= '';
		my $backend = "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8111) . CRLF;
		my $reply = "HTTP/1.0 200 OK" . CRLF;
		if ($user eq 'silent') {
			push @held, $c;
			next;
		} elsif ($user eq 'garbage') {
			$reply = "\x00\x01 garbage" . CRLF . CRLF;
		} elsif ($user eq 'refuse') {
			$reply .= "Auth-Status: go away, please" . CRLF;
		} elsif ($user eq 'retry') {
			$reply .= "Auth-Status: try again" . CRLF . "Auth-Wait: 1" . CRLF;
		} elsif ($user eq 'wait' && !$waited{$user}++) {
			$reply .= "Auth-Status: WAIT" . CRLF . "Auth-Wait: 1" . CRLF;
		} elsif ($user eq 'hostname') {
			$reply .= "Auth-Status: OK" . CRLF . "Auth-Server: example.com"
				. CRLF . "Auth-Port: 110" . CRLF;
		} elsif ($user eq 'badport') {
			$reply .= "Auth-Status: OK" . CRLF . "Auth-Server: 127.0.0.1"
				. CRLF . "Auth-Port: 70000" . CRLF;
		} elsif ($user eq 'noserver') {
			$reply .= "Auth-Status: OK" . CRLF;
		} elsif ($user eq 'ok-nopass') {
			$reply .= "Auth-Status: OK" . CRLF . $backend;
		} elsif ($user eq 'rename') {
			$reply .= "Auth-Status: OK" . CRLF . $backend
				. "Auth-User: renamed" . CRLF;
		} elsif ($req =~ /^Auth-Method: apop\r$/m) {
			$reply .= "Auth-Status: OK" . CRLF . $backend
				. "Auth-Pass: from-auth-server" . CRLF;
		} else {
			$reply .= "Auth-Status: OK" . CRLF . $backend;
		}
		print $c $reply . CRLF;
		close $c;
	}
}

sub backend {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8111), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "+OK backend ready" . CRLF;
		while (defined(my $l = <$c>)) {
			open my $fh, '>>', "$dir/backend.log" or die;
			print $fh $l;
			close $fh;
			if ($l =~ /^PASS/) {
				print $c "+OK backend says hello" . CRLF;
			} elsif ($l =~ /^QUIT/) {
				print $c "+OK bye" . CRLF;
				last;
			} else {
				print $c "+OK" . CRLF;
			}
		}
		close $c;
	}
}

###############################################################################
