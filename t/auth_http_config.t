#!/usr/bin/perl

# Tests for the configuration of auth_http_keepalive (ours; stock 1.28 has
# none): accepted at both levels, bad forms refused with [emerg] texts in
# nginx's voice.

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

my $t = Test::Nginx->new()->has(qw/mail pop3/)->plan(6);

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
    auth_http 127.0.0.1:1/a;
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

###############################################################################
