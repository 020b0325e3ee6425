#!/usr/bin/perl

# Tests for the configuration of limit_conn_zone, limit_conn,
# limit_conn_log_level, limit_conn_dry_run, limit_rate and limit_rate_after
# (freenginx 1.29, ours only): accepted where freenginx accepts them, and
# bad values refused with freenginx's and nginx core's [emerg] texts.

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
plan(skip_all => 'these directives are freenginx 1.29 (ours); stock 1.28 has none')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3 http/)->plan(24);

###############################################################################

my $d = $t->testdir();

# nginx -t on a mail{} block (and an optional http{} one); returns its output
sub config_test {
	my ($mail, $http) = @_;
	$http = $http ? "http { $http }" : '';
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
$http
EOF
	my $out = `$Test::Nginx::NGINX -p $d/ -e $d/test-error.log -c test.conf -t 2>&1`;
	$out =~ s/\[emerg\] \d+#\d+: /[emerg] /g;
	return $out;
}

my $listen = 'listen 127.0.0.1:' . port(8110) . '; protocol pop3;';
my $zone = 'limit_conn_zone $remote_user zone=one:1m;';

like(config_test(<<"EOF"), qr/test is successful/, 'every directive at both levels');
    limit_conn_zone \$remote_user zone=one:1m;
    limit_conn_zone \$remote_addr zone=two:64k;
    limit_conn_zone \$auth_http_x_key zone=three:1m;
    limit_conn one 10;
    limit_conn_log_level info;
    limit_conn_dry_run off;
    limit_rate 10m;
    limit_rate_after 100m;
    server {
        $listen
        limit_conn two 65535;
        limit_conn three 1;
        limit_conn_log_level notice;
        limit_conn_dry_run on;
        limit_rate 0;
        limit_rate_after 0;
    }
EOF

like(config_test("server { $listen limit_conn one 1; } $zone"),
	qr/test is successful/, 'a zone declared after its limit_conn');

like(config_test("$zone server { $listen limit_conn nope 1; }"),
	qr/\[emerg\] zero size shared memory zone "nope"/, 'unknown zone');

like(config_test("limit_conn_zone \$binary_remote_addr zone=one:1m; server { $listen }"),
	qr/\[emerg\] invalid parameter "\$binary_remote_addr" in .*test\.conf:\d+/,
	'unsupported key');

like(config_test("limit_conn_zone \$remote_user zone=one:bogus; server { $listen }"),
	qr/\[emerg\] invalid zone size "zone=one:bogus" in .*test\.conf:\d+/,
	'bad size');

like(config_test("limit_conn_zone \$remote_user zone=one; server { $listen }"),
	qr/\[emerg\] invalid zone size "zone=one" in .*test\.conf:\d+/,
	'no size');

like(config_test("limit_conn_zone \$remote_user zone=one:1k; server { $listen }"),
	qr/\[emerg\] zone "zone=one:1k" is too small in .*test\.conf:\d+/,
	'too small');

like(config_test("limit_conn_zone \$remote_user zone=:1m; server { $listen }"),
	qr/\[emerg\] "limit_conn_zone" must have "zone" parameter in .*test\.conf:\d+/,
	'no zone name');

like(config_test("limit_conn_zone \$remote_user size=1m; server { $listen }"),
	qr/\[emerg\] invalid parameter "size=1m" in .*test\.conf:\d+/,
	'no zone parameter');

like(config_test("limit_conn_zone \$remote_user; server { $listen }"),
	qr/\[emerg\] invalid number of arguments in "limit_conn_zone" directive/,
	'zone missing');

like(config_test("$zone limit_conn_zone \$remote_addr zone=one:1m; server { $listen }"),
	qr/\[emerg\] limit_conn_zone "one" is already bound to key "\$remote_user" in .*test\.conf:\d+/,
	'zone bound twice');

like(config_test("$zone limit_conn_zone \$remote_addr zone=one:2m; server { $listen }"),
	qr/\[emerg\] the size 2097152 of shared memory zone "one" conflicts with already declared size 1048576/,
	'zone size conflict');

like(config_test("$zone server { $listen }",
	'limit_conn_zone $binary_remote_addr zone=one:1m;'),
	qr/\[emerg\] the shared memory zone "one" is already declared for a different use/,
	'zone of another module');

like(config_test("server { $listen $zone }"),
	qr/\[emerg\] "limit_conn_zone" directive is not allowed here in .*test\.conf:\d+/,
	'limit_conn_zone in server');

like(config_test("$zone server { $listen limit_conn one 1; limit_conn one 2; }"),
	qr/\[emerg\] "limit_conn" directive is duplicate in .*test\.conf:\d+/,
	'limit_conn twice for a zone');

like(config_test("$zone server { $listen limit_conn one 0; }"),
	qr/\[emerg\] invalid number of connections "0" in .*test\.conf:\d+/,
	'zero connections');

like(config_test("$zone server { $listen limit_conn one many; }"),
	qr/\[emerg\] invalid number of connections "many" in .*test\.conf:\d+/,
	'not a number');

like(config_test("$zone server { $listen limit_conn one 65536; }"),
	qr/\[emerg\] connection limit must be less 65536 in .*test\.conf:\d+/,
	'too many connections');

like(config_test("$zone server { $listen limit_conn one; }"),
	qr/\[emerg\] invalid number of arguments in "limit_conn" directive/,
	'limit_conn without a number');

like(config_test("server { $listen limit_conn_log_level debug; }"),
	qr/\[emerg\] invalid value "debug" in .*test\.conf:\d+/,
	'bad log level');

like(config_test("server { $listen limit_conn_dry_run maybe; }"),
	qr/\[emerg\] invalid value "maybe" in "limit_conn_dry_run" directive, it must be "on" or "off" in .*test\.conf:\d+/,
	'bad dry run');

like(config_test("server { $listen limit_rate fast; }"),
	qr/\[emerg\] "limit_rate" directive invalid value in .*test\.conf:\d+/,
	'bad limit_rate');

like(config_test("server { $listen limit_rate_after soon; }"),
	qr/\[emerg\] "limit_rate_after" directive invalid value in .*test\.conf:\d+/,
	'bad limit_rate_after');

like(config_test("limit_rate 1k; limit_rate 2k; server { $listen }"),
	qr/\[emerg\] "limit_rate" directive is duplicate in .*test\.conf:\d+/,
	'limit_rate twice');

###############################################################################
