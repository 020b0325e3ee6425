#!/usr/bin/perl

# Tests for POP3 with TLS: STLS with starttls on and only, listen ... ssl,
# commands pipelined after STLS (CVE-2014-3556), client certificates with
# ssl_verify_client, the Auth-SSL-* headers and auth_http_pass_client_cert.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
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

# what stock nginx lacks is only checked against our module
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        starttls   on;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        starttls   only;
    }

    server {
        listen     127.0.0.1:8113 ssl;
        protocol   pop3;
        pop3_auth  plain external;
        ssl_verify_client optional;
        ssl_client_certificate root.crt;
        auth_http_pass_client_cert on;
    }

    server {
        listen     127.0.0.1:8114 ssl;
        protocol   pop3;
        ssl_verify_client on;
        ssl_client_certificate root.crt;
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

for my $name ('root', 'localhost') {
	system('openssl req -x509 -new '
		. "-config $d/openssl.conf -subj /CN=$name/ "
		. "-out $d/$name.crt -keyout $d/$name.key "
		. ">>$d/openssl.out 2>&1") == 0
		or die "Can't create certificate for $name: $!\n";
}

system("openssl req -new -config $d/openssl.conf -subj /CN=client/ "
	. "-out $d/client.csr -keyout $d/client.key >>$d/openssl.out 2>&1") == 0
	and system("openssl x509 -req -in $d/client.csr -CA $d/root.crt "
	. "-CAkey $d/root.key -CAcreateserial -days 3 -out $d/client.crt "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create the client certificate\n";

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&Test::Nginx::POP3::pop3_test_daemon);
$t->run()->plan(27);

$t->waitforsocket('127.0.0.1:' . port(8081));
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

# the certificate's digest as openssl prints it, in nginx's lowercase hex
sub fingerprint {
	my ($digest) = @_;
	my $out = `openssl x509 -in $d/client.crt -noout -fingerprint -$digest`;
	my ($hex) = $out =~ /=([0-9A-Fa-f:]+)/ or return '';
	$hex =~ s/://g;
	return lc $hex;
}

sub last_request {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return $r[-1] // '';
}

# starttls on

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('CAPA');
like(capa($s), qr/^USER\r\nUIDL\r\nSASL PLAIN LOGIN\r\nSTLS\r\n\.\r\n/m,
	'capa offers STLS');
$s->send('STLS');
$s->ok('stls');
starttls($s);
$s->send('CAPA');
unlike(capa($s), qr/STLS/, 'no STLS inside TLS');
$s->send('STLS');
$s->check(qr/^-ERR invalid command/, 'stls twice');
$s->send('USER test@example.com');
$s->ok('user over tls');
$s->send('PASS secret');
$s->ok('pass over tls');
my $r = last_request();
like($r, qr/^Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv[\d.]+\r\nAuth-SSL-Cipher: \S+\r$/m,
	'auth-ssl headers');
unlike($r, qr/Auth-SSL-Verify/, 'no verify header without ssl_verify_client');

# commands pipelined after STLS are dropped, not run inside TLS

$s = Test::Nginx::POP3->new();
$s->read();
$s->print('STLS' . CRLF . 'CAPA' . CRLF);
$s->ok('stls pipelined');
starttls($s);
$s->send('NOOP');
$s->check(qr/^\+OK\r\n$/, 'first reply inside TLS is for NOOP');
$s->send('QUIT');
$s->ok('quit inside tls');

# starttls only

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8112));
$s->read();
$s->send('CAPA');
is(capa($s), "+OK Capability list follows\r\nTOP\r\nUIDL\r\nSTLS\r\n.\r\n",
	'capa with starttls only');
$s->send('USER test@example.com');
$s->check(qr/^-ERR invalid command/, 'no login before STLS');
$s->send('AUTH PLAIN ' . encode_base64("\0test\@example.com\0secret", ''));
$s->check(qr/^-ERR invalid command/, 'no auth before STLS');
$s->send('STLS');
$s->ok('stls with starttls only');
starttls($s);
$s->send('USER test@example.com');
$s->ok('user after stls');
$s->send('PASS secret');
$s->ok('login after stls');

# listen ssl, optional client certificate

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8113), SSL => 1,
	SSL_cert_file => "$d/client.crt", SSL_key_file => "$d/client.key");
$s->ok('greeting over ssl');
$s->send('AUTH EXTERNAL ' . encode_base64('test@example.com', ''));
$s->ok('auth external with a certificate');
$r = last_request();
like($r, qr/^Auth-Method: external\r$/m, 'external method');
like($r, qr/^Auth-SSL-Verify:\ SUCCESS\r\nAuth-SSL-Subject:\ CN=client\r\n
	Auth-SSL-Issuer:\ CN=root\r\nAuth-SSL-Serial:\ [0-9A-F]+\r\n
	Auth-SSL-Fingerprint:\ [0-9a-f]{40}\r\n
	(Auth-SSL-Fingerprint-SHA256:\ [0-9a-f]{64}\r\n)?
	Auth-SSL-Cert:\ -----BEGIN%20CERTIFICATE-----%0A/mx,
	'client certificate headers');
is(($r =~ /^Auth-SSL-Fingerprint: (\w+)\r$/m)[0], fingerprint('sha1'),
	'sha-1 fingerprint of the certificate');

SKIP: {
skip 'Auth-SSL-Fingerprint-SHA256 is freenginx\'s, not stock\'s', 1 if $stock;
is(($r =~ /^Auth-SSL-Fingerprint-SHA256: (\w+)\r$/m)[0], fingerprint('sha256'),
	'sha-256 fingerprint of the certificate');
}

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8113), SSL => 1);
$s->read();
$s->send('USER test@example.com');
$s->read();
$s->send('PASS secret');
$s->ok('login without a certificate');
like(last_request(), qr/^Auth-SSL-Verify: NONE\r$/m, 'verify none');

# ssl_verify_client on: the pop3 protocol's own error text

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8114), SSL => 1);
$s->check(qr/^-ERR No required SSL certificate\r\n$/, 'no certificate');
is($s->read(), undef, 'closed without a certificate');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################

# TLS on the client's socket after STARTTLS (or STLS)
sub starttls {
	my ($s) = @_;
	require IO::Socket::SSL;
	IO::Socket::SSL->start_SSL($s->socket,
		SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE())
		or die 'TLS: ' . IO::Socket::SSL::errstr();
}

sub auth_daemon {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8111) . CRLF
			. "Auth-User: test\@example.com" . CRLF
			. "Auth-Pass: secret" . CRLF . CRLF;
		close $c;
	}
}

###############################################################################
