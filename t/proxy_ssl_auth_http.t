#!/usr/bin/perl

# Tests for the auth server's choice of TLS to the backend (ours):
# Auth-Server-TLS (on, starttls, off; an unknown value is ignored) over
# the server's proxy_ssl/proxy_starttls, and Auth-Server-Name as the name
# sent as SNI and verified, over proxy_ssl_name.

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
plan(skip_all => 'Auth-Server-TLS is ours; stock talks to backends in plain text only')
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

    proxy_ssl_verify               on;
    proxy_ssl_trusted_certificate  root.crt;
    proxy_ssl_server_name          on;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        proxy_ssl  on;
        proxy_ssl_name  backend.example;
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
	. "-config $d/openssl.conf -subj /CN=root/ "
	. "-out $d/root.crt -keyout $d/root.key >>$d/openssl.out 2>&1") == 0
	and system("openssl req -new -config $d/openssl.conf "
	. "-subj /CN=backend.example/ -out $d/backend.csr -keyout $d/backend.key "
	. ">>$d/openssl.out 2>&1") == 0
	and system("openssl x509 -req -in $d/backend.csr -CA $d/root.crt "
	. "-CAkey $d/root.key -CAcreateserial -days 3 -out $d/backend.crt "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create certificates\n";

# user => [ backend port, Auth-Server-TLS, Auth-Server-Name ]
my %users = (
	implicit => [ 8121, 'on', 'backend.example' ],
	starttls => [ 8122, 'starttls', 'backend.example' ],
	plain => [ 8123, 'off', undef ],
	bogus => [ 8123, 'maybe', undef ],
	wrongname => [ 8121, 'on', 'other.example' ],
	noname => [ 8121, 'on', undef ],
	named => [ 8121, undef, 'backend.example' ],
);

port($_) for 8081, 8121, 8122, 8123;

$t->run_daemon(\&auth_daemon, \%users);
$t->run_daemon(\&backend, 8121, 'implicit', $d);
$t->run_daemon(\&backend, 8122, 'starttls', $d);
$t->run_daemon(\&backend, 8123, 'plain', $d);
$t->run()->plan(9);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8121, 8122, 8123;

###############################################################################

# on a server with neither proxy_ssl nor proxy_starttls

like(login(8110, 'implicit'), qr/^\+OK logged in over TLS sni=backend\.example$/,
	'Auth-Server-TLS on, Auth-Server-Name as sni and verified');
like(login(8110, 'starttls'), qr/^\+OK logged in over TLS sni=backend\.example$/,
	'Auth-Server-TLS starttls');
like(login(8110, 'bogus'), qr/^\+OK logged in in plain text/,
	'unknown Auth-Server-TLS value ignored');
like(login(8110, 'wrongname'), qr/^-ERR internal server error/,
	'Auth-Server-Name verified');
like($t->read_file('error.log'),
	qr/\[error\].*upstream SSL certificate does not match "other\.example"/,
	'Auth-Server-Name in the log');
like(login(8110, 'noname'), qr/^-ERR internal server error/,
	'without a name the auth server\'s address is verified');

# on a server with proxy_ssl on and proxy_ssl_name

like(login(8111, 'plain'), qr/^\+OK logged in in plain text/,
	'Auth-Server-TLS off over proxy_ssl on');
like(login(8111, 'noname'), qr/^\+OK logged in over TLS sni=backend\.example$/,
	'proxy_ssl_name without Auth-Server-Name');
like(login(8111, 'named'), qr/^\+OK logged in over TLS/,
	'Auth-Server-Name without Auth-Server-TLS');

undef $t;

###############################################################################

sub login {
	my ($port, $user) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send('PASS secret');
	my $r = $s->read() // '';
	$r =~ s/\r\n$//;
	return $r;
}

sub auth_daemon {
	my ($users) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		my $user = '';
		while (defined(my $l = <$c>)) {
			$user = $1 if $l =~ /^Auth-User: (\S+)/i;
			last if $l eq CRLF;
		}
		my ($port, $tls, $name) = @{ $users->{$user} // [ 8123 ] };
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port($port) . CRLF
			. (defined $tls ? "Auth-Server-TLS: $tls" . CRLF : '')
			. (defined $name ? "Auth-Server-Name: $name" . CRLF : '')
			. "Auth-Pass: secret" . CRLF . CRLF;
		close $c;
	}
}

# A POP3 backend: implicit TLS, STLS offered, or plain text only.
sub backend {
	my ($port, $kind, $d) = @_;
	require IO::Socket::SSL;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	my %tls = (SSL_server => 1, SSL_cert_file => "$d/backend.crt",
		SSL_key_file => "$d/backend.key");
	while (my $c = $server->accept()) {
		my $tls = 0;
		if ($kind eq 'implicit') {
			IO::Socket::SSL->start_SSL($c, %tls) or next;
			$tls = 1;
		}
		$c->syswrite('+OK ready' . CRLF);
		my $buf = '';
		while (1) {
			my $n = $c->sysread($buf, 4096, length $buf);
			last unless $n;
			next unless $buf =~ s/^([^\n]*)\n//;
			my $line = $1;
			$line =~ s/\r$//;
			if ($line eq 'CAPA') {
				$c->syswrite('+OK' . CRLF . 'STLS' . CRLF . '.' . CRLF);
			} elsif ($line eq 'STLS') {
				$c->syswrite('+OK go' . CRLF);
				IO::Socket::SSL->start_SSL($c, %tls) or last;
				$tls = 1;
			} elsif ($line =~ /^PASS/) {
				$c->syswrite('+OK logged in '
					. ($tls ? 'over TLS sni=' . ($c->get_servername() // '-')
						: 'in plain text') . CRLF);
			} else {
				$c->syswrite('+OK' . CRLF);
			}
		}
		close $c;
	}
}

###############################################################################
