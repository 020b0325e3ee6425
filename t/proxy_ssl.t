#!/usr/bin/perl

# Tests for TLS to the backends (ours: stock talks to them in plain text
# only): proxy_ssl for POP3, IMAP, SMTP and ManageSieve backends; what the
# backend sees of proxy_ssl_protocols, _ciphers, _conf_command,
# _server_name and the client certificate (proxy_ssl_certificate with an
# encrypted key and proxy_ssl_password_file); sessions resumed with
# proxy_ssl_session_reuse and not without; a backend that does not speak
# TLS refused before any credential goes out; the PROXY header before the
# handshake; a handshake that times out; 4 MiB both ways byte-exact with
# TLS on the backend side only and on both sides; backend_tls in the
# session log.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;
use Test::Nginx::IMAP;
use Test::Nginx::SMTP;
use Test::Nginx::Sieve;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'proxy_ssl is ours; stock talks to backends in plain text only')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 imap smtp socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_timeout 10s;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    proxy_ssl  on;
    access_log %%TESTDIR%%/mail.log;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        starttls   on;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        smtp_auth  plain;
    }

    server {
        listen     127.0.0.1:8192;
        protocol   sieve;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;

        proxy_ssl_protocols        TLSv1.2;
        proxy_ssl_ciphers          ECDHE-RSA-AES256-GCM-SHA384;
        proxy_ssl_certificate      client.crt;
        proxy_ssl_certificate_key  client.key;
        proxy_ssl_password_file    password;
        proxy_ssl_session_reuse    off;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;

        proxy_ssl_conf_command  Ciphersuites TLS_CHACHA20_POLY1305_SHA256;
        proxy_ssl_name          backend.example;
        proxy_ssl_server_name   on;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        proxy_ssl  off;
    }

    server {
        listen     127.0.0.1:8114 ssl;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8115;
        protocol   pop3;
        proxy_protocol  on;
    }

    server {
        listen     127.0.0.1:8116;
        protocol   pop3;
        timeout    1s;
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

$t->write_file('password', "wrong\nsecret\n");

for my $name ('root', 'localhost') {
	system('openssl req -x509 -new '
		. "-config $d/openssl.conf -subj /CN=$name/ "
		. "-out $d/$name.crt -keyout $d/$name.key "
		. ">>$d/openssl.out 2>&1") == 0
		or die "Can't create certificate for $name: $!\n";
}

# the backend's certificate and the proxy's client certificate, signed by
# root; the client's key encrypted
system("openssl req -new -config $d/openssl.conf -subj /CN=backend/ "
	. "-out $d/backend.csr -keyout $d/backend.key >>$d/openssl.out 2>&1") == 0
	and system("openssl x509 -req -in $d/backend.csr -CA $d/root.crt "
	. "-CAkey $d/root.key -CAcreateserial -days 3 -out $d/backend.crt "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create the backend certificate\n";

system("openssl genrsa -aes128 -passout pass:secret -out $d/client.key 2048 "
	. ">>$d/openssl.out 2>&1") == 0
	and system("openssl req -new -config $d/openssl.conf -subj /CN=proxy/ "
	. "-key $d/client.key -passin pass:secret "
	. "-out $d/client.csr >>$d/openssl.out 2>&1") == 0
	and system("openssl x509 -req -in $d/client.csr -CA $d/root.crt "
	. "-CAkey $d/root.key -CAcreateserial -days 3 -out $d/client.crt "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create the client certificate\n";

port($_) for 8081, 8121 .. 8128;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, 8121, 'pop3', $d);
$t->run_daemon(\&backend, 8122, 'imap', $d);
$t->run_daemon(\&backend, 8123, 'smtp', $d);
$t->run_daemon(\&backend, 8124, 'plain', $d);
$t->run_daemon(\&backend, 8125, 'sieve', $d);
$t->run_daemon(\&backend, 8126, 'plain', $d);
$t->run_daemon(\&backend, 8127, 'proxied', $d);
$t->run_daemon(\&silent, 8128);
$t->run()->plan(38);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8121 .. 8128;

###############################################################################

my $mib = 1024 * 1024;

# POP3: the backend sees TLS with the defaults, no SNI for an IP literal
# and no client certificate

my $s = pop3_login(8110, 'u8121');
my $info = $s->read();
like($info, qr/^\+OK logged in .*tls=TLSv1_3/, 'pop3 backend over tls');
like($info, qr/ sni=- /, 'no sni by default');
like($info, qr/ cert=- /, 'no client certificate by default');
like($info, qr/ reused=0/, 'first session full handshake');

# a POP3 session on plain both ways still works next to it
$s->send('NOOP');
$s->check(qr/^\+OK NOOP tls=TLSv1_3/, 'pop3 command after login');

# proxy_ssl_session_reuse (on by default): the next session resumes,
# and nginx says so in its debug log
$s = pop3_login(8110, 'u8121');
like($s->read(), qr/ reused=1/, 'session resumed');

SKIP: {
skip 'no debug log', 1 unless $t->read_file('error.log') =~ /\[debug\]/;
like($t->read_file('error.log'), qr/SSL reused session/, 'reuse in the log');
}

# IMAP and SMTP backends

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('a1 LOGIN u8122 secret');
$s->check(qr/^a1 OK logged in .*tls=TLSv1_3/, 'imap backend over tls');
$s->send('a2 NOOP');
$s->check(qr/^a2 OK NOOP tls=TLSv1_3/, 'imap command after login');

$s = Test::Nginx::SMTP->new();
$s->read();
$s->send('EHLO example.com');
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0u8123\0secret", ''));
$s->authok('smtp login over tls');
$s->send('NOOP');
$s->check(qr/^250 NOOP tls=TLSv1_3/, 'smtp backend over tls');

# ManageSieve

$s = Test::Nginx::Sieve->new(PeerAddr => '127.0.0.1:' . port(8192));
$s->response();
$s->send('AUTHENTICATE "PLAIN" "' . encode_base64("\0u8125\0secret", '') . '"');
like($s->response(), qr/^OK "logged in tls=TLSv1_3/, 'sieve backend over tls');
$s->send('LISTSCRIPTS');
like($s->response(), qr/^OK "LISTSCRIPTS tls=TLSv1_3/, 'sieve command after login');

# proxy_ssl_protocols, _ciphers, _certificate with an encrypted key opened
# by the second password of proxy_ssl_password_file, _session_reuse off

$s = pop3_login(8111, 'u8121');
$info = $s->read();
like($info, qr/tls=TLSv1_2 /, 'proxy_ssl_protocols');
like($info, qr/cipher=ECDHE-RSA-AES256-GCM-SHA384 /, 'proxy_ssl_ciphers');
like($info, qr/ cert=proxy /, 'proxy_ssl_certificate');
$s = pop3_login(8111, 'u8121');
like($s->read(), qr/ reused=0/, 'proxy_ssl_session_reuse off');

# proxy_ssl_conf_command, proxy_ssl_name with proxy_ssl_server_name

$s = pop3_login(8112, 'u8121');
$info = $s->read();
like($info, qr/cipher=TLS_CHACHA20_POLY1305_SHA256 /, 'proxy_ssl_conf_command');
like($info, qr/ sni=backend\.example /, 'proxy_ssl_server_name');

# proxy_ssl off in a server: plain text to a plain backend

$s = pop3_login(8113, 'u8126');
like($s->read(), qr/^\+OK logged in plain/, 'proxy_ssl off');

# proxy_protocol: the PROXY header goes first, in plain text, as the
# stream proxy sends it, then the handshake

$s = pop3_login(8115, 'u8127');
like($s->read(), qr/^\+OK logged in tls=TLSv1_3 .* proxy=PROXY TCP4 127\.0\.0\.1 /,
	'proxy_protocol header before the handshake');

# a backend that never answers the handshake: the session's timeout ends it

$s = pop3_login(8116, 'u8128');
like($s->read(), qr/^-ERR internal server error/, 'handshake timed out');
like($t->read_file('error.log'),
	qr/upstream timed out \(110: Connection timed out\) while SSL handshaking to upstream/,
	'handshake timeout logged');

# a backend that does not speak TLS: refused, nothing of the login sent

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER u8124');
$s->read();
$s->send('PASS secret');
like($s->read(), qr/^-ERR internal server error/, 'plain backend refused');
like($t->read_file('error.log'),
	qr/\[error\].*upstream SSL handshake with "127\.0\.0\.1" failed.*upstream: 127\.0\.0\.1:\d+/,
	'handshake failure logged at error with the backend');
unlike($t->read_file('backend-8124.log') // '', qr/USER|PASS/,
	'no credential to a backend without tls');

# 4 MiB both ways, TLS on the backend side only

$s = pop3_login(8110, 'u8121');
$s->read();
$s->send('RETR ' . 4 * $mib);
like($s->read(), qr/^\+OK \d+ octets/, 'retr 4m');
my $got = read_message($s);
is(length($got), 4 * $mib, 'retr 4m length');
is(md5_hex($got), md5_hex(message(4 * $mib)), 'retr 4m byte-exact');

my $upload = message(4 * $mib);
$s->send('XUPL ' . length($upload));
$s->check(qr/^\+ go ahead/, 'upload accepted');
write_all($s->socket(), $upload . 'NOOP' . CRLF);
# the backend digests 4 MiB before it answers (slow under valgrind)
$s->can_read(60);
$s->check(qr/^\+OK \Q@{[ md5_hex($upload) ]}\E\r\n$/, 'upload 4m byte-exact');
$s->check(qr/^\+OK NOOP/, 'a command right behind the upload');

# the same with TLS on both sides

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8114));
$s->upgrade();
$s->read();
$s->send('USER u8121');
$s->read();
$s->send('PASS secret');
like($s->read(), qr/^\+OK logged in/, 'login with tls both sides');
$s->send('RETR ' . 4 * $mib);
$s->read();
is(md5_hex(read_message($s)), md5_hex(message(4 * $mib)),
	'retr 4m tls both sides byte-exact');
$s->send('XUPL ' . length($upload));
$s->read();
write_all($s->socket(), $upload);
$s->can_read(60);
$s->check(qr/^\+OK \Q@{[ md5_hex($upload) ]}\E\r\n$/,
	'upload 4m tls both sides byte-exact');
$s->send('QUIT');
$s->check(qr/^\+OK bye/, 'quit');

undef $s;

# the session log says which sessions had TLS to the backend
my $log = '';
for (1 .. 50) {
	$log = $t->read_file('mail.log') // '';
	last if $log =~ /login=u8126 .*backend_tls=off/;
	select undef, undef, undef, 0.1;
}
like($log, qr/login=u8121 .*backend_tls=on/, 'session log: backend tls on');
like($log, qr/login=u8126 .*backend_tls=off/, 'session log: backend tls off');
undef $t;

###############################################################################

sub pop3_login {
	my ($port, $user) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send('PASS secret');
	return $s;
}

sub read_message {
	my ($s) = @_;
	my $body = '';
	while (defined(my $l = $s->read())) {
		last if $l eq ".\r\n";
		$body .= $l;
	}
	return $body;
}

sub write_all {
	my ($sock, $data) = @_;
	while (length $data) {
		my $n = $sock->syswrite($data, 65536);
		die "write: $!" unless defined $n;
		substr($data, 0, $n, '');
	}
}

sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('A') + $_ % 26) } 0 .. 61) . CRLF;
	my $body = $line x int($size / length($line));
	my $rest = $size - length($body);
	$body .= ('z' x ($rest - 2)) . CRLF if $rest >= 2;
	$body .= 'y' if $rest == 1;
	return $body;
}

# the backend is the user name's digits: u8121 logs in to port(8121)
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

# A backend that takes connections and never says a word.
sub silent {
	my ($port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 16,
		ReuseAddr => 1) or die "silent listen: $!";
	my @held;
	while (my $c = $server->accept()) {
		push @held, $c;
	}
}

# A backend of $proto over TLS (or, 'plain', POP3 without), one process per
# connection; the TLS context is made before the fork so that every
# process takes the tickets of the others. What it read is logged.
sub backend {
	my ($port, $proto, $d) = @_;
	require IO::Socket::SSL;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	my $ctx;
	$ctx = IO::Socket::SSL::SSL_Context->new(
		SSL_server => 1,
		SSL_cert_file => "$d/backend.crt",
		SSL_key_file => "$d/backend.key",
		SSL_ca_file => "$d/root.crt",
		SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_PEER(),
	) or die 'backend tls: ' . IO::Socket::SSL::errstr()
		unless $proto eq 'plain';
	local $SIG{PIPE} = 'IGNORE';
	local $SIG{CHLD} = 'IGNORE';
	while (my $c = $server->accept()) {
		if (fork() == 0) {
			serve($c, $port, $proto, $ctx, $d);
			exit 0;
		}
		close $c;
	}
}

sub serve {
	my ($c, $port, $proto, $ctx, $d) = @_;
	my $info = 'plain';
	# a PROXY header before the handshake, read byte by byte so that
	# nothing of the handshake is taken with it
	my $proxy = '';
	if ($proto eq 'proxied') {
		while ($proxy !~ /\n$/) {
			$c->sysread($proxy, 1, length $proxy) or return;
		}
		$proxy =~ s/\r?\n$//;
		$proto = 'pop3';
	}
	if ($ctx) {
		IO::Socket::SSL->start_SSL($c, SSL_server => 1,
			SSL_reuse_ctx => $ctx) or return;
		$info = join ' ', 'tls=' . $c->get_sslversion(),
			'cipher=' . $c->get_cipher(),
			'sni=' . ($c->get_servername() || '-'),
			'cert=' . (($c->peer_certificate('cn')) || '-'),
			'reused=' . ($c->get_session_reused() ? 1 : 0);
		$info .= " proxy=$proxy " if $proxy;
	}
	$c->autoflush(1);
	open my $log, '>>', "$d/backend-$port.log" or die "log: $!";
	$log->autoflush(1);
	print $c $proto eq 'imap' ? "* OK $info" . CRLF
		: $proto eq 'smtp' ? "220 $info" . CRLF
		: $proto eq 'sieve' ? '"IMPLEMENTATION" "fake"' . CRLF
			. '"SASL" "PLAIN"' . CRLF . 'OK' . CRLF
		: "+OK $info" . CRLF;
	while (defined(my $l = <$c>)) {
		print $log $l;
		if ($proto eq 'imap') {
			if ($l =~ /\}\r\n$/) {
				print $c "+ go ahead" . CRLF;
			} elsif ($l =~ /^(\S+) (\S+)/ && $l !~ /^secret/) {
				print $c "$1 OK $2 $info" . CRLF;
			} else {
				print $c "a1 OK logged in $info" . CRLF;
			}
			next;
		}
		if ($proto eq 'sieve') {
			my ($cmd) = $l =~ /^(\S+)/;
			$cmd = 'logged in' if $cmd eq 'AUTHENTICATE';
			print $c qq{OK "$cmd $info"} . CRLF;
			next;
		}
		if ($proto eq 'smtp') {
			my ($cmd) = $l =~ /^(\S+)/;
			print $c "250 " . uc($cmd // '') . " $info" . CRLF;
			next;
		}
		my ($cmd, $arg) = $l =~ /^(\S*)\s*(.*?)\r?$/;
		$cmd = uc $cmd;
		if ($cmd eq 'USER') {
			print $c "+OK" . CRLF;
		} elsif ($cmd eq 'PASS') {
			print $c "+OK logged in $info" . CRLF;
		} elsif ($cmd eq 'RETR') {
			print $c "+OK $arg octets" . CRLF . message($arg) . "." . CRLF;
		} elsif ($cmd eq 'XUPL') {
			print $c "+ go ahead" . CRLF;
			my $data = '';
			while (length($data) < $arg) {
				my $n = read($c, $data, $arg - length($data), length $data);
				last unless $n;
			}
			print $c "+OK " . md5_hex($data) . CRLF;
		} elsif ($cmd eq 'QUIT') {
			print $c "+OK bye" . CRLF;
			return;
		} else {
			print $c "+OK $cmd $info" . CRLF;
		}
	}
}

###############################################################################
