#!/usr/bin/perl

# Tests for the sieve protocol (ManageSieve, RFC 5804) before login: the
# capability block as the greeting and CAPABILITY reply, NOOP with and
# without a tag, LOGOUT, AUTHENTICATE PLAIN/LOGIN/CRAM-MD5/EXTERNAL with
# quoted strings and {n+}/{n} literals, challenges and "*", the auth
# request, refusals, bad input and max_errors, pipelining, a byte at a
# time, too long commands, max_commands, timeouts; the directives and
# their errors, and a server on port 4190 without `protocol`. Served by
# our module only.

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

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'sieve is served by ngx-mail-rs only')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'no Test::Nginx::Sieve in this lib')
	unless eval { require Test::Nginx::Sieve; 1 };

my $t = Test::Nginx->new()->has(qw/mail/);

# port 4190 lets nginx guess the protocol; root may bind it
my $probe = $> == 0 && IO::Socket::INET->new(LocalAddr => '127.0.0.1:4190',
	Listen => 1, ReuseAddr => 1);
my $can_guess = $probe ? 1 : 0;
close $probe if $probe;
my $guessed = $can_guess ? 'server { listen 127.0.0.1:4190; }' : '';

$t->write_file_expand('nginx.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:%%PORT_8081%%/auth;
    max_errors 3;

    server {
        listen     127.0.0.1:%%PORT_8192%%;
        protocol   sieve;
        sieve_auth plain login cram-md5 external;
    }

    server {
        listen     127.0.0.1:%%PORT_8193%%;
        protocol   sieve;
        sieve_capabilities '"IMPLEMENTATION" "Example \\\\"1\\\\""'
                           '"SIEVE" "fileinto vacation"' '"NOTIFY" "mailto"'
                           '"VERSION" "1.0"';
        timeout    1s;
    }

    server {
        listen     127.0.0.1:%%PORT_8195%%;
        protocol   sieve;
        max_commands 3;
    }

    $guessed
}

EOF

my $d = $t->testdir();

# daemons are forked: settle their ports first so that all agree
port($_) for 8192, 8193, 8194, 8195, 8081;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&Test::Nginx::Sieve::sieve_test_daemon, 8194, $d);
$t->run()->plan(71);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8194, 8081;

###############################################################################

my $caps = '"IMPLEMENTATION" "nginx"' . CRLF
	. '"SIEVE" "fileinto reject envelope"' . CRLF
	. '"VERSION" "1.0"' . CRLF
	. '"SASL" "PLAIN LOGIN CRAM-MD5 EXTERNAL"' . CRLF;

sub client {
	my ($port) = @_;
	return Test::Nginx::Sieve->new(PeerAddr => '127.0.0.1:' . port($port // 8192));
}

sub last_request {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return $r[-1] // '';
}

sub plain {
	my ($user, $pass) = @_;
	return encode_base64("\0$user\0$pass", '');
}

# the greeting and the simple commands, byte for byte

my $s = client();
is($s->response(), $caps . 'OK "ManageSieve ready"' . CRLF, 'greeting');
$s->send('CAPABILITY');
is($s->response(), $caps . 'OK "completed"' . CRLF, 'capability');
$s->send('NOOP');
is($s->read(), 'OK "completed"' . CRLF, 'noop');
$s->send('noop "STARTTLS-RESYNC-CAPA"');
is($s->read(), 'OK (TAG "STARTTLS-RESYNC-CAPA") "completed"' . CRLF,
	'noop with a tag, any case');
$s->send('NOOP "a\\"b\\\\c"');
is($s->read(), 'OK (TAG "a\\"b\\\\c") "completed"' . CRLF, 'tag with escapes');
$s->print('NOOP {4+}' . CRLF . "x\r\ny" . CRLF);
is(join('', map { $s->read() // '' } 1 .. 3),
	'OK (TAG {4}' . CRLF . "x\r\ny) \"completed\"" . CRLF,
	'a tag no quoted string can carry comes back as a literal');
$s->send('NOOP {3}');
$s->send('xyz');
is($s->read(), 'OK (TAG "xyz") "completed"' . CRLF,
	'a {n} literal is read at once, as Dovecot reads it');
$s->send('LOGOUT');
is($s->read(), 'OK "completed"' . CRLF, 'logout');
ok($s->eof(), 'closed after logout');

# sieve_capabilities: each argument is a line as sent; SASL follows them

$s = client(8193);
is($s->response(), '"IMPLEMENTATION" "Example \\"1\\""' . CRLF
	. '"SIEVE" "fileinto vacation"' . CRLF . '"NOTIFY" "mailto"' . CRLF
	. '"VERSION" "1.0"' . CRLF . '"SASL" "PLAIN"' . CRLF
	. 'OK "ManageSieve ready"' . CRLF, 'sieve_capabilities, sieve_auth default');

# AUTHENTICATE PLAIN: initial response quoted, as a literal, or after the
# empty challenge; the backend's OK is the reply

$s = client();
$s->response();
$s->send('AUTHENTICATE "PLAIN" "' . plain('joe', 'secret') . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'plain, quoted initial response');
my $r = last_request();
like($r, qr/^Auth-Method: plain\r\nAuth-User: joe\r\nAuth-Pass: secret\r\n/m,
	'auth request: method, user, password');
like($r, qr/^Auth-Protocol: sieve\r\nAuth-Login-Attempt: 1\r\n/m,
	'auth request: protocol sieve');

$s = client();
$s->response();
my $resp = plain('joe', 'secret');
$s->print('Authenticate "plain" {' . length($resp) . '+}' . CRLF . $resp . CRLF);
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF,
	'plain, initial response as a literal (sieve-connect)');

$s = client();
$s->response();
$s->send('AUTHENTICATE "PLAIN"');
is($s->read(), '""' . CRLF, 'plain, empty challenge');
$s->print('{' . length($resp) . '+}' . CRLF . $resp . CRLF);
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'plain, response as a literal');

$s = client();
$s->response();
$s->send('AUTHENTICATE {5}');
$s->send('PLAIN');
is($s->read(), '""' . CRLF, 'mechanism as a literal');
$s->send('"' . $resp . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'plain, quoted response');

# LOGIN, CRAM-MD5, EXTERNAL

$s = client();
$s->response();
$s->send('AUTHENTICATE "LOGIN"');
is($s->read(), '"VXNlcm5hbWU6"' . CRLF, 'login, username challenge');
$s->send('"' . encode_base64('joe', '') . '"');
is($s->read(), '"UGFzc3dvcmQ6"' . CRLF, 'login, password challenge');
$s->send('"' . encode_base64('se cret', '') . '"');
is($s->read(), 'OK "Logged in as joe:se cret."' . CRLF, 'login');
like(last_request(), qr/^Auth-Method: plain\r\nAuth-User: joe\r\nAuth-Pass: se%20cret\r\n/m,
	'login: auth request');

$s = client();
$s->response();
$s->send('AUTHENTICATE "CRAM-MD5"');
my ($challenge) = ($s->read() // '') =~ /^"([A-Za-z0-9+\/=]+)"\r\n\z/;
my $salt = decode_base64($challenge // '');
like($salt, qr/^<\d+\.\d+\@[^>]+>\z/, 'cram-md5 challenge: the salt');
$s->send('"' . encode_base64('joe ' . ('0' x 32), '') . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'cram-md5');
like(last_request(),
	qr/^Auth-Method: cram-md5\r\nAuth-User: joe\r\nAuth-Pass: 0{32}\r\nAuth-Salt: \Q$salt\E\r\n/m,
	'cram-md5: auth request');

$s = client();
$s->response();
$s->send('AUTHENTICATE "EXTERNAL" "' . encode_base64('joe', '') . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'external');
like(last_request(), qr/^Auth-Method: external\r\nAuth-User: joe\r\n/m,
	'external: auth request');

$s = client(8193);
$s->response();
$s->send('AUTHENTICATE "EXTERNAL" "' . encode_base64('joe', '') . '"');
is($s->read(), 'NO "invalid command"' . CRLF, 'external not enabled');

# "*" cancels; a bare * is no string

$s = client();
$s->response();
$s->send('AUTHENTICATE "PLAIN"');
$s->read();
$s->send('"*"');
is($s->read(), 'NO "authentication cancelled"' . CRLF, 'cancelled');
$s->send('AUTHENTICATE "LOGIN"');
$s->read();
$s->send('*');
is($s->read(), 'NO "invalid command"' . CRLF, 'bare * refused');
$s->send('NOOP');
is($s->read(), 'OK "completed"' . CRLF, 'commands again after the exchange');

# the auth server refuses: its text quoted; with Auth-Wait the client may
# try again, without it the session ends

$s = client();
$s->response();
$s->send('AUTHENTICATE "PLAIN" "' . plain('wait', 'x') . '"');
is($s->read(), 'NO "Sorry, \\"busy\\" \\\\ later"' . CRLF, 'refusal text quoted');
$s->send('AUTHENTICATE "PLAIN" "' . plain('joe', 'secret') . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'second attempt');
like(last_request(), qr/^Auth-Login-Attempt: 2\r$/m, 'second attempt counted');

$s = client();
$s->response();
$s->send('AUTHENTICATE "PLAIN" "' . plain('joe', 'wrong') . '"');
is($s->read(), 'NO "Invalid login or password"' . CRLF, 'refused');
ok($s->eof(), 'closed after a refusal without Auth-Wait');

# bad input: NO, the parser's errors counted toward max_errors (3)

$s = client();
$s->response();
$s->send('LISTSCRIPTS');
is($s->read(), 'NO "invalid command"' . CRLF, 'command not served before login');
$s->print('PUTSCRIPT "x" {7+}' . CRLF . "NOOP\r\n." . CRLF);
is($s->read(), 'NO "invalid command"' . CRLF, 'its literal is not run as commands');
$s->send('CAPABILITY "x"');
is($s->read(), 'NO "invalid command"' . CRLF, 'wrong arguments, not counted');
$s->send('AUTHENTICATE "PLAIN" "!!"');
is($s->read(), 'NO "invalid command"' . CRLF, 'bad base64, not counted');
$s->send('AUTHENTICATE "GSSAPI"');
is($s->read(), 'NO "invalid command"' . CRLF, 'unknown mechanism, not counted');
$s->send('STARTTLS');
is($s->read(), 'NO "invalid command"' . CRLF, 'starttls off');
$s->send('NOOP');
is($s->read(), 'OK "completed"' . CRLF, 'open after two errors counted');

$s = client();
$s->response();
$s->send('NOOP "' . ('a' x 1025) . '"');
is($s->read(), 'NO "invalid command"' . CRLF, 'quoted string over 1024 octets');
$s->send('AUTHENTICATE PLAIN');
is($s->read(), 'NO "invalid command"' . CRLF, 'an atom for a string');
$s->send('NOOP "a\\qb"');
is($s->read(), 'NO "invalid command"' . CRLF, 'escape of a letter');
ok($s->eof(), 'closed after max_errors');

$s = client();
$s->response();
$s->send("NOOP \"caf\xe9\"");
is($s->read(), 'NO "invalid command"' . CRLF, 'quoted string not UTF-8');
$s->send("NOOP \"caf\xc3\xa9\"");
is($s->read(), "OK (TAG \"caf\xc3\xa9\") \"completed\"" . CRLF, 'quoted string in UTF-8');

# a literal announced but refused: its data must not run as commands

$s = client();
$s->response();
$s->send('NOOP {99999999999999999999999+}');
is($s->read(), 'NO "invalid command"' . CRLF, 'literal length overflow');
ok($s->eof(), 'closed: the literal\'s data would follow');

# too long: a literal larger than the buffer

$s = client();
$s->response();
$s->print('NOOP {8000+}' . CRLF . ('x' x 8000) . CRLF);
is($s->read(), 'BYE "invalid command"' . CRLF, 'too long command');
ok($s->eof(), 'closed after a too long command');

# pipelining, and a byte at a time

$s = client();
$s->response();
$s->print('NOOP "1"' . CRLF . 'FOO' . CRLF . 'NOOP {1+}' . CRLF . '2' . CRLF
	. 'AUTHENTICATE "PLAIN" {' . length($resp) . '+}' . CRLF . $resp . CRLF);
is(join('', map { $s->read() // '' } 1 .. 4),
	'OK (TAG "1") "completed"' . CRLF . 'NO "invalid command"' . CRLF
	. 'OK (TAG "2") "completed"' . CRLF . 'OK "Logged in as joe:secret."' . CRLF,
	'pipelined commands answered in order');

$s = client();
$s->response();
for my $byte (split //, 'AUTHENTICATE "PLAIN" {' . length($resp) . '}' . CRLF . $resp . CRLF) {
	$s->print($byte);
	select undef, undef, undef, 0.002;
}
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'a byte at a time');

# max_commands (freenginx's): the one too many is refused and ends it

$s = client(8195);
$s->response();
$s->send('NOOP') for 1 .. 3;
is(join('', map { $s->read() // '' } 1 .. 3), ('OK "completed"' . CRLF) x 3,
	'three commands');
$s->send('NOOP');
is($s->read(), 'BYE "invalid command"' . CRLF, 'max_commands');
ok($s->eof(), 'closed after max_commands');

# timeout

$s = client(8193);
$s->response();
ok($s->eof(), 'closed after timeout');

# a server on port 4190 without `protocol` is ours

SKIP: {
skip 'port 4190 needs root and a free port', 2 unless $can_guess;

$s = Test::Nginx::Sieve->new(PeerAddr => '127.0.0.1:4190');
like($s->response(), qr/^"IMPLEMENTATION" "nginx".*OK "ManageSieve ready"\r\n\z/s,
	'port 4190: sieve');
$s->send('NOOP "guessed"');
is($s->read(), 'OK (TAG "guessed") "completed"' . CRLF, 'port 4190: our module');

}

undef $s;
$t->stop();

my $log = $t->read_file('error.log');
like($log, qr/client sent invalid base64 encoding in AUTH PLAIN command/,
	'bad base64 logged');
like($log, qr/client sent too many invalid commands/, 'max_errors logged');
like($log, qr/client sent too long command "NOOP \{8000\+\}/, 'too long logged');
like($log, qr/client login failed: "Invalid login or password"/, 'refusal logged');
like($log, qr/client timed out/, 'timeout logged');
like($log, qr/client sent too many commands/, 'max_commands logged');

# the directives: bad values refused at configuration time

sub config_test {
	my ($mail) = @_;
	$t->write_file('test.conf', <<"EOF");
error_log $d/test-error.log;
pid $d/test.pid;
$ENV{TEST_NGINX_GLOBALS}
events {
}
mail {
auth_http 127.0.0.1:1/a;
$mail
}
EOF
	my $out = `$Test::Nginx::NGINX -p $d/ -e $d/test-error.log -c test.conf -t 2>&1`;
	$out =~ s/\[emerg\] \d+#\d+: /[emerg] /g;
	return $out;
}

like(config_test(q{server { listen 127.0.0.1:1; protocol sieve; sieve_auth plain bogus; }}),
	qr/\[emerg\] invalid value "bogus" in .*test\.conf:\d+/, 'sieve_auth bogus');
like(config_test(q{server { listen 127.0.0.1:1; protocol sieve;
	sieve_capabilities '"SIEVE" "fileinto"' 'VERSION 1.0'; }}),
	qr/\[emerg\] invalid value "VERSION 1\.0" in "sieve_capabilities" directive, it must be a quoted name and an optional quoted value in .*test\.conf:\d+/,
	'sieve_capabilities not quoted');
like(config_test(q{sieve_capabilities; server { listen 127.0.0.1:1; protocol sieve; }}),
	qr/\[emerg\] invalid number of arguments in "sieve_capabilities" directive/,
	'sieve_capabilities without arguments');
like(config_test(q{sieve_auth plain login cram-md5 external;
	sieve_capabilities '"SIEVE" ""';
	server { listen 127.0.0.1:1; protocol sieve; sieve_auth login; }}),
	qr/test is successful/, 'both directives at both levels');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check.
undef $s;
undef $t;

###############################################################################

# The auth server: "joe" with "secret" (or the all-zero CRAM-MD5 digest,
# or EXTERNAL) logs in to the fake backend; "wait" is refused with a text
# to quote and Auth-Wait; anyone else is refused for good.
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
		# the harness's probe connects and sends nothing
		next if $req eq '';
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		my ($method) = $req =~ /^Auth-Method: (.*)\r$/m;
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		my ($pass) = $req =~ /^Auth-Pass: (.*)\r$/m;
		$user //= '';
		$pass //= '';
		my $ok = $user eq 'joe' && ($pass =~ /^(secret|se%20cret|0{32})$/
			|| ($method // '') eq 'external');
		my $head = "HTTP/1.0 200 OK" . CRLF;
		if ($ok) {
			$head .= "Auth-Status: OK" . CRLF . "Auth-Server: 127.0.0.1" . CRLF
				. "Auth-Port: " . port(8194) . CRLF;
			$head .= "Auth-Pass: secret" . CRLF if $pass !~ /^(secret|se%20cret)$/;
		} elsif ($user eq 'wait') {
			$head .= 'Auth-Status: Sorry, "busy" \\ later' . CRLF
				. "Auth-Wait: 1" . CRLF;
		} else {
			$head .= "Auth-Status: Invalid login or password" . CRLF;
		}
		print $c $head . CRLF;
		close $c;
	}
}

###############################################################################
