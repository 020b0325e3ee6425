#!/usr/bin/perl

# Tests for `proxy_protocol v2` towards the backend (nginx 1.31.4; our
# module has it, stock nginx 1.28 does not): the binary header before the
# backend's greeting is read, with both addresses, the TLS facts of a TLS
# client as TLVs, and a CRC32c that covers the whole header; `on` still
# sends v1; bad values are refused.

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

my $t = Test::Nginx->new()->has(qw/mail mail_ssl pop3 socket_ssl/)
	->has_daemon('openssl');

# stock nginx has it from 1.31.4: the same checks then hold for its bytes
plan(skip_all => 'stock nginx before 1.31.4 has no proxy_protocol v2')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/
	&& !$t->has_version('1.31.4');

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    ssl_certificate_key localhost.key;
    ssl_certificate localhost.crt;
    proxy_protocol v2;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8113 ssl;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        proxy_protocol on;
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

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $d, 8111, "+OK backend ready");
$t->run()->plan(19);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

# a plain POP3 client: PROXY, IPv4, both addresses and ports, then CRC32c

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER plain');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK logged in/, 'login behind a v2 header');

my $h = header('plain');
is(substr($h, 0, 12), "\r\n\r\n\0\r\nQUIT\n", 'v2 signature');
is(unpack('H4', substr($h, 12, 2)), '2111', 'PROXY command, TCP over IPv4');
is(unpack('n', substr($h, 14, 2)), length($h) - 16, 'length field');
my ($src, $dst, $sport, $dport) = unpack('a4 a4 n n', substr($h, 16, 12));
is(join('.', unpack('C4', $src)) . ' ' . join('.', unpack('C4', $dst)),
	'127.0.0.1 127.0.0.1', 'addresses');
is($sport, $s->{sock}->sockport(), 'source port is the client\'s');
is($dport, port(8110), 'destination port is the listener\'s');
my %tlv = tlvs(substr($h, 28));
is(join(',', sort keys %tlv), '3', 'only the CRC32c TLV for a plain client');
is($tlv{3}, crc_of($h), 'CRC32c covers the header');

# a TLS client: its TLS facts in a PP2_TYPE_SSL TLV

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8113), SSL => 1,
	SSL_hostname => 'mail.example');
$s->read();
$s->send('USER tls');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK logged in/, 'tls login behind a v2 header');

$h = header('tls');
%tlv = tlvs(substr($h, 28));
is($tlv{2}, 'mail.example', 'authority TLV carries the SNI name');
my ($client, $verify) = unpack('C N', $tlv{32} // '');
is($client, 1, 'client is TLS, no certificate');
is($verify, 1, 'nothing to verify');
my %sub = tlvs(substr($tlv{32} // '', 5));
like($sub{0x21} // '', qr/^TLSv1\.[23]$/, 'TLS version');
ok(length($sub{0x23} // ''), 'cipher');
is($sub{0x25}, 'RSA2048', 'key algorithm of the proxy\'s certificate');
is($tlv{3}, crc_of($h), 'CRC32c with TLVs');

# `on` is still v1

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8114));
$s->read();
$s->send('USER v1');
$s->read();
$s->send('PASS secret');
$s->read();
like(header('v1'), qr/^PROXY TCP4 127\.0\.0\.1 127\.0\.0\.1 \d+ \d+\r\n\z/,
	'proxy_protocol on sends v1');

# a value nginx does not know

my $conf = $t->read_file('nginx.conf');
$conf =~ s/proxy_protocol v2;/proxy_protocol v3;/;
$t->write_file('bad.conf', $conf);
like(`$Test::Nginx::NGINX -p $d/ -c bad.conf -t 2>&1`,
	qr/\[emerg\] .*invalid value "v3" in .*bad\.conf:\d+/,
	'proxy_protocol v3 refused');

###############################################################################

# the header the backend got for a login
sub header {
	my ($user) = @_;
	for (1 .. 50) {
		last if -s "$d/header-$user";
		select undef, undef, undef, 0.1;
	}
	return $t->read_file("header-$user");
}

# type => value of the TLVs in $data
sub tlvs {
	my ($data) = @_;
	my %tlv;
	while (length($data) >= 3) {
		my ($type, $len) = unpack('C n', $data);
		$tlv{$type} = substr($data, 3, $len);
		$data = substr($data, 3 + $len);
	}
	return %tlv;
}

# the CRC32c of a header whose last TLV is the CRC32c, computed with that
# value zeroed, as the PROXY protocol specification says
sub crc_of {
	my ($h) = @_;
	substr($h, -4) = "\0\0\0\0";
	my $crc = 0xffffffff;
	for my $byte (unpack('C*', $h)) {
		$crc ^= $byte;
		$crc = $crc & 1 ? ($crc >> 1) ^ 0x82f63b78 : $crc >> 1 for 1 .. 8;
	}
	return pack('N', $crc ^ 0xffffffff);
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		my $port = port(8111);
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: $port" . CRLF
			. CRLF;
		close $c;
	}
}

# A backend that reads the PROXY header (v1 or v2) before greeting, keeps
# it in header-<user> once it learns the user, and logs anyone in.
sub backend {
	my ($dir, $num, $greeting) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($num), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $header = '';
		$c->sysread($header, 16) == 16 or next;
		if ($header =~ /^PROXY /) {
			while ($header !~ /\r\n\z/) {
				$c->sysread(my $byte, 1) or last;
				$header .= $byte;
			}
		} else {
			my $len = unpack('n', substr($header, 14, 2));
			while ($len > 0) {
				my $n = $c->sysread(my $more, $len) or last;
				$header .= $more;
				$len -= $n;
			}
		}
		print $c $greeting . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^USER (\S+)/i) {
				my $user = $1;
				open my $fh, '>', "$dir/header-$user" or die;
				binmode $fh;
				print $fh $header;
				close $fh;
			}
			print $c ($l =~ /^PASS/i ? '+OK logged in' : '+OK') . CRLF;
		}
		close $c;
	}
}

###############################################################################
