#!/usr/bin/perl

# Tests for XOAUTH2 and OAUTHBEARER (freenginx 1.27.1) in POP3, IMAP and
# SMTP: the capability lists, the auth request (Auth-Method, Auth-User from
# the SASL message, the token as Auth-Pass), the backend login, the
# auth server's Auth-Error-SASL relayed as a SASL error challenge, the
# client's dummy response and the final refusal byte for byte, bad
# messages, and real clients (curl --oauth2-bearer, Python's imaplib and
# smtplib) with tokens of several KiB.

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
use Test::Nginx::POP3;
use Test::Nginx::IMAP;
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'stock nginx 1.28 has no XOAUTH2 or OAUTHBEARER') if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http    127.0.0.1:8081/auth;
    server_name  mx.test;
    xclient      off;
    timeout      5s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        pop3_auth  plain xoauth2 oauthbearer;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        pop3_auth  xoauth2;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        pop3_auth  oauthbearer;
        pop3_client_buffer 16k;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
        imap_auth  plain xoauth2 oauthbearer;
        imap_client_buffer 16k;
    }

    server {
        listen     127.0.0.1:8144;
        protocol   imap;
        imap_auth  XOAUTH2;
        imap_client_buffer 16k;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        smtp_auth  login xoauth2 oauthbearer;
        smtp_client_buffer 16k;
    }

    server {
        listen     127.0.0.1:8026;
        protocol   smtp;
        smtp_auth  xoauth2;
        smtp_client_buffer 16k;
    }
}

EOF

# what an auth server sends as Auth-Error-SASL (RFC 7628, 3.2.2)
my $esasl = encode_base64('{"status":"invalid_token","scope":"mail"}', '');

my $d = $t->testdir();

# daemons are forked: settle their ports first so that all agree
port($_) for 8081, 8120, 8150, 8040;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&pop3_backend, $d);
$t->run_daemon(\&imap_backend, $d);
$t->run_daemon(\&smtp_backend, $d);
$t->run()->plan(84);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8120, 8150, 8040;

###############################################################################

sub xoauth2 {
	my ($user, $token) = @_;
	return encode_base64("user=$user\x01auth=Bearer $token\x01\x01", '');
}

sub bearer {
	my ($user, $token) = @_;
	return encode_base64("n,a=$user,\x01host=mx.test\x01port=143\x01"
		. "auth=Bearer $token\x01\x01", '');
}

sub requests {
	return split /(?=^GET )/m, $t->read_file('auth.log');
}

sub last_request {
	return (requests())[-1] // '';
}

sub backend_log {
	my ($proto) = @_;
	return $t->read_file("$proto.log");
}

# the whole rest of what nginx sends, until it closes (or 3s pass)
sub rest {
	my ($s) = @_;
	my $got = '';
	while (defined(my $l = $s->read())) {
		$got .= $l;
	}
	return $got;
}

###############################################################################

# POP3: what the client is offered

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('CAPA');
is(join('', map { $s->read() } 1 .. 6),
	"+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\n"
	. "SASL PLAIN LOGIN XOAUTH2 OAUTHBEARER\r\n.\r\n", 'pop3 capa');
$s->send('AUTH');
is(join('', map { $s->read() } 1 .. 6),
	"+OK methods supported:\r\nPLAIN\r\nLOGIN\r\nXOAUTH2\r\nOAUTHBEARER\r\n.\r\n",
	'pop3 auth list');

# XOAUTH2 with an initial response: the request byte for byte

$s->send('AUTH XOAUTH2 ' . xoauth2('user@example.com', 'good-token'));
is($s->read(), "+OK backend logged in\r\n", 'pop3 xoauth2 initial response');
is(last_request(), "GET /auth HTTP/1.0\r\nHost: 127.0.0.1\r\n"
	. "Auth-Method: xoauth2\r\nAuth-User: user\@example.com\r\n"
	. "Auth-Pass: good-token\r\nAuth-Protocol: pop3\r\n"
	. "Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n",
	'pop3 xoauth2 auth request');
like(backend_log('pop3'), qr/\AUSER user\@example.com\r\nPASS backend-secret\r\n/,
	'pop3 backend login with Auth-Pass');

# XOAUTH2 after an empty challenge; without Auth-Pass the token logs in

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH XOAUTH2');
is($s->read(), "+ \r\n", 'pop3 xoauth2 empty challenge');
$s->send(xoauth2('joe', 'good-pass'));
is($s->read(), "+OK backend logged in\r\n", 'pop3 xoauth2 response');
like(backend_log('pop3'), qr/^USER joe\r\nPASS good-pass\r\n\z/m,
	'pop3 backend login with the token');

# OAUTHBEARER: the GS2 authzid is the user, =2C and =3D decoded

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH OAUTHBEARER ' . bearer('a=2Cb=3Dc', 'good-token'));
is($s->read(), "+OK backend logged in\r\n", 'pop3 oauthbearer');
like(last_request(), qr/^Auth-Method: oauthbearer\r\nAuth-User: a,b=c\r\nAuth-Pass: good-token\r\n/m, 'pop3 oauthbearer auth request');

# the error challenge, the dummy response, the refusal; with Auth-Wait the
# client may try again

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH XOAUTH2 ' . xoauth2('retry', 'bad'));
is($s->read(), "+ $esasl\r\n", 'pop3 xoauth2 error challenge');
$s->send('');
is($s->read(), "-ERR Invalid token\r\n", 'pop3 xoauth2 refusal after the dummy');
$s->send('AUTH OAUTHBEARER');
is($s->read(), "+ \r\n", 'pop3 retry');
$s->send(bearer('retry', 'bad'));
is($s->read(), "+ $esasl\r\n", 'pop3 oauthbearer error challenge');
$s->send('AQ==');
is($s->read(), "-ERR Invalid token\r\n", 'pop3 oauthbearer refusal after the dummy');
$s->send('NOOP');
is($s->read(), "+OK\r\n", 'pop3 session goes on');
$s->send('AUTH XOAUTH2 ' . xoauth2('retry', 'good'));
is($s->read(), "+OK backend logged in\r\n", 'pop3 then logged in');
like(last_request(), qr/^Auth-Login-Attempt: 3\r$/m, 'pop3 third attempt');

# the dummy response pipelined behind the AUTH command waits for the
# challenge

$s = Test::Nginx::POP3->new();
$s->read();
$s->print('AUTH XOAUTH2 ' . xoauth2('retry', 'bad') . CRLF . CRLF . 'NOOP' . CRLF);
is($s->read() . $s->read() . $s->read(),
	"+ $esasl\r\n-ERR Invalid token\r\n+OK\r\n", 'pop3 pipelined dummy response');

# without Auth-Wait the refusal ends the session

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH OAUTHBEARER ' . bearer('quit', 'bad'));
is($s->read(), "+ $esasl\r\n", 'pop3 challenge, no wait');
$s->send('AQ==');
is(rest($s), "-ERR Invalid token\r\n", 'pop3 refusal, then closed');

# a wrong answer to the challenge: invalid command (and closed without
# Auth-Wait)

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH XOAUTH2 ' . xoauth2('retry', 'bad'));
$s->read();
$s->send('AQ==');
is($s->read(), "-ERR invalid command\r\n", 'pop3 xoauth2 wrong dummy');
$s->send('NOOP');
is($s->read(), "+OK\r\n", 'pop3 session goes on after it');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH OAUTHBEARER ' . bearer('quit', 'bad'));
$s->read();
$s->send('');
is(rest($s), "-ERR invalid command\r\n", 'pop3 oauthbearer wrong dummy, closed');

# no Auth-Error-SASL: the refusal at once; with PLAIN it is never relayed

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH XOAUTH2 ' . xoauth2('quit', 'nosasl'));
is(rest($s), "-ERR Invalid token\r\n", 'pop3 refusal without a challenge');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0quit\0wrong", ''));
is(rest($s), "-ERR Invalid login or password\r\n",
	'pop3 plain: Auth-Error-SASL ignored');

# messages nginx refuses before asking anyone

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH XOAUTH2 ' . encode_base64("user=u\x01auth=Basic x\x01\x01", ''));
is($s->read(), "-ERR invalid command\r\n", 'pop3 xoauth2 without a bearer token');
$s->send('AUTH XOAUTH2 ' . encode_base64("u\x01auth=Bearer x\x01\x01", ''));
is($s->read(), "-ERR invalid command\r\n", 'pop3 xoauth2 without user=');
$s->send('AUTH OAUTHBEARER ' . encode_base64("n,,\x01auth=Bearer x\x01\x01", ''));
is($s->read(), "-ERR invalid command\r\n", 'pop3 oauthbearer without a user');
$s->send('AUTH OAUTHBEARER ' . encode_base64("n,a=u,\x01auth=Bearer \x01\x01", ''));
is($s->read(), "-ERR invalid command\r\n", 'pop3 oauthbearer empty token');
$s->send('AUTH XOAUTH2 @@@@');
is($s->read(), "-ERR invalid command\r\n", 'pop3 xoauth2 bad base64');
$s->send('AUTH XOAUTH2 ' . xoauth2("u\r\nDELE 1", 'x'));
is($s->read(), "-ERR invalid command\r\n", 'pop3 xoauth2 line break in the user');

# with a bearer mechanism on, the POP3 command buffer is a page by
# default (stock's 128 bytes without)

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH XOAUTH2 ' . xoauth2('joe', 'good' . ('t' x 2000)));
is($s->read(), "+OK backend logged in\r\n", 'pop3 2 KiB token, default buffer');

# only the enabled mechanisms

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8111));
$s->read();
$s->send('AUTH OAUTHBEARER ' . bearer('u', 'good'));
is($s->read(), "-ERR invalid command\r\n", 'pop3 oauthbearer not enabled');
$s->send('AUTH');
is(join('', map { $s->read() } 1 .. 3),
	"+OK methods supported:\r\nXOAUTH2\r\n.\r\n", 'pop3 xoauth2 only');

###############################################################################

# IMAP

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('a1 CAPABILITY');
is($s->read() . $s->read(), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN "
	. "AUTH=XOAUTH2 AUTH=OAUTHBEARER\r\na1 OK completed\r\n", 'imap capability');
$s->send('a2 AUTHENTICATE XOAUTH2 ' . xoauth2('user@example.com', 'good-token'));
is($s->read(), "a2 OK backend logged in\r\n", 'imap xoauth2');
like(last_request(), qr/^Auth-Method: xoauth2\r\nAuth-User: user\@example.com\r\nAuth-Pass: good-token\r\nAuth-Protocol: imap\r\n/m, 'imap auth request');
like(backend_log('imap'),
	qr/^a2 LOGIN \{16\}\r\nuser\@example.com \{14\}\r\nbackend-secret\r\n/m,
	'imap backend login');

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('b1 AUTHENTICATE OAUTHBEARER');
is($s->read(), "+ \r\n", 'imap oauthbearer empty challenge');
$s->send(bearer('retry', 'bad'));
is($s->read(), "+ $esasl\r\n", 'imap oauthbearer error challenge');
$s->send('AQ==');
is($s->read(), "b1 NO Invalid token\r\n", 'imap refusal with the tag');
$s->send('b2 NOOP');
is($s->read(), "b2 OK completed\r\n", 'imap session goes on');
$s->send('b3 AUTHENTICATE XOAUTH2 ' . xoauth2('retry', 'bad'));
is($s->read(), "+ $esasl\r\n", 'imap xoauth2 error challenge');
$s->send('AQ==');
is($s->read(), "b3 BAD invalid command\r\n", 'imap wrong dummy, tagged');
$s->send('b4 AUTHENTICATE XOAUTH2 ' . xoauth2('retry', 'bad'));
$s->read();
$s->send('');
is($s->read(), "b4 NO Invalid token\r\n", 'imap xoauth2 refusal');
$s->send('b5 AUTHENTICATE OAUTHBEARER ' . bearer('quit', 'bad'));
is($s->read(), "+ $esasl\r\n", 'imap challenge, no wait');
$s->send('AQ==');
is(rest($s), "b5 NO Invalid token\r\n", 'imap refusal, then closed');

$s = Test::Nginx::IMAP->new(PeerAddr => '127.0.0.1:' . port(8144));
$s->read();
$s->send('c1 AUTHENTICATE OAUTHBEARER ' . bearer('u', 'good'));
is($s->read(), "c1 BAD invalid command\r\n", 'imap oauthbearer not enabled');

###############################################################################

# SMTP

$s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO client.test');
is($s->getline() . $s->getline(), "250-mx.test\r\n250 AUTH LOGIN XOAUTH2 OAUTHBEARER\r\n",
	'smtp ehlo');
$s->send('AUTH XOAUTH2 ' . xoauth2('retry', 'bad'));
is($s->read(), "334 $esasl\r\n", 'smtp xoauth2 error challenge');
$s->send('');
is($s->read(), "535 5.7.8 Invalid token\r\n", 'smtp refusal with Auth-Error-Code');
$s->send('AUTH OAUTHBEARER');
is($s->read(), "334 \r\n", 'smtp oauthbearer empty challenge');
$s->send(bearer('retry', 'bad'));
is($s->read(), "334 $esasl\r\n", 'smtp oauthbearer error challenge');
$s->send('QUIT');
is($s->read(), "500 5.5.1 Invalid command\r\n", 'smtp wrong dummy');
$s->send('AUTH OAUTHBEARER ' . bearer('user@example.com', 'good-token'));
is($s->read(), "235 2.0.0 OK\r\n", 'smtp oauthbearer');
like(last_request(), qr/^Auth-Method: oauthbearer\r\nAuth-User: user\@example.com\r\nAuth-Pass: good-token\r\nAuth-Protocol: smtp\r\nAuth-Login-Attempt: 3\r\n/m,
	'smtp auth request');
$s->send('QUIT');
is($s->read(), "221 backend bye\r\n", 'smtp proxied');

$s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO client.test');
$s->read();
$s->send('AUTH XOAUTH2 ' . xoauth2('quit', 'bad'));
is($s->read(), "334 $esasl\r\n", 'smtp challenge, no wait');
$s->send('');
is(rest($s), "535 5.7.8 Invalid token\r\n", 'smtp refusal, then closed');

###############################################################################

# real clients

my $curl = `curl --version 2>/dev/null` // '';
my $python = `python3 -c 'import imaplib, smtplib; print("ok")' 2>/dev/null` // '';
my $big = 'eyJ' . join('', map { ('A' .. 'Z', 'a' .. 'z')[$_ % 52] } 1 .. 8000);

SKIP: {
skip 'no curl with pop3, imap and smtp', 14
	unless grep({ $curl =~ /^Protocols:.*\b$_\b/m } qw/pop3 imap smtp/) == 3;

# curl picks OAUTHBEARER when offered, XOAUTH2 otherwise
is(curl('pop3', 8110, '/', 'good-pop3'), "0|1 120\r\n", 'curl pop3 oauthbearer');
like(last_request(), qr/^Auth-Method: oauthbearer\r\nAuth-User: curl-user\r\n/m,
	'curl pop3 auth request');
is(curl('pop3', 8111, '/', 'good-pop3'), "0|1 120\r\n", 'curl pop3 xoauth2');
like(last_request(), qr/^Auth-Method: xoauth2\r\nAuth-User: curl-user\r\n/m,
	'curl pop3 xoauth2 auth request');
is(curl('pop3', 8112, '/', "good$big"), "0|1 120\r\n",
	'curl pop3 oauthbearer, 8 KiB token, pop3_client_buffer');
like(curl('imap', 8143, '/', "good$big"), qr/^0\|\* LIST .* INBOX\r\n\z/,
	'curl imap oauthbearer, 8 KiB token');
like(last_request(), qr/^Auth-Method: oauthbearer\r\nAuth-User: curl-user\r\nAuth-Pass: good$big\r\n/m, 'curl imap token in Auth-Pass');
like(curl('imap', 8144, '/', "good$big"), qr/^0\|\* LIST .* INBOX\r\n\z/,
	'curl imap xoauth2, 8 KiB token');
is(curl('smtp', 8025, '', "good$big"), '0|', 'curl smtp oauthbearer, 8 KiB token');
like(backend_log('smtp'),
	qr/^MAIL FROM:<from\@example.com>\r\nRCPT TO:<to\@example.com>\r\nDATA\r\n/m,
	'curl smtp mail passed');
is(curl('smtp', 8026, '', "good$big"), '0|', 'curl smtp xoauth2, 8 KiB token');

# the error challenge: curl answers OAUTHBEARER's with the dummy response
like(curl('imap', 8143, '/', 'bad', 'trace'),
	qr/^67\|.*Recv header.*\n0000: \Q+ $esasl\E\n.*Send header.*\n0000: AQ==\n/s,
	'curl imap: the challenge, the dummy response');
like($t->read_file('trace.txt'), qr/^0000: A002 NO Invalid token\n/m,
	'curl imap: the refusal');
like(curl('smtp', 8025, '', 'bad', 'trace'),
	qr/^67\|.*\Q334 $esasl\E.*AQ==.*535 5\.7\.8 Invalid token/s,
	'curl smtp refusal dialogue');

}

SKIP: {
skip 'no python3 with imaplib and smtplib', 8 unless $python =~ /ok/;

my $py = "$d/client.py";
$t->write_file('client.py', <<'EOF');
import imaplib, smtplib, sys

proto, port, mech, user, token = sys.argv[1:6]
if mech == 'XOAUTH2':
    msg = 'user=%s\x01auth=Bearer %s\x01\x01' % (user, token)
    dummy = ''
else:
    msg = 'n,a=%s,\x01auth=Bearer %s\x01\x01' % (user, token)
    dummy = '\x01'
seen = []
def answer(challenge=None):
    if seen:
        seen.append(challenge)
        return dummy
    seen.append(challenge)
    return msg

try:
    if proto == 'imap':
        c = imaplib.IMAP4('127.0.0.1', int(port))
        typ, data = c.authenticate(mech, lambda ch: answer(ch).encode())
        print(typ, data[0].decode())
        typ, data = c.list()
        print(typ, data[0].decode())
        c.logout()
    else:
        c = smtplib.SMTP('127.0.0.1', int(port))
        c.ehlo('client.test')
        print(c.auth(mech, answer, initial_response_ok=True))
        c.sendmail('from@example.com', ['to@example.com'], 'Subject: x\r\n\r\nhi\r\n')
        c.quit()
except Exception as e:
    print('error', repr(e), 'challenges', [x for x in seen if x])
EOF

my $py_run = sub { my $out = `python3 $py @_ 2>&1`; return $out };

like($py_run->('imap', port(8143), 'XOAUTH2', 'py', "good$big"),
	qr/^OK backend logged in\nOK .*INBOX\n\z/, 'imaplib xoauth2, 8 KiB token');
like(last_request(), qr/^Auth-Method: xoauth2\r\nAuth-User: py\r\n/m,
	'imaplib auth request');
like($py_run->('imap', port(8143), 'OAUTHBEARER', 'py', "good$big"),
	qr/^OK backend logged in\n/, 'imaplib oauthbearer, 8 KiB token');
like($py_run->('imap', port(8143), 'OAUTHBEARER', 'retry', 'bad'),
	qr/^error .*Invalid token.* challenges \[b'\{"status":"invalid_token"/,
	'imaplib refusal after the challenge');
like($py_run->('smtp', port(8025), 'XOAUTH2', 'py', "good$big"),
	qr/^\(235, b'2\.0\.0 OK'\)\n\z/, 'smtplib xoauth2, 8 KiB token');
like($py_run->('smtp', port(8025), 'OAUTHBEARER', 'py', "good$big"),
	qr/^\(235, b'2\.0\.0 OK'\)\n\z/, 'smtplib oauthbearer, 8 KiB token');
like($py_run->('smtp', port(8025), 'XOAUTH2', 'retry', 'bad'),
	qr/^error SMTPAuthenticationError\(535, b'5\.7\.8 Invalid token'\) challenges \[b'\{"status"/,
	'smtplib refusal after the challenge');
like($py_run->('smtp', port(8025), 'OAUTHBEARER', 'retry', 'bad'),
	qr/^error SMTPAuthenticationError\(535/, 'smtplib oauthbearer refusal');

}

# sessions still open at shutdown make nginx 1.22 log alerts
undef $s;
$t->stop();

like($t->read_file('error.log'),
	qr/client sent invalid token in AUTH XOAUTH2 command/,
	'invalid token logged');
like($t->read_file('error.log'),
	qr/client login failed: "Invalid token"/, 'refusal logged');

undef $s;
undef $t;

###############################################################################

# curl against nginx: "exit code|output" (with the protocol trace instead
# of the output when asked)
sub curl {
	my ($proto, $port, $path, $token, $trace) = @_;
	my $url = "$proto://127.0.0.1:" . port($port) . $path;
	my @args = ('-s', '--max-time', '10', '-u', 'curl-user:',
		'--oauth2-bearer', $token);
	if ($proto eq 'smtp') {
		$t->write_file('mail.txt', "Subject: x\r\n\r\nhi\r\n");
		push @args, '--mail-from', 'from@example.com', '--mail-rcpt',
			'to@example.com', '-T', "$d/mail.txt";
		unlink "$d/smtp.log";
	}
	push @args, '--trace-ascii', "$d/trace.txt" if $trace;
	my $cmd = join(' ', 'curl', map { "'$_'" } @args, $url);
	my $out = `$cmd 2>/dev/null`;
	my $rc = $? >> 8;
	$out = $t->read_file('trace.txt') if $trace;
	return "$rc|$out";
}

sub auth_daemon {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	my %backend = (pop3 => 8120, imap => 8150, smtp => 8040);
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		# waitforsocket connects and sends nothing
		next unless length $req;
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		my %h = $req =~ /^([\w-]+): (.*)\r$/mg;
		my ($user, $pass) = ($h{'Auth-User'} // '', $h{'Auth-Pass'} // '');
		my $r = "HTTP/1.0 200 OK" . CRLF;
		if ($pass =~ /^good/ || $pass eq 'secret') {
			$r .= "Auth-Status: OK" . CRLF . "Auth-Server: 127.0.0.1" . CRLF
				. "Auth-Port: " . port($backend{$h{'Auth-Protocol'}}) . CRLF;
			$r .= "Auth-Pass: backend-secret" . CRLF
				unless $pass eq 'good-pass';
		} else {
			my $text = ($h{'Auth-Method'} // '') =~ /oauth/
				? 'Invalid token' : 'Invalid login or password';
			$r .= "Auth-Status: $text" . CRLF . "Auth-Error-Code: 535 5.7.8" . CRLF;
			$r .= "Auth-Error-SASL: $esasl" . CRLF unless $pass eq 'nosasl';
			$r .= "Auth-Wait: 1" . CRLF if $user eq 'retry';
		}
		print $c $r . CRLF;
		close $c;
	}
}

sub note_line {
	my ($dir, $proto, $line) = @_;
	open my $fh, '>>', "$dir/$proto.log" or die;
	print $fh $line;
	close $fh;
}

sub pop3_backend {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8120), Listen => 64,
		ReuseAddr => 1) or die "pop3 listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		unlink "$dir/pop3.log";
		print $c "+OK backend ready" . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^(USER|PASS) /) {
				note_line($dir, 'pop3', $l);
				print $c ($1 eq 'USER' ? "+OK" : "+OK backend logged in") . CRLF;
			} elsif ($l =~ /^LIST/) {
				print $c "+OK 1 messages" . CRLF . "1 120" . CRLF . "." . CRLF;
			} elsif ($l =~ /^QUIT/) {
				print $c "+OK bye" . CRLF;
				last;
			} else {
				print $c "-ERR unknown" . CRLF;
			}
		}
		close $c;
	}
}

sub imap_backend {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8150), Listen => 64,
		ReuseAddr => 1) or die "imap listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "* OK backend ready" . CRLF;
		my $line = <$c> // next;
		note_line($dir, 'imap', $line);
		my ($tag, $n) = $line =~ /^(\S+) LOGIN \{(\d+)\}\r\n\z/ or next;
		print $c "+ ready" . CRLF;
		read($c, my $user, $n);
		my $rest = <$c>;
		my ($m) = $rest =~ /\{(\d+)\}/;
		print $c "+ ready" . CRLF;
		read($c, my $pass, $m);
		my $end = <$c>;
		note_line($dir, 'imap', $user . $rest . $pass . $end);
		print $c "$tag OK backend logged in" . CRLF;
		while (defined(my $l = <$c>)) {
			my ($t2, $cmd) = $l =~ /^(\S+) (\S+)/ or last;
			if ($cmd =~ /^LIST$/i) {
				print $c '* LIST (\HasNoChildren) "/" INBOX' . CRLF
					. "$t2 OK LIST completed" . CRLF;
			} elsif ($cmd =~ /^LOGOUT$/i) {
				print $c "* BYE" . CRLF . "$t2 OK bye" . CRLF;
				last;
			} else {
				print $c "$t2 BAD unknown" . CRLF;
			}
		}
		close $c;
	}
}

sub smtp_backend {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8040), Listen => 64,
		ReuseAddr => 1) or die "smtp listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "220 backend ESMTP" . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^EHLO/i) {
				print $c "250-backend" . CRLF . "250 8BITMIME" . CRLF;
				next;
			}
			note_line($dir, 'smtp', $l);
			if ($l =~ /^DATA/i) {
				print $c "354 go ahead" . CRLF;
				while (defined(my $m = <$c>)) {
					last if $m eq '.' . CRLF;
				}
				print $c "250 queued" . CRLF;
			} elsif ($l =~ /^QUIT/i) {
				print $c "221 backend bye" . CRLF;
				last;
			} else {
				print $c "250 ok" . CRLF;
			}
		}
		close $c;
	}
}

###############################################################################
