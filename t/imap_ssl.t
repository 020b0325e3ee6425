#!/usr/bin/perl

# Tests for IMAP with TLS: STARTTLS with starttls on and only (with the
# STARTTLS and LOGINDISABLED capabilities), listen ... ssl, commands
# pipelined after STARTTLS (CVE-2014-3556), client certificates and the
# Auth-SSL-* headers, and ssl_verify_client on.

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
use Test::Nginx::IMAP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $t = Test::Nginx->new()->has(qw/mail mail_ssl imap socket_ssl/)
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
        listen     127.0.0.1:8143;
        protocol   imap;
        starttls   on;
    }

    server {
        listen     127.0.0.1:8145;
        protocol   imap;
        starttls   only;
    }

    server {
        listen     127.0.0.1:8993 ssl;
        protocol   imap;
        imap_auth  plain external;
        ssl_verify_client optional;
        ssl_client_certificate root.crt;
    }

    server {
        listen     127.0.0.1:8146 ssl;
        protocol   imap;
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

port($_) for 8081, 8144;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&Test::Nginx::IMAP::imap_test_daemon);
$t->run()->plan(20);

$t->waitforsocket('127.0.0.1:' . port(8081));
$t->waitforsocket('127.0.0.1:' . port(8144));

###############################################################################

sub last_request {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return $r[-1] // '';
}

# starttls on

my $s = Test::Nginx::IMAP->new();
$s->read();
$s->send('a1 CAPABILITY');
is($s->read(), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN STARTTLS\r\n",
	'capability offers STARTTLS');
$s->read();
$s->send('a2 STARTTLS');
is($s->read(), "a2 OK completed\r\n", 'starttls');
starttls($s);
$s->send('a3 CAPABILITY');
is($s->read(), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS AUTH=PLAIN\r\n",
	'no STARTTLS inside TLS');
$s->read();
$s->send('a4 STARTTLS');
is($s->read(), "a4 BAD invalid command\r\n", 'starttls twice');
$s->send('a5 LOGIN test@example.com secret');
is($s->read(), "a5 OK login ok\r\n", 'login over tls');
my $r = last_request();
like($r, qr/^Auth-Protocol: imap\r$/m, 'auth protocol');
like($r, qr/^Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv[\d.]+\r\nAuth-SSL-Cipher: \S+\r$/m,
	'auth-ssl headers');

# commands pipelined after STARTTLS are dropped, not run inside TLS

$s = Test::Nginx::IMAP->new();
$s->read();
$s->print('b1 STARTTLS' . CRLF . 'b2 CAPABILITY' . CRLF);
is($s->read(), "b1 OK completed\r\n", 'starttls pipelined');
starttls($s);
$s->send('b3 NOOP');
is($s->read(), "b3 OK completed\r\n", 'first reply inside TLS is for NOOP');

# starttls only

$s = Test::Nginx::IMAP->new(PeerAddr => '127.0.0.1:' . port(8145));
$s->read();
$s->send('c1 CAPABILITY');
is($s->read(), "* CAPABILITY IMAP4 IMAP4rev1 UIDPLUS STARTTLS LOGINDISABLED\r\n",
	'capability with starttls only');
$s->read();
$s->send('c2 LOGIN test@example.com secret');
is($s->read(), "c2 BAD invalid command\r\n", 'no login before STARTTLS');
$s->send('c3 AUTHENTICATE PLAIN ' . encode_base64("\0test\@example.com\0secret", ''));
is($s->read(), "c3 BAD invalid command\r\n", 'no authenticate before STARTTLS');
$s->send('c4 STARTTLS');
$s->read();
starttls($s);
$s->send('c5 LOGIN test@example.com secret');
is($s->read(), "c5 OK login ok\r\n", 'login after STARTTLS');

# listen ssl with a client certificate

$s = Test::Nginx::IMAP->new(SSL => 1,
	SSL_cert_file => "$d/client.crt", SSL_key_file => "$d/client.key");
is($s->read(), "* OK IMAP4 ready\r\n", 'greeting over ssl');
$s->send('d1 AUTHENTICATE EXTERNAL ' . encode_base64('test@example.com', ''));
is($s->read(), "d1 OK login ok\r\n", 'external with a certificate');
$r = last_request();
like($r, qr/^Auth-Method: external\r$/m, 'external method');
ok(index($r, "Auth-SSL-Verify: SUCCESS\r\nAuth-SSL-Subject: CN=client\r\n"
	. "Auth-SSL-Issuer: CN=root\r\n") > 0, 'client certificate headers');

$s = Test::Nginx::IMAP->new(SSL => 1);
$s->read();
$s->send('d2 LOGIN test@example.com secret');
is($s->read(), "d2 OK login ok\r\n", 'login without a certificate');

# ssl_verify_client on: the imap protocol's own error text

$s = Test::Nginx::IMAP->new(PeerAddr => '127.0.0.1:' . port(8146), SSL => 1);
is($s->read(), "* BYE No required SSL certificate\r\n", 'no certificate');
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
			. "Auth-Port: " . port(8144) . CRLF
			. "Auth-User: test\@example.com" . CRLF
			. "Auth-Pass: secret" . CRLF . CRLF;
		close $c;
	}
}

###############################################################################
