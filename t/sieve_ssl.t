#!/usr/bin/perl

# Tests for ManageSieve with TLS: STARTTLS with starttls on and only, the
# capability block sent again unasked after the handshake (RFC 5804 2.2)
# and sieve-connect's NOOP resync right behind it, commands pipelined after
# STARTTLS dropped (CVE-2014-3556), an empty SASL list and ENCRYPT-NEEDED
# before TLS with starttls only, listen ... ssl, ALPN "managesieve",
# ssl_verify_client on; and a real client, sieve-connect, when installed:
# upload, list, activate and download through the proxy. Served by our
# module only.

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

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'sieve is served by ngx-mail-rs only')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'no Test::Nginx::Sieve in this lib')
	unless eval { require Test::Nginx::Sieve; 1 };

my $t = Test::Nginx->new()->has(qw/mail mail_ssl socket_ssl/)
	->has_daemon('openssl');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:%%PORT_8081%%/auth;

    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;

    server {
        listen     127.0.0.1:%%PORT_8190%%;
        protocol   sieve;
        starttls   on;
    }

    server {
        listen     127.0.0.1:%%PORT_8192%%;
        protocol   sieve;
        starttls   only;
        sieve_auth plain login;
    }

    server {
        listen     127.0.0.1:%%PORT_8191%% ssl;
        protocol   sieve;
    }

    server {
        listen     127.0.0.1:%%PORT_8193%% ssl;
        protocol   sieve;
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
	or die "Can't create certificate for localhost: $!\n";

# daemons are forked: settle their ports first so that all agree
port($_) for 8190, 8191, 8192, 8193, 8194, 8081;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&Test::Nginx::Sieve::sieve_test_daemon, 8194, $d);
$t->run()->plan(28);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8194, 8081;

###############################################################################

my $caps = '"IMPLEMENTATION" "nginx"' . CRLF
	. '"SIEVE" "fileinto reject envelope"' . CRLF
	. '"VERSION" "1.0"' . CRLF;

sub client {
	my ($port, @args) = @_;
	return Test::Nginx::Sieve->new(PeerAddr => '127.0.0.1:' . port($port), @args);
}

sub last_request {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return $r[-1] // '';
}

sub plain {
	return encode_base64("\0joe\0secret", '');
}

# starttls on: the block after the handshake, unasked, without STARTTLS

my $s = client(8190);
is($s->response(), $caps . '"SASL" "PLAIN"' . CRLF . '"STARTTLS"' . CRLF
	. 'OK "ManageSieve ready"' . CRLF, 'greeting offers STARTTLS');
$s->send('STARTTLS');
is($s->read(), 'OK "completed"' . CRLF, 'starttls');
$s->upgrade();
is($s->response(), $caps . '"SASL" "PLAIN"' . CRLF . 'OK "completed"' . CRLF,
	'capabilities again after the handshake');
$s->send('STARTTLS');
is($s->read(), 'NO "invalid command"' . CRLF, 'starttls twice');
$s->send('AUTHENTICATE "PLAIN" "' . plain() . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'login over tls');
my $r = last_request();
like($r, qr/^Auth-Protocol: sieve\r$/m, 'auth protocol');
like($r, qr/^Auth-SSL: on\r\nAuth-SSL-Protocol: TLSv[\d.]+\r\nAuth-SSL-Cipher: \S+\r$/m,
	'auth-ssl headers');

# as sieve-connect does: NOOP "tag" sent right after the handshake, before
# the block is read; the TAG response comes after the block's OK

$s = client(8190);
$s->response();
$s->send('STARTTLS');
$s->read();
$s->upgrade();
$s->send('NOOP "STARTTLS-RESYNC-CAPA"');
is($s->response(), $caps . '"SASL" "PLAIN"' . CRLF . 'OK "completed"' . CRLF,
	'the block first');
is($s->read(), 'OK (TAG "STARTTLS-RESYNC-CAPA") "completed"' . CRLF,
	'then the NOOP\'s TAG');

# commands pipelined after STARTTLS are dropped, not run inside TLS

$s = client(8190);
$s->response();
$s->print('STARTTLS' . CRLF . 'NOOP "injected"' . CRLF);
is($s->read(), 'OK "completed"' . CRLF, 'starttls pipelined');
$s->upgrade();
$s->response();
$s->send('NOOP "real"');
is($s->read(), 'OK (TAG "real") "completed"' . CRLF,
	'the first reply inside TLS is for the command sent inside it');

# starttls only: no mechanism and no login before TLS

$s = client(8192);
is($s->response(), $caps . '"SASL" ""' . CRLF . '"STARTTLS"' . CRLF
	. 'OK "ManageSieve ready"' . CRLF, 'starttls only: empty SASL list');
$s->send('CAPABILITY');
is($s->response(), $caps . '"SASL" ""' . CRLF . '"STARTTLS"' . CRLF
	. 'OK "completed"' . CRLF, 'starttls only: capability');
$s->send('AUTHENTICATE "PLAIN" "' . plain() . '"');
is($s->read(), 'NO (ENCRYPT-NEEDED) "TLS required"' . CRLF, 'no login before TLS');
$s->send('AUTHENTICATE "LOGIN"');
is($s->read(), 'NO (ENCRYPT-NEEDED) "TLS required"' . CRLF, 'no exchange before TLS');
$s->send('STARTTLS');
$s->read();
$s->upgrade();
is($s->response(), $caps . '"SASL" "PLAIN LOGIN"' . CRLF . 'OK "completed"' . CRLF,
	'starttls only: the mechanisms after TLS');
$s->send('AUTHENTICATE "PLAIN" "' . plain() . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'login after STARTTLS');

# listen ssl: no STARTTLS offered or taken

$s = client(8191, SSL => 1);
is($s->response(), $caps . '"SASL" "PLAIN"' . CRLF . 'OK "ManageSieve ready"' . CRLF,
	'greeting over ssl');
$s->send('STARTTLS');
is($s->read(), 'NO "invalid command"' . CRLF, 'no starttls over ssl');
$s->send('AUTHENTICATE "PLAIN" "' . plain() . '"');
is($s->read(), 'OK "Logged in as joe:secret."' . CRLF, 'login over ssl');

# ALPN: "managesieve" is the protocol's name

SKIP: {
skip 'no ALPN in IO::Socket::SSL', 2 unless IO::Socket::SSL->can_alpn();

$s = client(8191, SSL => 1, SSL_alpn_protocols => ['managesieve']);
is($s->socket()->alpn_selected(), 'managesieve', 'alpn managesieve');
$s->response();
$s->send('NOOP');
is($s->read(), 'OK "completed"' . CRLF, 'session after alpn');

}

# ssl_verify_client on: the sieve protocol's own error text

$s = client(8193, SSL => 1);
is($s->read(), 'BYE "No required SSL certificate"' . CRLF, 'no certificate');
ok($s->eof(), 'closed without a certificate');

# a real client: sieve-connect, with STARTTLS, through to the backend

SKIP: {
skip 'no sieve-connect', 4 unless `sieve-connect --help 2>&1` =~ /Usage/;

$t->write_file('password', "secret\n");
$t->write_file('filter.sieve', "require \"fileinto\";\r\n"
	. "if header :contains \"subject\" \"nginx\" { fileinto \"INBOX\"; }\r\n");
my $connect = "HOME=$d sieve-connect --server 127.0.0.1 --port " . port(8190)
	. " --user joe --passwordfd 3 --notlsverify";
my $run = sub {
	my ($args) = @_;
	return `cd $d && $connect $args 3<$d/password 2>&1`;
};

# the fake backend keeps scripts per connection: one session does it all
$t->write_file('commands', "put filter.sieve proxied\nlist\nactivate proxied\n"
	. "list\nget proxied downloaded.sieve\n");
my $out = $run->("--exec $d/commands");
is($?, 0, 'sieve-connect exit status') or diag($out);
like($out, qr/^"proxied"\r?\n"proxied" ACTIVE\r?$/m, 'sieve-connect: uploaded, listed, active')
	or diag($out);
is($t->read_file('downloaded.sieve'), $t->read_file('filter.sieve'),
	'sieve-connect: downloaded what it uploaded');
like(last_request(), qr/^Auth-SSL: on\r$/m, 'sieve-connect went through STARTTLS');

}

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check.
undef $s;
undef $t;

###############################################################################

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
		# the harness's probe connects and sends nothing
		next if $req eq '';
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8194) . CRLF . CRLF;
		close $c;
	}
}

###############################################################################
