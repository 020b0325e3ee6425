#!/usr/bin/perl

# Tests for the TLS side of the session log and metrics: the client's TLS
# version and cipher in the access_log, and nginx_mail_tls_handshakes_total
# and nginx_mail_tls_handshake_failures_total counting `listen ssl` and
# STARTTLS handshakes that complete and that fail (which happen in nginx's
# C mail core, before any session of ours).

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'metrics_zone is ours') if $stock;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 http socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    metrics_zone tls;
    access_log %%TESTDIR%%/mail.log;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        starttls   on;
    }

    server {
        listen     127.0.0.1:8113 ssl;
        protocol   pop3;
    }
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /metrics {
            mail_metrics tls;
        }
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
	or die "Can't create certificate: $!\n";

$t->run()->plan(9);

###############################################################################

sub value {
	my ($sample, $want) = @_;
	my $v;
	for (1 .. 50) {
		my $r = http_get('/metrics') // '';
		$v = $r =~ /^\Q$sample\E (\S+)\r?$/m ? $1 : 'absent';
		last if $v eq $want;
		select undef, undef, undef, 0.1;
	}
	return $v;
}

# listen ssl: a handshake that completes

my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8113), SSL => 1);
$s->ok('tls greeting');
$s->send('QUIT');
$s->read();
undef $s;

# listen ssl: a client that does not speak TLS

$s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . port(8113))
	or die "connect: $!";
print $s "USER plain-text\r\n";
sysread($s, my $buf, 1024);
close $s;

# STARTTLS: completed, then failed

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('STLS');
$s->read();
$s->upgrade();
$s->send('QUIT');
$s->read();
undef $s;

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('STLS');
$s->read();
$s->print("not a client hello\r\n");
$s->read();
undef $s;

is(value('nginx_mail_tls_handshake_failures_total{protocol="pop3"}', 2), 2,
	'failed handshakes: listen ssl and STARTTLS');
is(value('nginx_mail_tls_handshakes_total{protocol="pop3"}', 2), 2,
	'completed handshakes: listen ssl and STARTTLS');
is(value('nginx_mail_connections_total{protocol="pop3"}', 3), 3,
	'a failed listen ssl handshake is no session');
is(value('nginx_mail_sessions_total{protocol="pop3",reason="quit"}', 2), 2,
	'sessions that quit');

my @l = split /\n/, $t->read_file('mail.log');
is(scalar @l, 3, 'three sessions logged');
like($l[0], qr/ server_port=\Q${\ port(8113)}\E /, 'first: the tls session');
like($l[0], qr/ tls=TLSv1\.[23] cipher=[A-Z0-9_-]+ /, 'tls version and cipher');
like($l[2] // '', qr/ tls=- /, 'failed starttls: no tls');

###############################################################################
