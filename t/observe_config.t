#!/usr/bin/perl

# Tests for the configuration of access_log, metrics_zone (mail{}) and
# mail_metrics (http location): what is accepted, and the [emerg] texts
# for what is not.

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
plan(skip_all => 'access_log and metrics_zone in mail{} are ours') if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3 http/)->plan(11);

my $d = $t->testdir();
my $port = port(8110);
my $server = "server { listen 127.0.0.1:$port; protocol pop3; }";

# nginx -t on a mail{} block and an http{} block
sub check {
	my ($mail, $http) = @_;
	$http //= '';
	$t->write_file('test.conf', <<"EOF");
error_log $d/test-error.log;
pid $d/test.pid;
$ENV{TEST_NGINX_GLOBALS}
events {
}
mail {
    auth_http 127.0.0.1:1/auth;
$mail
}
http {
    access_log off;
$http
}
EOF
	my $out = `$Test::Nginx::NGINX -p $d/ -e $d/test-error.log -c test.conf -t 2>&1`;
	$out =~ s/\[emerg\] \d+#\d+: /[emerg] /g;
	return $out;
}

my $metrics = "server { listen 127.0.0.1:" . port(8080)
	. "; location = /metrics { mail_metrics m; } }";

like(check("access_log $d/a.log; metrics_zone m 64k; $server"
		. " server { listen 127.0.0.1:" . port(8111) . "; protocol pop3;"
		. " access_log $d/b.log json buffer=4k flush=1s; }"
		. " server { listen 127.0.0.1:" . port(8112) . "; protocol pop3;"
		. " access_log off; }", $metrics),
	qr/test is successful/, 'valid configuration');

like(check("access_log $d/a.log xml; $server"),
	qr/\[emerg\] invalid parameter "xml" in .*test\.conf:\d+/, 'bad format');
like(check("access_log $d/a.log mail flush=1s; $server"),
	qr/\[emerg\] no buffer is defined for access_log "flush"/,
	'flush without buffer');
like(check("access_log $d/a.log buffer=big; $server"),
	qr/\[emerg\] invalid buffer size "big"/, 'bad buffer size');
like(check("access_log off mail; $server"),
	qr/\[emerg\] invalid parameter after "off"/, 'off with parameters');
like(check("access_log $d/a.log; access_log $d/b.log; $server"),
	qr/\[emerg\] "access_log" directive is duplicate/, 'duplicate');
like(check("metrics_zone m 1k; $server"),
	qr/\[emerg\] metrics zone is too small/, 'zone too small');
like(check("metrics_zone m; metrics_zone n; $server"),
	qr/\[emerg\] "metrics_zone" directive is duplicate/,
	'one zone per mail block');
like(check("server { listen 127.0.0.1:$port; protocol pop3; metrics_zone m; }"),
	qr/\[emerg\] "metrics_zone" directive is not allowed here/,
	'metrics_zone in server{}');
like(check($server, $metrics),
	qr/\[emerg\] zero size shared memory zone "m"/,
	'mail_metrics without the zone');
like(check("metrics_zone m; $server",
		"server { listen 127.0.0.1:" . port(8080) . "; mail_metrics m; }"),
	qr/\[emerg\] "mail_metrics" directive is not allowed here/,
	'mail_metrics outside a location');

###############################################################################
