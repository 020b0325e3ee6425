#!/usr/bin/perl

# Tests for the pop3 protocol before login: greeting, CAPA, USER/PASS, APOP,
# AUTH PLAIN/LOGIN/CRAM-MD5/EXTERNAL with initial responses and
# continuations, pipelining, and what nginx answers to bad input.

###############################################################################

use warnings;
use strict;

use Test::More;

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

# checks of stock-version behaviour only apply to stock modules
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

# pop3_client_buffer is ours (nginx PR 1590): stock 1.28 refuses it
my $ours = $stock ? '' : <<'EOF';
    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        pop3_client_buffer 1k;
    }
EOF

my $t = Test::Nginx->new()->has(qw/mail pop3 http rewrite/)
	->write_file_expand('nginx.conf', <<'EOF' =~ s/%%OURS%%\n/$ours/r);

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    proxy_pass_error_message  on;
    auth_http  http://127.0.0.1:8080/mail/auth;
    max_errors 5;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        pop3_auth  plain apop cram-md5 external;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        pop3_capabilities TOP "RESP-CODES" UIDL;
        timeout    1s;
    }

%%OURS%%
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /mail/auth {
            set $reply "Invalid login or password";
            set $passw "";

            set $userpass "$http_auth_method:$http_auth_user:$http_auth_pass";
            if ($userpass ~ '^plain:test@example.com:secret$') {
                set $reply OK;
            }
            set $userpass "$http_auth_method:$http_auth_user:$http_auth_salt:$http_auth_pass";
            if ($userpass ~ '^(apop|cram-md5):test@example.com:<\d+\.\d+@.*>:0{32}$') {
                set $reply OK;
                set $passw secret;
            }
            if ($userpass ~ '^external:test@example.com::$') {
                set $reply OK;
                set $passw secret;
            }

            add_header Auth-Status $reply;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port %%PORT_8111%%;
            add_header Auth-Pass $passw;
            add_header Auth-Wait 1;
            return 204;
        }
    }
}

EOF

$t->run_daemon(\&Test::Nginx::POP3::pop3_test_daemon);
$t->run()->plan(53);

$t->waitforsocket('127.0.0.1:' . port(8111));

###############################################################################

sub capa {
	my ($s) = @_;
	my $all = '';
	while (defined(my $l = $s->read())) {
		$all .= $l;
		last if $l eq ".\r\n";
	}
	return $all;
}

my $s = Test::Nginx::POP3->new();
like($s->read(), qr/^\+OK POP3 ready <\d+\.\d+\@[^>]*>\r\n$/,
	'greeting with salt');

$s->send('CAPA');
is(capa($s), "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\n"
	. "SASL PLAIN LOGIN CRAM-MD5 EXTERNAL\r\n.\r\n", 'capa');

$s->send('AUTH');
is(capa($s), "+OK methods supported:\r\nPLAIN\r\nLOGIN\r\nCRAM-MD5\r\n"
	. "EXTERNAL\r\n.\r\n", 'auth lists methods');

$s->send('NOOP');
$s->ok('noop');

$s->send('USER test@example.com');
$s->ok('user');

$s->send('PASS secret');
$s->ok('pass');

$s->send('QUIT');
$s->check(qr/^\+OK quit ok/, 'quit goes to the backend after login');

# USER then an invalid command forgets the user

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER test@example.com');
$s->ok('user before invalid');
$s->send('RETR 1');
$s->check(qr/^-ERR invalid command\r\n$/, 'retr before login');
$s->send('PASS secret');
$s->check(qr/^-ERR invalid command\r\n$/, 'pass after invalid command');

# AUTH PLAIN, initial response and continuation

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0test\@example.com\0secret", ''));
$s->ok('auth plain initial response');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN');
$s->check(qr/^\+ \r\n$/, 'auth plain challenge');
$s->send(encode_base64("\0test\@example.com\0secret", ''));
$s->ok('auth plain continuation');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0test\@example.com\0bad", ''));
$s->check(qr/^-ERR Invalid login or password\r\n$/, 'refused with the auth text');

# AUTH LOGIN

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH LOGIN');
$s->check(qr/^\+ VXNlcm5hbWU6\r\n$/, 'auth login username challenge');
$s->send(encode_base64('test@example.com', ''));
$s->check(qr/^\+ UGFzc3dvcmQ6\r\n$/, 'auth login password challenge');
$s->send(encode_base64('secret', ''));
$s->ok('auth login');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH LOGIN ' . encode_base64('test@example.com', ''));
$s->check(qr/^\+ UGFzc3dvcmQ6\r\n$/, 'auth login username as initial response');
$s->send(encode_base64('secret', ''));
$s->ok('auth login with initial response');

# APOP and CRAM-MD5: the digest goes to the auth server with the salt

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('APOP test@example.com ' . ('0' x 32));
$s->ok('apop');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH CRAM-MD5');
$s->check(qr/^\+ [A-Za-z0-9+\/=]+\r\n$/, 'cram-md5 challenge');
$s->send(encode_base64('test@example.com ' . ('0' x 32), ''));
$s->ok('cram-md5');

# AUTH EXTERNAL

SKIP: {
# stock nginx before 1.28.1 sent Auth-Salt with EXTERNAL too
skip 'stock nginx before 1.28.1', 2 if $stock && !$t->has_version('1.28.1');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH EXTERNAL');
$s->check(qr/^\+ VXNlcm5hbWU6\r\n$/, 'auth external challenge');
$s->send(encode_base64('test@example.com', ''));
$s->ok('auth external');

}

# pipelining: every command is answered, in order

$s = Test::Nginx::POP3->new();
$s->read();
$s->print('NOOP' . CRLF . 'CAPA' . CRLF . 'NOOP' . CRLF
	. 'USER test@example.com' . CRLF . 'PASS secret' . CRLF);
$s->ok('pipelined noop');
like(capa($s), qr/^\+OK Capability.*EXTERNAL\r\n\.\r\n$/s, 'pipelined capa');
$s->ok('pipelined noop 2');
$s->ok('pipelined user');
$s->check(qr/^\+OK pass ok/, 'pipelined pass');

# a command split into single bytes

$s = Test::Nginx::POP3->new();
$s->read();
for my $c (split //, 'NOOP' . CRLF) {
	$s->print($c);
	select undef, undef, undef, 0.02;
}
$s->ok('command sent a byte at a time');

# bad input

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH PLAIN !!!!');
$s->check(qr/^-ERR invalid command\r\n$/, 'invalid base64');
$s->send('AUTH PLAIN ' . encode_base64('no nul here', ''));
$s->check(qr/^-ERR invalid command\r\n$/, 'plain without login');
$s->send('AUTH CRAM-MD5 xxx');
$s->check(qr/^-ERR invalid command\r\n$/, 'cram-md5 with an argument');
$s->send('AUTH GSSAPI');
$s->check(qr/^-ERR invalid command\r\n$/, 'unknown mechanism');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('AUTH LOGIN');
$s->read();
$s->send('*');
$s->check(qr/^-ERR invalid command\r\n$/, 'sasl cancelled with a star');
$s->send('NOOP');
$s->ok('back to the start after a cancel');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('NOOP ' . ('x' x 200));
$s->check(qr/^-ERR invalid command\r\n$/, 'too long command');
ok($s->eof(), 'too long command closes');

# pop3_client_buffer: the limit of a command

SKIP: {
skip 'no pop3_client_buffer in stock nginx 1.28', 3 if $stock;

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8113));
$s->read();
$s->send('USER ' . ('u' x 1000));
$s->check(qr/^\+OK\r\n$/, 'pop3_client_buffer: a 1000-byte command');
$s->send('PASS ' . ('p' x 1100));
$s->check(qr/^-ERR invalid command\r\n$/, 'pop3_client_buffer: too long command');
ok($s->eof(), 'pop3_client_buffer: too long command closes');

}

$s = Test::Nginx::POP3->new();
$s->read();
$s->send("\0\x01\xff");
$s->check(qr/^-ERR invalid command\r\n$/, 'binary garbage');

# max_errors: the 5th error is answered, then the session ends

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('BOGUS') for 1 .. 5;
$s->read() for 1 .. 4;
$s->check(qr/^-ERR invalid command\r\n$/, 'fifth invalid command answered');
ok($s->eof(), 'max_errors closes');

# only what the parser rejects counts toward max_errors, as in stock's
# ngx_mail_read_command: refusals of well-formed commands do not

$s = Test::Nginx::POP3->new();
$s->read();
$s->send($_) for 'USER', 'PASS x', 'APOP a', 'AUTH GSSAPI', 'AUTH PLAIN !!!',
	'STLS';
$s->read() for 1 .. 5;
$s->check(qr/^-ERR invalid command\r\n$/, 'sixth refused command answered');
$s->send('') for 1 .. 4;
$s->read() for 1 .. 4;
$s->send('NOOP');
$s->check(qr/^\+OK/, 'refusals and four empty lines leave the session open');
$s->send('BOGUS');
$s->check(qr/^-ERR invalid command\r\n$/, 'fifth parser error answered');
ok($s->eof(), 'fifth parser error closes');

# pop3_capabilities and timeout on the second server

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8112));
is($s->read(), "+OK POP3 ready\r\n", 'greeting without salt');
$s->send('CAPA');
is(capa($s), "+OK Capability list follows\r\nTOP\r\nRESP-CODES\r\nUIDL\r\n"
	. "SASL PLAIN LOGIN\r\n.\r\n", 'pop3_capabilities');
$s->send('AUTH CRAM-MD5');
$s->check(qr/^-ERR invalid command\r\n$/, 'cram-md5 not enabled');
$s->send('APOP test@example.com ' . ('0' x 32));
$s->check(qr/^-ERR invalid command\r\n$/, 'apop not enabled');
ok($s->eof(), 'idle client timed out');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################
