#!/usr/bin/perl

# Tests for retries after refusals with Auth-Wait when APOP and CRAM-MD5 are
# in play (CVE-2026-27651: a password or digest of a refused attempt must not
# leak into the next one, and nothing may crash a worker), and for a slow
# auth server that answers within auth_http_timeout.

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
    auth_http_timeout 3s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        pop3_auth  plain apop cram-md5;
    }
}

EOF

my $d = $t->testdir();
port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&Test::Nginx::POP3::pop3_test_daemon);
$t->run()->plan(20);

$t->waitforsocket('127.0.0.1:' . port(8081));
$t->waitforsocket('127.0.0.1:' . port(8111));

###############################################################################

sub requests {
	return split /(?=^GET )/m, $t->read_file('auth.log');
}

my $digest = 'a' x 32;

my $s = Test::Nginx::POP3->new();
my ($salt) = $s->read() =~ /(<[^>]+>)/;

$s->send("APOP bad $digest");
$s->check(qr/^-ERR denied\r\n$/, 'apop refused, may retry');

$s->send('AUTH CRAM-MD5');
$s->check(qr/^\+ /, 'cram-md5 challenge after a refused apop');
$s->send(encode_base64('bad', ''));
$s->check(qr/^-ERR invalid command\r\n$/, 'cram-md5 without a digest');

$s->send('AUTH CRAM-MD5');
$s->check(qr/^\+ /, 'cram-md5 challenge again');
$s->send(encode_base64('bad ' . ('b' x 32), ''));
$s->check(qr/^-ERR denied\r\n$/, 'cram-md5 refused, may retry');

$s->send('USER good');
$s->ok('user after refusals');
$s->send('PASS fresh');
$s->check(qr/^\+OK pass ok/, 'plain login after refusals');

my @r = requests();
is(scalar @r, 3, 'three auth requests');
like($r[0], qr/^Auth-Method: apop\r\nAuth-User: bad\r\nAuth-Pass: a{32}\r\nAuth-Salt: \Q$salt\E\r$/m,
	'first: apop with its digest');
like($r[1], qr/^Auth-Method: cram-md5\r\nAuth-User: bad\r\nAuth-Pass: b{32}\r\nAuth-Salt: \Q$salt\E\r$/m,
	'second: cram-md5 with its own digest');
like($r[1], qr/^Auth-Login-Attempt: 2\r$/m, 'second attempt counted');
like($r[2], qr/^Auth-Method: plain\r\nAuth-User: good\r\nAuth-Pass: fresh\r\nAuth-Protocol: pop3\r$/m,
	'third: plain, with the new password only');
unlike($r[2], qr/Auth-Salt|a{32}|b{32}/, 'no salt or digest of earlier attempts');
like($r[2], qr/^Auth-Login-Attempt: 3\r$/m, 'third attempt counted');

# a PLAIN refusal: its password must not reach a later CRAM-MD5 attempt

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0bad\0old-password", ''));
$s->check(qr/^-ERR denied\r\n$/, 'plain refused');
$s->send('AUTH CRAM-MD5');
$s->read();
$s->send(encode_base64('bad', ''));
$s->check(qr/^-ERR invalid command\r\n$/, 'no digest: refused, old password not used');
$s->send("APOP good $digest");
$s->check(qr/^\+OK pass ok/, 'apop after a plain refusal');
unlike((requests())[-1], qr/old-password/, 'old password forgotten');

# a slow auth server, within auth_http_timeout

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER slow');
$s->read();
$s->send('PASS x');
$s->check(qr/^\+OK pass ok/, 'slow auth server');
like((requests())[-1], qr/^Auth-User: slow\r$/m, 'slow request recorded');

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
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		sleep 1 if ($user // '') eq 'slow';
		if (($user // '') eq 'bad') {
			print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: denied" . CRLF
				. "Auth-Wait: 1" . CRLF . CRLF;
		} else {
			print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
				. "Auth-Server: 127.0.0.1" . CRLF
				. "Auth-Port: " . port(8111) . CRLF
				. "Auth-User: test\@example.com" . CRLF
				. "Auth-Pass: secret" . CRLF . CRLF;
		}
		close $c;
	}
}

###############################################################################
