#!/usr/bin/perl

# Tests for metrics_zone and mail_metrics: exact counts in the Prometheus
# exposition after a scripted mix of sessions (logins ok and refused per
# protocol, a client leaving before login, idle sessions open at scrape
# time), with two workers, across a reload; and `promtool check metrics`.

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

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'metrics_zone is ours') if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp http rewrite/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

mail {
    auth_http  http://127.0.0.1:8080/mail/auth;
    metrics_zone mailstats 128k;

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
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /mail/auth {
            set $reply "Invalid login or password";
            if ($http_auth_pass = "Pa55-w0rd") {
                set $reply OK;
            }
            set $port %%PORT_8111%%;
            if ($http_auth_protocol = imap) {
                set $port %%PORT_8144%%;
            }
            add_header Auth-Status $reply;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $port;
            add_header Auth-Pass secret;
            return 204;
        }

        location = /metrics {
            mail_metrics mailstats;
        }
    }
}

EOF

$t->run_daemon(\&Test::Nginx::POP3::pop3_test_daemon);
$t->run_daemon(\&Test::Nginx::IMAP::imap_test_daemon);
$t->run()->plan(32);

$t->waitforsocket('127.0.0.1:' . port(8111));
$t->waitforsocket('127.0.0.1:' . port(8144));

###############################################################################

sub scrape {
	my $r = http_get('/metrics') // '';
	return $r =~ /\r\n\r\n(.*)\z/s ? $1 : '';
}

# the value of one sample: `name{labels}` exactly as exposed
sub value {
	my ($text, $sample) = @_;
	return $text =~ /^\Q$sample\E (\S+)$/m ? $1 : 'absent';
}

# waits until `$sample` reads `$want` (sessions end asynchronously)
sub settle {
	my ($sample, $want) = @_;
	my $v;
	for (1 .. 50) {
		$v = value(scrape(), $sample);
		last if $v eq $want;
		select undef, undef, undef, 0.1;
	}
	return $v;
}

sub pop3_login {
	my ($pass, $quit) = @_;
	my $s = Test::Nginx::POP3->new();
	$s->read();
	$s->send('USER test@example.com');
	$s->read();
	$s->send("PASS $pass");
	my $r = $s->read();
	if ($quit && $r =~ /^\+OK/) {
		$s->send('QUIT');
		$s->read();
	}
	return $s;
}

sub imap_login {
	my ($pass, $logout) = @_;
	my $s = Test::Nginx::IMAP->new();
	$s->read();
	$s->send("1 LOGIN test\@example.com $pass");
	my $r = $s->read();
	if ($logout && $r =~ /^1 OK/) {
		$s->send('2 LOGOUT');
		$s->read();
	}
	return $s;
}

# the mix: POP3 2 ok, 1 refused, 1 gone before login; IMAP 1 ok, 2
# refused; SMTP 1 refused; held open: POP3 1 before login, IMAP 1 proxied

# one at a time: the fake backends serve one connection at a time
pop3_login($_, $_ eq 'wrong' ? 0 : 1) for 'Pa55-w0rd', 'Pa55-w0rd', 'wrong';
my $s = Test::Nginx::POP3->new();
$s->read();
undef $s;
imap_login($_, $_ eq 'wrong' ? 0 : 1) for 'Pa55-w0rd', 'wrong', 'wrong';

$s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO example.com');
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0test\@example.com\0wrong", ''));
$s->read();
$s->send('QUIT');
$s->read();
undef $s;

my $idle_pop3 = Test::Nginx::POP3->new();
$idle_pop3->read();
my $idle_imap = imap_login('Pa55-w0rd', 0);

is(settle('nginx_mail_sessions_total{protocol="smtp",reason="auth_refused"}', 1), 1,
	'all ended sessions counted');
my $m = scrape();

my %want = (
	'nginx_mail_connections_total{protocol="pop3"}' => 5,
	'nginx_mail_connections_total{protocol="imap"}' => 4,
	'nginx_mail_connections_total{protocol="smtp"}' => 1,
	'nginx_mail_connections_active{protocol="pop3"}' => 1,
	'nginx_mail_connections_active{protocol="imap"}' => 1,
	'nginx_mail_connections_active{protocol="smtp"}' => 0,
	'nginx_mail_auth_total{protocol="pop3",mechanism="plain",result="ok"}' => 2,
	'nginx_mail_auth_total{protocol="pop3",mechanism="plain",result="refused"}' => 1,
	'nginx_mail_auth_total{protocol="pop3",mechanism="plain",result="error"}' => 0,
	'nginx_mail_auth_total{protocol="imap",mechanism="plain",result="ok"}' => 2,
	'nginx_mail_auth_total{protocol="imap",mechanism="plain",result="refused"}' => 2,
	'nginx_mail_auth_total{protocol="smtp",mechanism="plain",result="refused"}' => 1,
	'nginx_mail_auth_total{protocol="smtp",mechanism="plain",result="timeout"}' => 0,
	'nginx_mail_sessions_total{protocol="pop3",reason="client_closed"}' => 3,
	'nginx_mail_sessions_total{protocol="pop3",reason="auth_refused"}' => 1,
	'nginx_mail_sessions_total{protocol="imap",reason="client_closed"}' => 1,
	'nginx_mail_sessions_total{protocol="imap",reason="auth_refused"}' => 2,
	'nginx_mail_sessions_total{protocol="smtp",reason="quit"}' => 0,
	# QUIT\r\n twice; +OK pass ok\r\n and +OK quit ok\r\n twice
	'nginx_mail_bytes_total{protocol="pop3",direction="client_to_backend"}' => 12,
	'nginx_mail_bytes_total{protocol="pop3",direction="backend_to_client"}' => 52,
	'nginx_mail_bytes_total{protocol="imap",direction="client_to_backend"}' => 10,
	'nginx_mail_auth_http_duration_seconds_count{protocol="pop3"}' => 3,
	'nginx_mail_auth_http_duration_seconds_bucket{protocol="imap",le="+Inf"}' => 4,
	'nginx_mail_backend_connect_duration_seconds_count{protocol="pop3"}' => 2,
	'nginx_mail_backend_connect_duration_seconds_count{protocol="imap"}' => 2,
);
is(value($m, $_), $want{$_}, $_) for sort keys %want;

like($m, qr/^nginx_mail_build_info\{version="[^"]+",nginx="1\.\d+\.\d+"\} 1$/m,
	'build info');
unlike($m, qr/test\@example|Pa55|wrong/, 'no user name or password');

SKIP: {
	my $promtool = `which promtool 2>/dev/null`;
	chomp $promtool;
	skip 'promtool not installed', 1 unless $promtool;
	$t->write_file('scrape.txt', $m);
	my $out = `$promtool check metrics < ${\ $t->testdir()}/scrape.txt 2>&1`;
	is($? >> 8, 0, 'promtool check metrics') or diag($out);
}

# a reload keeps the zone and its counts; the idle sessions are still open

$t->reload();
select undef, undef, undef, 1;
pop3_login('Pa55-w0rd', 1);
is(settle('nginx_mail_connections_total{protocol="pop3"}', 6), 6,
	'counts kept across a reload');
undef $idle_pop3;
undef $idle_imap;
is(settle('nginx_mail_connections_active{protocol="imap"}', 0), 0,
	'idle imap session ended after the reload');
is(settle('nginx_mail_connections_active{protocol="pop3"}', 0), 0,
	'idle pop3 session ended after the reload');

###############################################################################
