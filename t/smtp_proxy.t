#!/usr/bin/perl

# Tests for the smtp backend dialogue and smtp_auth none: XCLIENT (ADDR,
# LOGIN, NAME, xtext), the client's HELO/EHLO, proxy_smtp_auth, the envelope
# sent as Auth-SMTP-* and replayed, Auth-Error-Code, backends that refuse or
# hang up, proxy_pass_error_message, PROXY headers both ways, and byte-exact
# pass-through both ways.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
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

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail smtp/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http    127.0.0.1:8081/auth;
    server_name  mx.test;

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        smtp_auth  plain login none;
    }

    server {
        listen     127.0.0.1:8030;
        protocol   smtp;
        xclient    off;
        proxy_smtp_auth on;
    }

    server {
        listen     127.0.0.1:8031;
        protocol   smtp;
        proxy_pass_error_message on;
    }

    server {
        listen     127.0.0.1:8033 proxy_protocol;
        protocol   smtp;
        set_real_ip_from 127.0.0.1;
        proxy_protocol on;
    }
}

EOF

my $d = $t->testdir();
port($_) for 8081 .. 8085;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&backend, $d, $_) for 8082 .. 8085;
$t->run()->plan(49);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081 .. 8085;

###############################################################################

sub requests { split /(?=^GET )/m, $t->read_file('auth.log') }
sub last_request { (requests())[-1] // '' }

# what the backend got in its latest session
sub backend_session {
	my @s = split /^(?=CONNECT)/m, $t->read_file('backend.log');
	my $last = $s[-1] // '';
	$last =~ s/^CONNECT \d+\r?\n//;
	return $last;
}

sub session {
	my ($port, $helo) = @_;
	my $s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	if ($helo) {
		$s->send($helo);
		$s->read();
	}
	return $s;
}

sub auth_plain {
	my ($s, $user, $pass) = @_;
	$s->send('AUTH PLAIN ' . encode_base64("\0$user\0$pass", ''));
}

# authenticated: EHLO, XCLIENT, the client's EHLO, then 235 to the client

my $s = session(8025, 'EHLO client.example');
auth_plain($s, 'test@example.com', 'secret');
$s->check(qr/^235 2\.0\.0 OK\r\n$/, 'logged in');
is(backend_session(), "EHLO mx.test\r\n"
	. "XCLIENT ADDR=127.0.0.1 LOGIN=test\@example.com NAME=[UNAVAILABLE]\r\n"
	. "EHLO client.example\r\n", 'backend dialogue with xclient');
is(last_request(), "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\n"
	. "Auth-Method: plain\r\nAuth-User: test\@example.com\r\n"
	. "Auth-Pass: secret\r\nAuth-Protocol: smtp\r\n"
	. "Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n"
	. "Client-Host: [UNAVAILABLE]\r\n\r\n", 'auth request');

# pass-through: a 1 MiB message up, a 1 MiB reply down, byte for byte

$s->send('MAIL FROM:<a@example.com>');
$s->check(qr/^250 backend mail ok/, 'mail from the backend');
$s->send('RCPT TO:<b@example.com>');
$s->check(qr/^250 backend rcpt ok/, 'rcpt from the backend');
$s->send('DATA');
$s->check(qr/^354 /, 'data');
my $body = join '', map { 'line ' . $_ . ' ' . ('x' x ($_ % 900)) . CRLF }
	1 .. 2300;
$s->print($body . '.' . CRLF);
$s->check(qr/^250 queued ${\ length $body} ${\ md5_hex($body)}\r\n$/,
	'message delivered byte for byte');
$s->send('XBIG 1048576');
my ($got, $line) = ('');
while (defined($line = $s->getline())) {
	last unless $line =~ /^250-/;
	$got .= $line;
}
like($line // '', qr/^250 sent ${\ length $got} ${\ md5_hex($got)}\r\n$/,
	'backend reply relayed byte for byte');
$s->send('QUIT');
$s->check(qr/^221 /, 'quit through the backend');

# HELO, and xtext in XCLIENT

$s = session(8025, 'HELO old.example');
auth_plain($s, 'a+b=c d', 'secret');
$s->authok('logged in after helo');
SKIP: {
# stock xtext-encodes XCLIENT LOGIN since 1.28.1 (and 1.29.2)
skip 'stock nginx before 1.28.1', 1 if $stock && !$t->has_version('1.28.1');
is(backend_session(), "EHLO mx.test\r\n"
	. "XCLIENT ADDR=127.0.0.1 LOGIN=a+2Bb+3Dc+20d NAME=[UNAVAILABLE]\r\n"
	. "HELO old.example\r\n", 'helo again after xclient, login as xtext');
}

$s = session(8025);
auth_plain($s, 'test@example.com', 'secret');
$s->authok('logged in without helo');
is(backend_session(), "EHLO mx.test\r\n"
	. "XCLIENT ADDR=127.0.0.1 LOGIN=test\@example.com NAME=[UNAVAILABLE]\r\n",
	'no helo to repeat');

# xclient off, proxy_smtp_auth on

$s = session(8030, 'EHLO client.example');
auth_plain($s, 'test@example.com', 'secret');
$s->authok('logged in with proxy_smtp_auth');
is(backend_session(), "EHLO mx.test\r\nAUTH PLAIN "
	. encode_base64("\0test\@example.com\0secret", '') . "\r\n",
	'auth plain to the backend');

$s = session(8030, 'HELO old.example');
auth_plain($s, 'test@example.com', 'secret');
$s->authok('proxy_smtp_auth after helo');
like(backend_session(), qr/^HELO mx\.test\r\nAUTH PLAIN /, 'helo to the backend');

$s = session(8030, 'EHLO client.example');
auth_plain($s, 'noauth', 'secret');
$s->check(qr/^451 4\.3\.2 Internal server error\r\n$/, 'backend refused auth');

# backends that refuse XCLIENT or hang up

$s = session(8025, 'EHLO client.example');
auth_plain($s, 'noxclient', 'secret');
$s->check(qr/^451 4\.3\.2 Internal server error\r\n$/, 'backend refused xclient');
ok($s->eof(), 'closed after the backend refused');

$s = session(8031, 'EHLO client.example');
auth_plain($s, 'noxclient', 'secret');
$s->check(qr/^550 5\.7\.0 xclient denied\r\n$/, 'proxy_pass_error_message');

$s = session(8025, 'EHLO client.example');
auth_plain($s, 'hangup', 'secret');
$s->check(qr/^451 4\.3\.2 /, 'backend hung up during login');

# refusals: Auth-Error-Code, its default, and Auth-Wait

$s = session(8025, 'EHLO client.example');
auth_plain($s, 'refuse', 'x');
$s->check(qr/^535 5\.7\.0 Go away\r\n$/, 'default auth error code');
$s = session(8025, 'EHLO client.example');
auth_plain($s, 'coded', 'x');
$s->check(qr/^550 5\.7\.1 Not here\r\n$/, 'auth error code');
$s = session(8025, 'EHLO client.example');
auth_plain($s, 'emptycode', 'x');
$s->check(qr/^535 5\.7\.0 Not here\r\n$/, 'empty auth error code: the default');
$s = session(8025, 'EHLO client.example');
auth_plain($s, 'retry', 'x');
$s->check(qr/^535 5\.7\.0 Try again\r\n$/, 'refused with auth-wait');
auth_plain($s, 'test@example.com', 'secret');
$s->authok('second attempt');
like(last_request(), qr/^Auth-Login-Attempt: 2\r$/m, 'attempts counted');

# smtp_auth none: the envelope to the auth server, then to the backend

$s = session(8025, 'EHLO client.example');
$s->send('MAIL FROM:<a@example.com> SIZE=100');
$s->check(qr/^250 2\.0\.0 OK\r\n$/, 'mail from, auth none');
$s->send('MAIL FROM:<x@example.com>');
$s->check(qr/^503 5\.5\.1 /, 'second mail from');
$s->send('RCPT TO:<b@example.com>');
$s->check(qr/^250 backend rcpt ok\r\n$/, 'backend reply to rcpt');
my $r = last_request();
ok(index($r, "Auth-Method: none\r\nAuth-User: \r\nAuth-Pass: \r\n") > 0,
	'no login or password');
ok(index($r, "Auth-SMTP-Helo: client.example\r\n"
	. "Auth-SMTP-From: MAIL FROM:<a\@example.com> SIZE=100\r\n"
	. "Auth-SMTP-To: RCPT TO:<b\@example.com>\r\n") > 0, 'envelope headers');
is(backend_session(), "EHLO mx.test\r\n"
	. "XCLIENT ADDR=127.0.0.1 NAME=[UNAVAILABLE]\r\n"
	. "EHLO client.example\r\nMAIL FROM:<a\@example.com> SIZE=100\r\n"
	. "RCPT TO:<b\@example.com>\r\n", 'envelope replayed');
$s->send('DATA');
$s->check(qr/^354 /, 'data after relay');

# refused envelope, and pipelining through the auth request

$s = session(8025, 'EHLO client.example');
$s->print('MAIL FROM:<a@example.com>' . CRLF . 'RCPT TO:<refuse@example.com>'
	. CRLF);
$s->ok('pipelined mail from');
$s->check(qr/^550 5\.1\.1 No such user\r\n$/, 'refused recipient');

$s = session(8025, 'EHLO client.example');
$s->print('RSET' . CRLF . 'MAIL FROM:<a@example.com>' . CRLF
	. 'RCPT TO:<b@example.com>' . CRLF . 'DATA' . CRLF);
$s->ok('pipelined rset');
$s->ok('pipelined mail');
$s->check(qr/^250 backend rcpt ok/, 'pipelined rcpt');
$s->check(qr/^354 /, 'data pipelined behind the auth request');

# CVE-2025-53859: logins broken by decode errors never reach the auth server

$s = session(8025, 'EHLO client.example');
$s->send('AUTH PLAIN ' . encode_base64("\0leak\0", '') . '!');
$s->read();
$s->send('AUTH LOGIN ' . encode_base64('leak2', ''));
$s->read();
$s->send('%%%');
$s->read();
$s->send('MAIL FROM:<a@example.com>');
$s->read();
$s->send('RCPT TO:<b@example.com>');
$s->read();
SKIP: {
# CVE-2025-53859, fixed in stock 1.28.1 (and 1.29.1)
skip 'stock nginx before 1.28.1', 1 if $stock && !$t->has_version('1.28.1');
like(last_request(), qr/^Auth-User: \r\nAuth-Pass: \r$/m,
	'no login from broken auth attempts');
}

# a login name from an AUTH LOGIN refused at its password line (bad
# base64), begun after MAIL, is not sent with smtp_auth none's envelope;
# stock sends it

$s = session(8025, 'EHLO client.example');
$s->send('MAIL FROM:<a@example.com>');
$s->read();
$s->send('AUTH LOGIN');
$s->read();
$s->send(encode_base64('leak3', ''));
$s->read();
$s->send(encode_base64('secret', '') . "\t");
$s->read();
$s->send('RCPT TO:<b@example.com>');
$s->read();
SKIP: {
skip 'stock sends the login of the refused exchange', 1 if $stock;
like(last_request(), qr/^Auth-User: \r\nAuth-Pass: \r$/m,
	'no login from an exchange refused at its password');
}

# a PROXY header from the client, and one to the backend

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8033));
$s->print('PROXY TCP4 192.0.2.1 192.0.2.2 1234 25' . CRLF);
$s->read();
$s->send('EHLO client.example');
$s->read();
auth_plain($s, 'test@example.com', 'secret');
$s->authok('logged in behind a proxy header');
like(backend_session(), qr/^PROXY TCP4 192\.0\.2\.1 \S+ 1234 \d+\r\nEHLO mx\.test\r\nXCLIENT ADDR=192\.0\.2\.1 /,
	'proxy protocol to the backend, real address in xclient');

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8033));
$s->print('PROXY TCP6 2001:db8::1 2001:db8::2 1234 25' . CRLF);
$s->read();
auth_plain($s, 'test@example.com', 'secret');
$s->authok('logged in from ipv6');
like(backend_session(), qr/^XCLIENT ADDR=IPV6:2001:db8::1 /m, 'ipv6 in xclient');

undef $s;
$t->stop();

like($t->read_file('error.log'), qr/upstream sent invalid response: "535 5\.7\.8/,
	'refused auth logged');

# the context of a log line is nginx's mail core's (ngx_mail_log_error), for
# our sessions too: from nginx 1.29.1 on it names the backend of a session
# without a login (smtp_auth none), before it stopped at the missing login
my $none = 'client logged in, client: 127\.0\.0\.1, server: 127\.0\.0\.1:'
	. port(8025);
if ($t->has_version('1.29.1')) {
	like($t->read_file('error.log'), qr/$none, upstream: 127\.0\.0\.1:\d+$/m,
		'smtp_auth none session logged with its upstream');
} else {
	like($t->read_file('error.log'), qr/$none$/m,
		'smtp_auth none session logged without its upstream');
}

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
	my %port = (noxclient => 8083, noauth => 8084, hangup => 8085);
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		$user //= '';
		my $reply = "HTTP/1.0 200 OK" . CRLF;
		if ($user eq 'refuse') {
			$reply .= "Auth-Status: Go away" . CRLF;
		} elsif ($user eq 'coded') {
			$reply .= "Auth-Status: Not here" . CRLF
				. "Auth-Error-Code: 550 5.7.1" . CRLF;
		} elsif ($user eq 'emptycode') {
			$reply .= "Auth-Status: Not here" . CRLF
				. "Auth-Error-Code: " . CRLF;
		} elsif ($user eq 'retry') {
			$reply .= "Auth-Status: Try again" . CRLF . "Auth-Wait: 1" . CRLF;
		} elsif ($req =~ /^Auth-SMTP-To: RCPT TO:<refuse/m) {
			$reply .= "Auth-Status: No such user" . CRLF
				. "Auth-Error-Code: 550 5.1.1" . CRLF;
		} else {
			$reply .= "Auth-Status: OK" . CRLF . "Auth-Server: 127.0.0.1" . CRLF
				. "Auth-Port: " . port($port{$user} || 8082) . CRLF;
		}
		print $c $reply . CRLF;
		close $c;
	}
}

# One fake SMTP backend per mode: 8082 serves, 8083 refuses XCLIENT,
# 8084 refuses AUTH, 8085 hangs up after the first command. Every line
# received goes to backend.log after "CONNECT <port>", written with the
# first line: waitforsocket's probes, which send nothing, log nothing and
# so cannot land between a session's lines.
sub backend {
	my ($dir, $port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $log = sub {
			open my $fh, '>>', "$dir/backend.log" or die;
			print $fh @_;
			close $fh;
		};
		my $first = 1;
		print $c "220 backend ready" . CRLF;
		while (defined(my $l = <$c>)) {
			$log->($first-- > 0 ? "CONNECT $port\r\n" : '', $l);
			if ($l =~ /^PROXY /) {
				next;
			} elsif ($port == 8085) {
				last;
			} elsif ($l =~ /^XCLIENT/ && $port == 8083) {
				print $c "550 5.7.0 xclient denied" . CRLF;
			} elsif ($l =~ /^XCLIENT/) {
				print $c "220 xclient ok" . CRLF;
			} elsif ($l =~ /^AUTH/ && $port == 8084) {
				print $c "535 5.7.8 auth denied" . CRLF;
			} elsif ($l =~ /^AUTH/) {
				print $c "235 2.7.0 backend auth ok" . CRLF;
			} elsif ($l =~ /^MAIL/) {
				print $c "250 backend mail ok" . CRLF;
			} elsif ($l =~ /^RCPT/) {
				print $c "250 backend rcpt ok" . CRLF;
			} elsif ($l =~ /^DATA/) {
				print $c "354 go ahead" . CRLF;
				my $data = '';
				while (defined(my $m = <$c>)) {
					last if $m eq ".\r\n";
					$data .= $m;
				}
				print $c "250 queued " . length($data) . " "
					. md5_hex($data) . CRLF;
			} elsif ($l =~ /^XBIG (\d+)/) {
				my $left = $1;
				my $sent = '';
				while ($left > 0) {
					my $n = $left > 1000 ? 1000 : $left;
					my $chunk = '250-' . ('y' x ($n - 6)) . CRLF;
					$sent .= $chunk;
					$left -= length $chunk;
				}
				print $c $sent . "250 sent " . length($sent) . " "
					. md5_hex($sent) . CRLF;
			} elsif ($l =~ /^QUIT/) {
				print $c "221 bye" . CRLF;
				last;
			} else {
				print $c "250 backend hello" . CRLF;
			}
		}
		close $c;
	}
}

###############################################################################
