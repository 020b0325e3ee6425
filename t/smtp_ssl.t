#!/usr/bin/perl

# Tests for smtp with TLS: STARTTLS with starttls on and only, the EHLO
# replies for each, commands pipelined after STARTTLS dropped
# (CVE-2014-3556), the envelope forgotten after STARTTLS, listen ssl with
# Auth-SSL headers, and the smtp error for a missing client certificate.

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
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# checks of stock-version behaviour only apply to stock modules
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl smtp socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http    127.0.0.1:8081/auth;
    server_name  mx.test;
    xclient      off;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        starttls   on;
        smtp_auth  plain none;
    }

    server {
        listen     127.0.0.1:8026;
        protocol   smtp;
        starttls   only;
    }

    server {
        listen     127.0.0.1:8028;
        protocol   smtp;
        starttls   only;
        smtp_auth  none;
    }

    server {
        listen     127.0.0.1:8465 ssl;
        protocol   smtp;
    }

    server {
        listen     127.0.0.1:8027 ssl;
        protocol   smtp;
        ssl_verify_client on;
        ssl_client_certificate localhost.crt;
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

port($_) for 8081, 8082;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&backend);
$t->run()->plan(30);

$t->waitforsocket('127.0.0.1:' . port(8081));
$t->waitforsocket('127.0.0.1:' . port(8082));

###############################################################################

sub reply {
	my ($s) = @_;
	my $all = '';
	while (defined(my $l = $s->getline())) {
		$all .= $l;
		last unless $l =~ /^\d\d\d-/;
	}
	return $all;
}

sub last_request {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return $r[-1] // '';
}

my $plain = 'AUTH PLAIN ' . encode_base64("\0test\@example.com\0secret", '');

# starttls on

my $s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO client.example');
is(reply($s), "250-mx.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n",
	'ehlo offers starttls');
$s->send('STARTTLS');
$s->check(qr/^220 2\.0\.0 Start TLS\r\n$/, 'starttls');
starttls($s);
$s->send('EHLO client.example');
is(reply($s), "250-mx.test\r\n250 AUTH PLAIN\r\n", 'no starttls inside tls');
$s->send('STARTTLS');
$s->check(qr/^500 5\.5\.1 Invalid command/, 'starttls twice');
$s->send($plain);
$s->authok('login over tls');
like(last_request(), qr/^Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv[\d.]+\r\n/m,
	'auth-ssl headers');

# commands pipelined after STARTTLS are dropped, not run inside TLS

$s = Test::Nginx::SMTP->new();
$s->read();
$s->print('STARTTLS' . CRLF . 'HELP' . CRLF);
$s->check(qr/^220 /, 'starttls pipelined');
starttls($s);
$s->send('NOOP');
$s->check(qr/^250 2\.0\.0 OK\r\n$/, 'first reply inside tls is for noop');

# nothing learned before STARTTLS survives it (RFC 3207)

$s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO before.example');
reply($s);
$s->send('MAIL FROM:<a@example.com>');
$s->ok('mail from before starttls');
$s->send('STARTTLS');
$s->read();
starttls($s);
$s->send('RCPT TO:<b@example.com>');
$s->check(qr/^503 5\.5\.1 Bad sequence/, 'envelope forgotten');
$s->send('EHLO after.example');
reply($s);
$s->send('MAIL FROM:<a@example.com>');
$s->ok('mail from inside tls');
$s->send('RCPT TO:<b@example.com>');
$s->check(qr/^250 backend/, 'relayed inside tls');
like(last_request(), qr/^Auth-SMTP-Helo: after\.example\r$/m,
	'helo from inside tls');

# starttls only

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8026));
$s->read();
$s->send('EHLO client.example');
is(reply($s), "250-mx.test\r\n250 STARTTLS\r\n", 'ehlo with starttls only');
$s->send($plain);
$s->check(qr/^500 5\.5\.1 Invalid command/, 'no auth before starttls');
$s->send('MAIL FROM:<a@example.com>');
$s->check(qr/^530 5\.7\.1 /, 'no mail before starttls');
$s->send('STARTTLS');
$s->read();
starttls($s);
$s->send('EHLO client.example');
is(reply($s), "250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n", 'auth after starttls');
$s->send($plain);
$s->authok('login after starttls');

# starttls only with smtp_auth none: relaying waits for STARTTLS too
# (nginx PR 705); stock 1.28 takes MAIL FROM in the clear

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8028));
$s->read();
$s->send('EHLO client.example');
is(reply($s), "250-mx.test\r\n250 STARTTLS\r\n", 'ehlo, starttls only, auth none');
$s->send('MAIL FROM:<a@example.com>');
if ($stock) {
	$s->check(qr/^250 2\.0\.0 OK\r\n$/, 'stock: mail from before starttls');
} else {
	$s->check(qr/^500 5\.5\.1 Invalid command\r\n$/,
		'no mail from before starttls with smtp_auth none');
}

SKIP: {
skip 'stock 1.28 relays without STARTTLS', 5 if $stock;

$s->send('RCPT TO:<b@example.com>');
$s->check(qr/^503 5\.5\.1 Bad sequence/, 'no envelope before starttls');
$s->send('NOOP');
$s->ok('the session goes on');
$s->send('STARTTLS');
$s->read();
starttls($s);
$s->send('EHLO client.example');
reply($s);
$s->send('MAIL FROM:<a@example.com>');
$s->ok('mail from after starttls');
$s->send('RCPT TO:<b@example.com>');
$s->check(qr/^250 backend/, 'relayed after starttls');
like(last_request(), qr/^Auth-Method: none\r\n.*^Auth-SMTP-From: MAIL FROM:<a\@example\.com>\r$/ms,
	'auth request after starttls');

}

# listen ssl

$s = Test::Nginx::SMTP->new(SSL => 1);
$s->check(qr/^220 mx\.test ESMTP ready/, 'greeting over ssl');
$s->send('EHLO client.example');
is(reply($s), "250-mx.test\r\n250 AUTH PLAIN LOGIN\r\n", 'ehlo over ssl');
$s->send($plain);
$s->authok('login over ssl');

$s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port(8027), SSL => 1);
$s->check(qr/^421 4\.7\.1 No required SSL certificate\r\n$/, 'no certificate');
is($s->read(), undef, 'closed without a certificate');

undef $s;

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
			. "Auth-Port: " . port(8082) . CRLF . CRLF;
		close $c;
	}
}

sub backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8082), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "220 backend ready" . CRLF;
		while (defined(my $l = <$c>)) {
			print $c "250 backend ok" . CRLF;
		}
		close $c;
	}
}

###############################################################################
