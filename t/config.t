#!/usr/bin/perl

# Tests for configuration: every POP3, IMAP, auth_http and proxy directive
# is accepted where stock nginx accepts it, and bad values are refused with
# stock nginx's [emerg] texts. Against our module, also: the notice line at
# start, servers whose protocol is guessed from `listen 110` and
# `listen 143` are ours, and our own values (xoauth2, oauthbearer) and
# directives (pop3_client_buffer) pass with stock's modules loaded.

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
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp http rewrite/);

# ports 110, 143 and 25 let nginx guess the protocol; root may bind them
my @probes = map { $> == 0 && IO::Socket::INET->new(LocalAddr => "127.0.0.1:$_",
	Listen => 1, ReuseAddr => 1) } 110, 143, 25;
my $can_guess = (grep { $_ } @probes) == 3 ? 1 : 0;
close $_ for grep { $_ } @probes;
my $listen_110 = $can_guess ? 'listen 127.0.0.1:110;' : '';
my $listen_143 = $can_guess ? 'listen 127.0.0.1:143;' : 'listen 127.0.0.1:8146; protocol imap;';
my $listen_25 = $can_guess ? 'listen 127.0.0.1:25;' : 'listen 127.0.0.1:8027; protocol smtp;';

$t->write_file_expand('nginx.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8080/mail/auth;
    auth_http_header X-A 1;
    auth_http_header X-B "2 3";
    auth_http_timeout 5s;
    auth_http_pass_client_cert off;
    pop3_auth  plain apop;
    pop3_capabilities TOP USER;
    proxy on;
    proxy_buffer 8k;
    proxy_timeout 1h;
    proxy_pass_error_message on;
    proxy_protocol off;
    proxy_smtp_auth off;
    xclient on;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        pop3_auth  plain apop cram-md5 external;
        pop3_capabilities TOP USER UIDL "EXPIRE NEVER";
        auth_http  127.0.0.1:8080/mail/auth;
    }

    server {
        $listen_110
        listen     127.0.0.1:8112;
        pop3_auth  plain;
    }

    imap_auth  plain login;
    imap_capabilities IMAP4rev1;
    imap_client_buffer 2k;

    server {
        $listen_143
        imap_auth  plain;
    }

    smtp_auth  login cram-md5;
    smtp_capabilities PIPELINING;
    smtp_client_buffer 2k;
    smtp_greeting_delay 0;

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        server_name mx.config.test;
        smtp_capabilities "SIZE 100" 8BITMIME;
    }

    server {
        $listen_25
    }
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /mail/auth {
            add_header Auth-Status OK;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port %%PORT_8111%%;
            add_header Auth-Pass secret;
            return 204;
        }
    }
}

EOF

# `listen 8112` alone guesses no protocol: give it one unless port 110 is ours
unless ($can_guess) {
	my $conf = $t->read_file('nginx.conf');
	$conf =~ s/(listen     127\.0\.0\.1:\d+;\n        pop3_auth  plain;)/$1\n        protocol pop3;/;
	$t->write_file('nginx.conf', $conf);
}

$t->run_daemon(\&Test::Nginx::POP3::pop3_test_daemon);
$t->run()->plan(32);

$t->waitforsocket('127.0.0.1:' . port(8111));

###############################################################################

my $d = $t->testdir();

# nginx -t on a mail{} block; returns its output
sub config_test {
	my ($mail) = @_;
	$t->write_file('test.conf', <<"EOF");
error_log $d/test-error.log;
pid $d/test.pid;
$ENV{TEST_NGINX_GLOBALS}
events {
}
mail {
$mail
}
EOF
	my $out = `$Test::Nginx::NGINX -p $d/ -e $d/test-error.log -c test.conf -t 2>&1`;
	$out =~ s/\[emerg\] \d+#\d+: /[emerg] /g;
	return $out;
}

my $server = 'server { listen 127.0.0.1:' . port(8113) . '; protocol pop3; }';

like(config_test("auth_http 127.0.0.1:1/a; pop3_auth plain; $server"),
	qr/test is successful/, 'valid configuration');

like(config_test("auth_http 127.0.0.1:1/a; pop3_auth plain bogus; $server"),
	qr/\[emerg\] invalid value "bogus" in .*test\.conf:\d+/,
	'bad pop3_auth value');

like(config_test($server),
	qr/\[emerg\] no "auth_http" is defined for server in .*test\.conf:\d+/,
	'no auth_http');

like(config_test("auth_http 127.0.0.1:1/a; proxy_buffer abc; $server"),
	qr/\[emerg\] "proxy_buffer" directive invalid value in .*test\.conf:\d+/,
	'bad proxy_buffer');

like(config_test("auth_http 127.0.0.1:1/a; proxy_timeout 1s; proxy_timeout 2s; $server"),
	qr/\[emerg\] "proxy_timeout" directive is duplicate in .*test\.conf:\d+/,
	'duplicate proxy_timeout');

like(config_test("auth_http 127.0.0.1:1/a; auth_http_pass_client_cert maybe; $server"),
	qr/\[emerg\] invalid value "maybe" in "auth_http_pass_client_cert" directive, it must be "on" or "off" in .*test\.conf:\d+/,
	'bad flag');

like(config_test("auth_http 127.0.0.1:99999/a; $server"),
	qr/\[emerg\] invalid port in auth_http "127\.0\.0\.1:99999\/a" in .*test\.conf:\d+/,
	'bad auth_http url');

like(config_test("auth_http 127.0.0.1:1/a; pop3_capabilities; $server"),
	qr/\[emerg\] invalid number of arguments in "pop3_capabilities" directive in .*test\.conf:\d+/,
	'pop3_capabilities without arguments');

like(config_test("auth_http 127.0.0.1:1/a; auth_http_header X; $server"),
	qr/\[emerg\] invalid number of arguments in "auth_http_header" directive/,
	'auth_http_header with one argument');

like(config_test("auth_http 127.0.0.1:1/a; imap_auth plain bogus; $server"),
	qr/\[emerg\] invalid value "bogus" in .*test\.conf:\d+/,
	'bad imap_auth value');

like(config_test("auth_http 127.0.0.1:1/a; imap_client_buffer 1x; $server"),
	qr/\[emerg\] "imap_client_buffer" directive invalid value in .*test\.conf:\d+/,
	'bad imap_client_buffer');

like(config_test("auth_http 127.0.0.1:1/a; imap_capabilities; $server"),
	qr/\[emerg\] invalid number of arguments in "imap_capabilities" directive/,
	'imap_capabilities without arguments');

like(config_test("auth_http 127.0.0.1:1/a; smtp_auth plain bogus; $server"),
	qr/\[emerg\] invalid value "bogus" in .*test\.conf:\d+/,
	'bad smtp_auth value');

like(config_test("auth_http 127.0.0.1:1/a; smtp_greeting_delay forever; $server"),
	qr/\[emerg\] "smtp_greeting_delay" directive invalid value in .*test\.conf:\d+/,
	'bad smtp_greeting_delay');

like(config_test("auth_http 127.0.0.1:1/a; smtp_client_buffer 1x; $server"),
	qr/\[emerg\] "smtp_client_buffer" directive invalid value in .*test\.conf:\d+/,
	'bad smtp_client_buffer');

like(config_test("auth_http 127.0.0.1:1/a; smtp_capabilities; $server"),
	qr/\[emerg\] invalid number of arguments in "smtp_capabilities" directive/,
	'smtp_capabilities without arguments');

# values and directives of ours: stock 1.28 refuses them, so they are never
# forwarded to its modules (which still get the values they know)

my $bearer = 'pop3_auth plain XOAUTH2 oauthbearer; imap_auth oauthbearer; '
	. 'smtp_auth xoauth2 none login;';
if ($stock) {
	like(config_test("auth_http 127.0.0.1:1/a; $bearer $server"),
		qr/\[emerg\] invalid value "XOAUTH2" in .*test\.conf:\d+/,
		'stock refuses xoauth2');
	like(config_test("auth_http 127.0.0.1:1/a; pop3_client_buffer 8k; $server"),
		qr/\[emerg\] unknown directive "pop3_client_buffer" in .*test\.conf:\d+/,
		'stock has no pop3_client_buffer');
} else {
	like(config_test("auth_http 127.0.0.1:1/a; $bearer $server"),
		qr/test is successful/, 'xoauth2 and oauthbearer, never forwarded');
	like(config_test("auth_http 127.0.0.1:1/a; pop3_client_buffer 8k; "
		. 'server { listen 127.0.0.1:' . port(8113) . '; protocol pop3; '
		. 'pop3_client_buffer 256; }'),
		qr/test is successful/, 'pop3_client_buffer at both levels');
}

SKIP: {
skip 'our directives only', 3 if $stock;

like(config_test("auth_http 127.0.0.1:1/a; pop3_auth xoauth2 bogus; $server"),
	qr/\[emerg\] invalid value "bogus" in .*test\.conf:\d+/,
	'bad value after xoauth2');
like(config_test("auth_http 127.0.0.1:1/a; pop3_client_buffer 1x; $server"),
	qr/\[emerg\] "pop3_client_buffer" directive invalid value in .*test\.conf:\d+/,
	'bad pop3_client_buffer');
like(config_test("auth_http 127.0.0.1:1/a; pop3_client_buffer 1k 2k; $server"),
	qr/\[emerg\] invalid number of arguments in "pop3_client_buffer" directive/,
	'pop3_client_buffer takes one size');

}

like(config_test('auth_http 127.0.0.1:1/a; server { listen 127.0.0.1:'
	. port(8114) . '; }'),
	qr/\[emerg\] unknown mail protocol for server in .*test\.conf:\d+/,
	'no protocol');

# the running configuration

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('CAPA');
my $capa = '';
while (defined(my $l = $s->read())) { $capa .= $l; last if $l eq ".\r\n"; }
like($capa, qr/^EXPIRE NEVER\r\nSASL PLAIN LOGIN CRAM-MD5 EXTERNAL\r\n/m,
	'server-level pop3_* directives');
$s->send('USER test@example.com');
$s->ok('user');
$s->send('PASS x');
$s->check(qr/^\+OK pass ok/, 'login with directives from every level');

$s = Test::Nginx::SMTP->new();
$s->check(qr/^220 mx\.config\.test ESMTP ready\r\n$/, 'smtp greeting with server_name');
$s->send('EHLO client.example');
my $ehlo = '';
while (defined(my $l = $s->getline())) { $ehlo .= $l; last unless $l =~ /^250-/; }
is($ehlo, "250-mx.config.test\r\n250-SIZE 100\r\n250-8BITMIME\r\n"
	. "250 AUTH LOGIN CRAM-MD5\r\n", 'smtp_* directives from every level');

SKIP: {
skip 'our module only', 5 if $stock;

like($t->read_file('error.log'),
	qr/\[notice\] .*ngx-mail-rs \d+\.\d+\.\d+: serving pop3, imap, smtp/,
	'notice names the module, its version and protocols');

skip 'ports 110, 143 and 25 need root and free ports', 4 unless $can_guess;

# `listen 110` with no protocol picks the last pop3 module, the stock one,
# unless we take the server over: our hardening refuses what stock would
# send to the auth server, so the reply tells whose code runs.
$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:110');
$s->read();
$s->send('AUTH EXTERNAL ' . encode_base64('test@example.com', ''));
$s->check(qr/^-ERR invalid command/, 'guessed pop3 is served by our module');

# likewise for imap: stock takes an empty tag, we refuse it
$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:143');
$s->read();
$s->send(' NOOP');
$s->check(qr/^\* BAD invalid command/, 'guessed imap is served by our module');

# and smtp: stock loses a command pipelined behind a refused MAIL
$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:25');
$s->read();
$s->print('MAIL FROM:<a@example.com>' . CRLF . 'NOOP' . CRLF);
$s->check(qr/^530 /, 'mail refused on guessed smtp');
$s->check(qr/^250 /, 'guessed smtp is served by our module');
}

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################
