#!/usr/bin/perl

# Tests for max_commands, freenginx's limit on the commands a client may send
# before it logs in (our module has it; stock nginx 1.28 does not): every
# command the parser accepts counts, refused or not, SASL responses too; a
# line the parser rejects does not. The command past the limit is refused
# with the protocol's invalid-command reply, logged, and the session ends.

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
use Test::Nginx::IMAP;
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'max_commands is freenginx\'s, not stock nginx\'s')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    error_log    %%TESTDIR%%/error.log info;

    # never reached: no session here gets as far as a login
    auth_http    http://127.0.0.1:8080/mail/auth;

    max_commands 3;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
    }

    server {
        listen     127.0.0.1:8026;
        protocol   smtp;
        max_commands 2;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        max_commands 1000;
    }
}

EOF

$t->run()->plan(22);

###############################################################################

# nginx -t on a mail{} block; returns its output
sub config_test {
	my ($mail) = @_;
	my $d = $t->testdir();
	my $port = port(8112);
	$t->write_file('test.conf', <<"EOF");
error_log $d/test-error.log;
pid $d/test.pid;
$ENV{TEST_NGINX_GLOBALS}
events {
}
mail {
    auth_http 127.0.0.1:1/a;
    server { listen 127.0.0.1:$port; protocol pop3; $mail }
}
EOF
	return `$Test::Nginx::NGINX -p $d/ -e $d/test-error.log -c test.conf -t 2>&1`;
}

like(config_test('max_commands 10;'), qr/test is successful/,
	'max_commands accepted in server{}');
like(config_test('max_commands -1;'),
	qr/\[emerg\] .*"max_commands" directive invalid number in .*test\.conf:\d+/,
	'negative max_commands refused');

# POP3: NOOP, CAPA and a refused PASS count; the line the parser rejects
# does not

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('NOOP');
$s->ok('first command');
$s->send('CAPA');
$s->ok('second command');
while (defined(my $line = $s->read())) {
	last if $line eq ".\r\n";
}
$s->send('BOGUS');
$s->check(qr/^-ERR invalid command\r\n$/, 'parser error, not counted');
$s->send('PASS x');
$s->check(qr/^-ERR invalid command\r\n$/, 'refused third command');
$s->send('NOOP');
is($s->read(), "-ERR invalid command\r\n", 'fourth command refused');
ok($s->eof(), 'and the session ends');

# IMAP: the fourth command gets its tagged BAD

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('a1 NOOP');
$s->read();
$s->send('a2 LOGIN x');
$s->read();
$s->send('a3 BOGUS');
is($s->read(), "a3 BAD invalid command\r\n", 'imap parser error, not counted');
$s->send('a4 NOOP');
is($s->read(), "a4 OK completed\r\n", 'third imap command');
$s->send('a5 NOOP');
is($s->read(), "a5 BAD invalid command\r\n", 'fourth imap command refused');
ok($s->eof(), 'imap session ends');

# SMTP: VRFY counts though refused

$s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO example.com');
$s->read();
$s->send('VRFY postmaster');
$s->check(qr/^500 5\.5\.1 /, 'vrfy refused, counted');
$s->send('RSET');
$s->check(qr/^250 /, 'third smtp command');
$s->send('RSET');
$s->check(qr/^500 5\.5\.1 Invalid command\r\n$/, 'fourth smtp command refused');
ok($s->eof(), 'smtp session ends');

# SASL responses are commands too: with max_commands 2, the password of
# AUTH LOGIN is the third, and nothing is asked of the auth server

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8026));
$s->read();
$s->send('AUTH LOGIN');
$s->check(qr/^334 VXNlcm5hbWU6\r\n$/, 'auth login');
$s->send(encode_base64('user', ''));
$s->check(qr/^334 UGFzc3dvcmQ6\r\n$/, 'user name');
$s->send(encode_base64('secret', ''));
$s->check(qr/^500 5\.5\.1 Invalid command\r\n$/, 'password past max_commands');

# 1000 pipelined commands are answered, the 1001st is not

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8111));
$s->read();
$s->print(join '', ('NOOP' . CRLF) x 1001);
my $ok = 0;
$ok++ while $ok < 1000 && $s->read() eq "+OK\r\n";
is($ok, 1000, 'max_commands 1000: a thousand commands answered');
is($s->read(), "-ERR invalid command\r\n", 'and the 1001st refused');

$t->stop();

my $log = $t->read_file('error.log');
my $lines = () = $log =~ /\[info\] .*client sent too many commands/g;
is($lines, 5, 'each refusal logged at info');

###############################################################################
