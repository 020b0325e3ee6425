#!/usr/bin/perl

# Tests for the configuration of the proxy_ssl and proxy_starttls directives (ours: stock has
# no TLS to backends): every one accepted at both levels, bad values refused
# with the [emerg] texts of nginx's stream proxy and ngx_event_openssl.

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
plan(skip_all => 'proxy_ssl is ours; stock talks to backends in plain text only')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3/)->has_daemon('openssl')
	->plan(19);

###############################################################################

my $d = $t->testdir();

$t->write_file('openssl.conf', <<EOF);
[ req ]
default_bits = 2048
encrypt_key = no
distinguished_name = req_distinguished_name
[ req_distinguished_name ]
EOF

system('openssl req -x509 -new '
	. "-config $d/openssl.conf -subj /CN=proxy/ "
	. "-out $d/proxy.crt -keyout $d/proxy.key "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create a certificate: $!\n";
$t->write_file('password', "secret\n");

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

like(config_test(<<"EOF"), qr/test is successful/, 'every directive at both levels');
    proxy_ssl on;
    proxy_starttls on;
    proxy_ssl_protocols TLSv1.2 TLSv1.3;
    proxy_ssl_ciphers HIGH:!aNULL;
    proxy_ssl_certificate proxy.crt;
    proxy_ssl_certificate_key proxy.key;
    proxy_ssl_password_file password;
    proxy_ssl_conf_command Options PrioritizeChaCha;
    proxy_ssl_name backend.example;
    proxy_ssl_server_name on;
    proxy_ssl_session_reuse off;
    proxy_ssl_trusted_certificate proxy.crt;
    proxy_ssl_verify on;
    proxy_ssl_verify_depth 2;
    server {
        $listen
        proxy_ssl off;
        proxy_starttls off;
        proxy_ssl_protocols TLSv1.3;
        proxy_ssl_ciphers DEFAULT;
        proxy_ssl_certificate "";
        proxy_ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        proxy_ssl_name "";
        proxy_ssl_server_name off;
        proxy_ssl_session_reuse on;
        proxy_ssl_trusted_certificate proxy.crt;
        proxy_ssl_crl proxy.crl.none;
        proxy_ssl_verify off;
        proxy_ssl_verify_depth 1;
    }
EOF

like(config_test(<<"EOF"),
    proxy_ssl on;
    proxy_ssl_verify on;
    server { $listen }
EOF
	qr/\[emerg\] no proxy_ssl_trusted_certificate for proxy_ssl_verify/,
	'verify without a ca');

# the auth server may still ask for TLS; each such backend is refused then
like(config_test(<<"EOF"), qr/test is successful/, 'verify without a ca, proxy_ssl off');
    proxy_ssl_verify on;
    server { $listen }
EOF

like(config_test(<<"EOF"),
    server { $listen proxy_ssl on; proxy_ssl_certificate proxy.crt; }
EOF
	qr/\[emerg\] no "proxy_ssl_certificate_key" is defined for certificate "proxy\.crt"/,
	'certificate without key');

like(config_test("server { $listen proxy_ssl maybe; }"),
	qr/\[emerg\] invalid value "maybe" in "proxy_ssl" directive, it must be "on" or "off"/,
	'proxy_ssl value');

like(config_test("server { $listen proxy_starttls maybe; }"),
	qr/\[emerg\] invalid value "maybe" in "proxy_starttls" directive, it must be "on" or "off"/,
	'proxy_starttls value');

like(config_test(<<"EOF"),
    proxy_starttls on;
    proxy_ssl_verify on;
    server { $listen }
EOF
	qr/\[emerg\] no proxy_ssl_trusted_certificate for proxy_ssl_verify/,
	'starttls verify without a ca');

like(config_test("server { $listen proxy_ssl_protocols TLSv1.2 TLSv9; }"),
	qr/\[emerg\] invalid value "TLSv9" in .*test\.conf:\d+/, 'protocols value');

like(config_test("server { $listen proxy_ssl_ciphers NOSUCHCIPHER; }"),
	qr/\[emerg\] SSL_CTX_set_cipher_list\("NOSUCHCIPHER"\) failed/, 'ciphers value');

like(config_test("server { $listen proxy_ssl_verify_depth deep; }"),
	qr/\[emerg\] "proxy_ssl_verify_depth" directive invalid number in .*test\.conf:\d+/, 'verify depth value');

like(config_test("server { $listen proxy_ssl_name a; proxy_ssl_name b; }"),
	qr/\[emerg\] "proxy_ssl_name" directive is duplicate/, 'name duplicate');

like(config_test(<<"EOF"),
    server { $listen proxy_ssl_password_file password; proxy_ssl_password_file password; }
EOF
	qr/\[emerg\] "proxy_ssl_password_file" directive is duplicate/,
	'password file duplicate');

like(config_test("server { $listen proxy_ssl_password_file nosuchfile; }"),
	qr/\[emerg\] open\(\) ".*nosuchfile" failed/, 'password file missing');

like(config_test(<<"EOF"),
    server { $listen proxy_ssl_verify on; proxy_ssl_trusted_certificate nosuch.crt; }
EOF
	# nginx's own words: 1.22 names the OpenSSL call that failed
	qr/\[emerg\] (cannot load certificate |SSL_CTX_load_verify_locations\()".*nosuch\.crt"/,
	'trusted certificate missing');

like(config_test(<<"EOF"),
    server { $listen proxy_ssl_verify on; proxy_ssl_trusted_certificate proxy.crt;
        proxy_ssl_crl nosuch.crl; }
EOF
	qr/\[emerg\] (cannot load CRL |X509_LOOKUP_load_file\()".*nosuch\.crl"/, 'crl missing');

like(config_test(<<"EOF"),
    server { $listen proxy_ssl_certificate nosuch.crt; proxy_ssl_certificate_key proxy.key; }
EOF
	# nginx's own words: 1.22 names the OpenSSL call that failed
	qr/\[emerg\] (cannot load certificate |SSL_CTX_load_verify_locations\()".*nosuch\.crt"/, 'certificate missing');

like(config_test("server { $listen proxy_ssl_conf_command NoSuchCommand x; }"),
	qr/\[emerg\] SSL_CONF_cmd\("NoSuchCommand", "x"\) failed/, 'conf command');

like(config_test("server { $listen proxy_ssl_conf_command Options; }"),
	qr/\[emerg\] invalid number of arguments in "proxy_ssl_conf_command" directive/,
	'conf command arguments');

like(config_test("proxy_ssl on; server { $listen }"), qr/test is successful/,
	'proxy_ssl at the mail level');

###############################################################################
