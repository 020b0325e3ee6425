#!/usr/bin/perl

# Tests for proxy_ssl_verify (ours: stock talks to backends in plain text
# only): a backend whose certificate is signed by another CA, names another
# host, has expired, is revoked (proxy_ssl_crl) or needs a longer chain than
# proxy_ssl_verify_depth allows is refused with OpenSSL's reason at
# [error], the client gets the internal error and the backend no
# credential; the name checked is proxy_ssl_name, else the auth server's
# host; without proxy_ssl_verify the same backends are taken.

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
plan(skip_all => 'proxy_ssl is ours; stock talks to backends in plain text only')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;

    proxy_ssl                      on;
    proxy_ssl_verify               on;
    proxy_ssl_trusted_certificate  root.crt;
    proxy_ssl_name                 localhost;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        proxy_ssl_crl  root.crl;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        proxy_ssl_verify_depth  0;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        proxy_ssl_name  "";
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        proxy_ssl_verify  off;
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

$t->write_file('ca.conf', <<EOF);
[ ca ]
default_ca = myca

[ myca ]
new_certs_dir = $d
database = $d/certindex
default_md = sha256
policy = myca_policy
serial = $d/certserial
default_days = 3
default_crl_days = 30
unique_subject = no

[ myca_policy ]
commonName = supplied

[ v3_ca ]
basicConstraints = critical,CA:TRUE
EOF

$t->write_file('certindex', '');
$t->write_file('certserial', "1000\n");

sub run {
	my ($cmd) = @_;
	system("$cmd >>$d/openssl.out 2>&1") == 0
		or die "openssl failed: $cmd\n";
}

for my $name ('root', 'other') {
	run("openssl req -x509 -new -config $d/openssl.conf -subj /CN=$name/ "
		. "-out $d/$name.crt -keyout $d/$name.key");
}

my $ca = "openssl ca -batch -config $d/ca.conf -keyfile $d/root.key "
	. "-cert $d/root.crt";

# name => [ CN, how it is signed ]
my %certs = (
	good => [ 'localhost', '' ],
	wrongname => [ 'wrong.example', '' ],
	expired => [ 'localhost', '-startdate 20200101000000Z -enddate 20200201000000Z' ],
	revoked => [ 'localhost', '' ],
	int => [ 'intermediate', '-extensions v3_ca' ],
);

for my $name (sort keys %certs) {
	my ($cn, $how) = @{ $certs{$name} };
	run("openssl req -new -config $d/openssl.conf -subj /CN=$cn/ "
		. "-out $d/$name.csr -keyout $d/$name.key");
	run("$ca $how -subj /CN=$cn/ -in $d/$name.csr -out $d/$name.crt");
}

run("$ca -revoke $d/revoked.crt");
run("$ca -gencrl -out $d/root.crl");

# signed by another CA; and a leaf under the intermediate, sent with it
run("openssl req -new -config $d/openssl.conf -subj /CN=localhost/ "
	. "-out $d/wrongca.csr -keyout $d/wrongca.key");
run("openssl x509 -req -in $d/wrongca.csr -CA $d/other.crt -CAkey $d/other.key "
	. "-CAcreateserial -days 3 -out $d/wrongca.crt");
run("openssl req -new -config $d/openssl.conf -subj /CN=localhost/ "
	. "-out $d/leaf.csr -keyout $d/leaf.key");
run("openssl x509 -req -in $d/leaf.csr -CA $d/int.crt -CAkey $d/int.key "
	. "-CAcreateserial -days 3 -out $d/leaf.crt");
$t->write_file('chain.crt', $t->read_file('leaf.crt') . $t->read_file('int.crt'));

my %backends = (8121 => 'good', 8122 => 'wrongca', 8123 => 'wrongname',
	8124 => 'expired', 8125 => 'revoked', 8126 => 'chain');

port($_) for 8081, keys %backends;

$t->run_daemon(\&auth_daemon);
for my $port (sort keys %backends) {
	my $name = $backends{$port};
	my $key = $name eq 'chain' ? 'leaf' : $name;
	$t->run_daemon(\&backend, $port, "$d/$name.crt", "$d/$key.key", $d);
}
$t->run()->plan(23);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, keys %backends;

###############################################################################

like(login(8110, 8121), qr/^\+OK logged in/, 'verified backend');

refused(8110, 8122,
	qr/upstream SSL certificate verify error: \(2[01]:unable to (get local issuer|verify the first) certificate\) for "localhost"/,
	'wrong ca');
refused(8110, 8123, qr/upstream SSL certificate does not match "localhost"/,
	'wrong name');
refused(8110, 8124, qr/upstream SSL certificate verify error: \(10:certificate has expired\)/,
	'expired');

# proxy_ssl_crl
like(login(8111, 8121), qr/^\+OK logged in/, 'not revoked');
refused(8111, 8125, qr/upstream SSL certificate verify error: \(23:certificate revoked\)/,
	'revoked');
like(login(8110, 8125), qr/^\+OK logged in/, 'revoked, but no crl');

# proxy_ssl_verify_depth: 1 by default, enough for one intermediate CA;
# 0 is not
like(login(8110, 8126), qr/^\+OK logged in/, 'one intermediate at depth 1');
refused(8112, 8126, qr/verify error: \((20:unable to get local issuer certificate|22:certificate chain too long)\) for "localhost"/,
	'proxy_ssl_verify_depth 0');

# the auth server's host (an address) is the name without proxy_ssl_name
refused(8113, 8121, qr/upstream SSL certificate does not match "127\.0\.0\.1"/,
	'auth server host as the name');

# proxy_ssl_verify off
like(login(8114, 8122), qr/^\+OK logged in/, 'no verify: wrong ca taken');

undef $t;

###############################################################################

# logs in through nginx's $port to the backend on $backend; the last reply
sub login {
	my ($port, $backend) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send("USER u$backend");
	$s->read();
	$s->send('PASS secret');
	return $s->read() // '';
}

# three tests: the client's reply, the [error] line, no credential sent
sub refused {
	my ($port, $backend, $log, $name) = @_;
	my $before = length($t->read_file("backend-$backend.log") // '');
	my $errors = length($t->read_file('error.log') // '');
	like(login($port, $backend), qr/^-ERR internal server error/, "$name refused");
	my $new = substr($t->read_file('error.log'), $errors);
	like($new, qr/\[error\].*$log.*upstream: 127\.0\.0\.1:\d+/, "$name logged");
	unlike(substr($t->read_file("backend-$backend.log") // '', $before),
		qr/USER|PASS/, "$name no credential");
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		my $port = 0;
		while (defined(my $l = <$c>)) {
			$port = $1 if $l =~ /^Auth-User: u(\d+)/i;
			last if $l eq CRLF;
		}
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port($port) . CRLF
			. "Auth-Pass: secret" . CRLF . CRLF;
		close $c;
	}
}

# A POP3 backend over TLS with this certificate; what it read is logged.
sub backend {
	my ($port, $cert, $key, $d) = @_;
	require IO::Socket::SSL;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	local $SIG{CHLD} = 'IGNORE';
	while (my $c = $server->accept()) {
		if (fork() == 0) {
			IO::Socket::SSL->start_SSL($c, SSL_server => 1,
				SSL_cert_file => $cert, SSL_key_file => $key)
				or exit 0;
			$c->autoflush(1);
			open my $log, '>>', "$d/backend-$port.log" or die "log: $!";
			$log->autoflush(1);
			print $c "+OK ready" . CRLF;
			while (defined(my $l = <$c>)) {
				print $log $l;
				print $c ($l =~ /^PASS/ ? "+OK logged in" : "+OK") . CRLF;
			}
			exit 0;
		}
		close $c;
	}
}

###############################################################################
