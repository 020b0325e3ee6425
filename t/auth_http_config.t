#!/usr/bin/perl

# Tests for the configuration of auth_http_keepalive, auth_http_server and
# auth_http_cache (ours; stock 1.28 has none): accepted at both levels,
# auth_http_server without auth_http, bad forms refused with [emerg] texts
# in nginx's voice.

###############################################################################

use warnings;
use strict;

use Test::More;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'these directives are ours; stock 1.28 has none')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3/)->plan(24);

###############################################################################

my $d = $t->testdir();

# nginx -t on a mail{} block; returns its output
sub config_test {
	my ($mail, $auth) = @_;
	$auth //= 'auth_http 127.0.0.1:1/a;';
	$t->write_file('test.conf', <<"EOF");
error_log $d/test-error.log;
pid $d/test.pid;
$ENV{TEST_NGINX_GLOBALS}
events {
}
mail {
    $auth
$mail
}
EOF
	my $out = `$Test::Nginx::NGINX -p $d/ -e $d/test-error.log -c test.conf -t 2>&1`;
	$out =~ s/\[emerg\] \d+#\d+: /[emerg] /g;
	return $out;
}

my $listen = 'listen 127.0.0.1:' . port(8110) . '; protocol pop3;';

like(config_test(<<"EOF"), qr/test is successful/, 'keepalive at both levels');
    auth_http_keepalive 8;
    server {
        $listen
        auth_http_keepalive 2 timeout=30s;
    }
EOF

like(config_test("server { $listen auth_http_keepalive 0; }"),
	qr/\[emerg\] invalid value "0" in "auth_http_keepalive" directive in .*test\.conf:\d+/,
	'keepalive 0');

like(config_test("server { $listen auth_http_keepalive many; }"),
	qr/\[emerg\] invalid value "many" in "auth_http_keepalive" directive in .*test\.conf:\d+/,
	'keepalive not a number');

like(config_test("server { $listen auth_http_keepalive 2 idle=5s; }"),
	qr/\[emerg\] invalid parameter "idle=5s" in .*test\.conf:\d+/,
	'unknown parameter');

like(config_test("server { $listen auth_http_keepalive 2 timeout=soon; }"),
	qr/\[emerg\] invalid timeout "soon" in .*test\.conf:\d+/,
	'bad timeout');

like(config_test("server { $listen auth_http_keepalive 2; auth_http_keepalive 3; }"),
	qr/\[emerg\] "auth_http_keepalive" directive is duplicate in .*test\.conf:\d+/,
	'twice');

# auth_http_server

like(config_test(<<"EOF", ''), qr/test is successful/, 'servers at both levels');
    auth_http_server 127.0.0.1:1/a;
    auth_http_server http://127.0.0.1:2/b max_fails=3 fail_timeout=30s;
    auth_http_server unix:/tmp/x.sock:/c max_fails=0;
    server {
        $listen
    }
    server {
        listen 127.0.0.1:${\ port(8111)}; protocol pop3;
        auth_http_server 127.0.0.1:3/d;
    }
EOF

like(config_test("server { $listen auth_http_server 127.0.0.1:1/a; }", ''),
	qr/test is successful/, 'auth_http_server alone in a server');

like(config_test("server { $listen auth_http_server 127.0.0.1:1/a; }"),
	qr/test is successful/, 'a list replaces the inherited auth_http');

like(config_test("server { $listen auth_http 127.0.0.1:1/a; auth_http_server 127.0.0.1:1/b; }", ''),
	qr/\[emerg\] "auth_http_server" directive conflicts with "auth_http" in .*test\.conf:\d+/,
	'auth_http then auth_http_server');

like(config_test("server { $listen auth_http_server 127.0.0.1:1/b; auth_http 127.0.0.1:1/a; }", ''),
	qr/\[emerg\] "auth_http" directive conflicts with "auth_http_server" in .*test\.conf:\d+/,
	'auth_http_server then auth_http');

like(config_test("server { $listen auth_http_server 127.0.0.1:1/a max_fails=x; }", ''),
	qr/\[emerg\] invalid parameter "max_fails=x" in .*test\.conf:\d+/,
	'bad max_fails');

like(config_test("server { $listen auth_http_server 127.0.0.1:1/a fail_timeout=later; }", ''),
	qr/\[emerg\] invalid parameter "fail_timeout=later" in .*test\.conf:\d+/,
	'bad fail_timeout');

like(config_test("server { $listen auth_http_server 127.0.0.1:1/a weight=2; }", ''),
	qr/\[emerg\] invalid parameter "weight=2" in .*test\.conf:\d+/,
	'unknown parameter');

like(config_test("server { $listen auth_http_server 127.0.0.1:99999/a; }", ''),
	qr/\[emerg\] invalid port in auth_http "127\.0\.0\.1:99999\/a" in .*test\.conf:\d+/,
	'bad url');

# auth_http_cache

like(config_test(<<"EOF"), qr/test is successful/, 'cache at both levels, off');
    auth_http_cache zone=one:1m valid=5m invalid=10s;
    server {
        $listen
        auth_http_cache zone=two:64k valid=1s;
    }
    server {
        listen 127.0.0.1:${\ port(8111)}; protocol pop3;
        auth_http_cache off;
    }
EOF

like(config_test("server { $listen auth_http_cache valid=1s; }"),
	qr/\[emerg\] "auth_http_cache" must have "zone" parameter in .*test\.conf:\d+/,
	'no zone');

like(config_test("server { $listen auth_http_cache zone=one; }"),
	qr/\[emerg\] invalid zone size "zone=one" in .*test\.conf:\d+/,
	'no size');

like(config_test("server { $listen auth_http_cache zone=one:lots; }"),
	qr/\[emerg\] invalid zone size "zone=one:lots" in .*test\.conf:\d+/,
	'bad size');

like(config_test("server { $listen auth_http_cache zone=one:1k; }"),
	qr/\[emerg\] zone "one" is too small in .*test\.conf:\d+/,
	'too small');

like(config_test("server { $listen auth_http_cache zone=one:1m valid=later; }"),
	qr/\[emerg\] invalid time value "later" in .*test\.conf:\d+/,
	'bad valid');

like(config_test("server { $listen auth_http_cache zone=one:1m stale=1s; }"),
	qr/\[emerg\] invalid parameter "stale=1s" in .*test\.conf:\d+/,
	'unknown parameter');

like(config_test("server { $listen auth_http_cache zone=one:1m; auth_http_cache off; }"),
	qr/\[emerg\] "auth_http_cache" directive is duplicate in .*test\.conf:\d+/,
	'twice');

like(config_test("auth_http_cache zone=one:1m; server { $listen auth_http_cache zone=one:2m; }"),
	qr/\[emerg\] the size 2097152 of shared memory zone "one" conflicts with already declared size 1048576/,
	'one zone, two sizes');

###############################################################################
