#!/usr/bin/perl

# Tests for proxy_starttls (ours: stock talks to backends in plain text
# only): POP3 STLS after CAPA, IMAP STARTTLS after CAPABILITY, SMTP
# STARTTLS after EHLO and EHLO again then XCLIENT, ManageSieve STARTTLS and
# its capabilities read anew; every credential over TLS. A backend that
# does not offer the upgrade is refused before any credential goes out;
# plain text a backend (or a man in the middle) sends behind its positive
# STARTTLS reply is dropped, never read as protected (CVE-2011-0411,
# CVE-2021-33515); replies that come a byte at a time are read whole, and
# capabilities too long for the buffer are refused.

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
use Test::Nginx::IMAP;
use Test::Nginx::SMTP;
use Test::Nginx::Sieve;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'proxy_starttls is ours; stock talks to backends in plain text only')
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
    proxy_starttls  on;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        smtp_auth  plain;
        server_name proxy.example;
    }

    server {
        listen     127.0.0.1:8192;
        protocol   sieve;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        proxy_starttls  off;
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
	. "-config $d/openssl.conf -subj /CN=backend/ "
	. "-out $d/backend.crt -keyout $d/backend.key "
	. ">>$d/openssl.out 2>&1") == 0
	or die "Can't create a certificate: $!\n";

# port => protocol, and what the backend does wrong, if anything
my %backends = (
	8121 => 'pop3', 8122 => 'imap', 8123 => 'smtp', 8124 => 'sieve',
	8131 => 'pop3 nostarttls', 8132 => 'imap nostarttls',
	8133 => 'smtp nostarttls',
	8151 => 'pop3 inject', 8152 => 'imap inject', 8153 => 'smtp inject',
	8154 => 'sieve inject',
	8161 => 'pop3 dribble', 8162 => 'imap dribble', 8163 => 'smtp dribble',
	8164 => 'sieve dribble',
	8171 => 'pop3 flood', 8172 => 'imap flood',
);

port($_) for 8081, keys %backends;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $_, $backends{$_}, $d) for sort keys %backends;
$t->run()->plan(41);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, keys %backends;

###############################################################################

# POP3

like(pop3(8110, 8121), qr/^\+OK logged in over TLS/, 'pop3 stls');
is(backend_log(8121), "plain CAPA\nplain STLS\ntls USER u8121\ntls PASS secret\n",
	'pop3 credentials over tls only');

# IMAP

like(imap(8122), qr/^a1 OK logged in over TLS/, 'imap starttls');
like(backend_log(8122), qr/^plain a1 CAPABILITY\nplain a1 STARTTLS\ntls a1 LOGIN \{5\}\n/,
	'imap capability, starttls, then login over tls');

# SMTP: EHLO, STARTTLS, EHLO again, then XCLIENT

my $s = smtp(8123);
$s->authok('smtp starttls');
$s->send('NOOP');
$s->check(qr/^250 NOOP over TLS/, 'smtp session over tls');
undef $s;
like(backend_log(8123),
	qr/^plain EHLO proxy\.example\nplain STARTTLS\ntls EHLO proxy\.example\ntls XCLIENT /,
	'smtp ehlo again and xclient after starttls');

# ManageSieve: the capabilities anew after the handshake

like(sieve(8124), qr/^OK.*over TLS/, 'sieve starttls');
like(backend_log(8124), qr/^plain STARTTLS\ntls AUTHENTICATE "PLAIN"/,
	'sieve authenticate over tls');

# proxy_starttls off: the same backend in plain text

like(pop3(8111, 8121), qr/^\+OK logged in in plain text/, 'proxy_starttls off');

# no STLS/STARTTLS offered: refused, the reason logged, nothing sent

like(pop3(8110, 8131), qr/^-ERR internal server error/, 'pop3 without stls refused');
is(backend_log(8131), "plain CAPA\n", 'pop3 without stls: no credential');

like(imap(8132), qr/^\* BAD internal server error/i, 'imap without starttls refused');
is(backend_log(8132), "plain a1 CAPABILITY\n", 'imap without starttls: no credential');

$s = smtp(8133);
like($s->read(), qr/^451 /, 'smtp without starttls refused');
undef $s;
is(backend_log(8133), "plain EHLO proxy.example\n", 'smtp without starttls: no xclient');

like($t->read_file('error.log'),
	qr/\[error\].*upstream does not offer STARTTLS.*upstream: 127\.0\.0\.1:\d+/,
	'missing starttls logged at error');

# plain text injected behind the positive STARTTLS reply, in the same
# packet: dropped; the login runs over TLS as if it had not been sent

like(pop3(8110, 8151), qr/^\+OK logged in over TLS/, 'pop3 injection dropped');
is(backend_log(8151), "plain CAPA\nplain STLS\ntls USER u8151\ntls PASS secret\n",
	'pop3 injection: every command answered over tls');

my $reply = imap(8152);
like($reply, qr/^a1 OK logged in over TLS/, 'imap injection dropped');
unlike($reply, qr/injected/, 'imap injection never reaches the client');
like(backend_log(8152), qr/tls secret\n$/, 'imap injection: password over tls');

$s = smtp(8153);
$s->authok('smtp injection dropped');
$s->send('NOOP');
$s->check(qr/^250 NOOP over TLS/, 'smtp injection: session over tls');
undef $s;
like(backend_log(8153), qr/^plain EHLO proxy\.example\nplain STARTTLS\ntls EHLO /,
	'smtp injection: ehlo again over tls');

# ManageSieve reads the backend again after the handshake (its
# capabilities): what was injected must not be in front of them
like(sieve(8154), qr/^OK "logged in over TLS"/, 'sieve injection dropped');
like(backend_log(8154), qr/^plain STARTTLS\ntls AUTHENTICATE "PLAIN"/,
	'sieve injection: authenticate over tls');

# every plain reply, the STARTTLS one included, a byte at a time: each
# is taken whole however it is cut, and the login runs over TLS

like(pop3(8110, 8161), qr/^\+OK logged in over TLS/, 'pop3 dribbled replies');
is(backend_log(8161), "plain CAPA\nplain STLS\ntls USER u8161\ntls PASS secret\n",
	'pop3 dribbled: credentials over tls only');

like(imap(8162), qr/^a1 OK logged in over TLS/, 'imap dribbled replies');
like(backend_log(8162), qr/^plain a1 CAPABILITY\nplain a1 STARTTLS\ntls a1 LOGIN \{5\}\n/,
	'imap dribbled: login over tls');

$s = smtp(8163);
$s->authok('smtp dribbled replies');
undef $s;
like(backend_log(8163),
	qr/^plain EHLO proxy\.example\nplain STARTTLS\ntls EHLO proxy\.example\ntls XCLIENT /,
	'smtp dribbled: ehlo again and xclient over tls');

like(sieve(8164), qr/^OK.*over TLS/, 'sieve dribbled replies');
like(backend_log(8164), qr/^plain STARTTLS\ntls AUTHENTICATE "PLAIN"/,
	'sieve dribbled: authenticate over tls');

# capabilities of 4 MiB before the upgrade: too long for the proxy
# buffer, refused with nothing more sent, the next session unharmed

like(pop3(8110, 8171), qr/^-ERR internal server error/, 'pop3 capability flood refused');
is(backend_log(8171), "plain CAPA\n", 'pop3 flood: no stls, no credential');

like(imap(8172), qr/^\* BAD internal server error/i, 'imap capability flood refused');
is(backend_log(8172), "plain a1 CAPABILITY\n", 'imap flood: no starttls, no credential');

my @long = $t->read_file('error.log')
	=~ /\[error\].*upstream sent too long response line/g;
is(scalar(@long), 2, 'capability floods logged');

# no client saw the injected text anywhere
unlike($t->read_file('error.log'), qr/injected/, 'injected text never read');

undef $t;

###############################################################################

sub pop3 {
	my ($port, $backend) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send("USER u$backend");
	$s->read();
	$s->send('PASS secret');
	return $s->read() // '';
}

sub imap {
	my ($backend) = @_;
	my $s = Test::Nginx::IMAP->new();
	$s->read();
	$s->send("a1 LOGIN u$backend secret");
	return $s->read() // '';
}

sub sieve {
	my ($backend) = @_;
	my $s = Test::Nginx::Sieve->new(PeerAddr => '127.0.0.1:' . port(8192));
	$s->response();
	$s->send('AUTHENTICATE "PLAIN" "'
		. encode_base64("\0u$backend\0secret", '') . '"');
	return $s->response() // '';
}

sub smtp {
	my ($backend) = @_;
	my $s = Test::Nginx::SMTP->new();
	$s->read();
	$s->send('EHLO client.example');
	$s->read();
	$s->send('AUTH PLAIN ' . encode_base64("\0u$backend\0secret", ''));
	return $s;
}

# what the backend read, each line marked with how it came
sub backend_log {
	my ($port) = @_;
	for (1 .. 50) {
		last if -e "$d/done-$port";
		select undef, undef, undef, 0.1;
	}
	unlink "$d/done-$port";
	my $log = $t->read_file("backend-$port.log") // '';
	unlink "$d/backend-$port.log";
	return $log;
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

sub backend {
	my ($port, $what, $d) = @_;
	require IO::Socket::SSL;
	my ($proto, $flaw) = split ' ', $what;
	$flaw //= '';
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		serve($c, $port, $proto, $flaw, $d);
		close $c;
		open my $done, '>', "$d/done-$port";
		close $done;
	}
}

# One session. The plain phase reads with sysread, so nothing of the
# handshake is taken into a Perl buffer before start_SSL.
sub serve {
	my ($c, $port, $proto, $flaw, $d) = @_;
	open my $log, '>>', "$d/backend-$port.log" or die "log: $!";
	$log->autoflush(1);
	my $tls = 0;
	my $buf = '';
	my $getline = sub {
		if ($tls) {
			return scalar <$c>;
		}
		while ($buf !~ /\n/) {
			my $n = $c->sysread($buf, 4096, length $buf);
			return undef unless $n;
		}
		$buf =~ s/^([^\n]*\n)//;
		return $1;
	};
	my $plain = sub {
		my ($data) = @_;
		return $c->syswrite($data) unless $flaw eq 'dribble';
		for my $byte (split //, $data) {
			$c->syswrite($byte);
			select undef, undef, undef, 0.002;
		}
	};
	my $put = sub { $tls ? print $c @_ : $plain->(join '', @_) };
	my $upgrade = sub {
		my ($reply) = @_;
		$reply .= ($proto eq 'imap' ? '* injected'
				: $proto eq 'sieve' ? 'OK "injected"' : '+OK injected') . CRLF
			if $flaw eq 'inject' && $proto ne 'smtp';
		$reply .= '250 injected' . CRLF if $flaw eq 'inject' && $proto eq 'smtp';
		$plain->($reply);
		IO::Socket::SSL->start_SSL($c, SSL_server => 1,
			SSL_cert_file => "$d/backend.crt",
			SSL_key_file => "$d/backend.key") or return 0;
		$tls = 1;
		$c->autoflush(1);
		return 1;
	};
	my $how = sub { $tls ? 'over TLS' : 'in plain text' };

	if ($proto eq 'pop3') {
		$put->('+OK ready' . CRLF);
	} elsif ($proto eq 'imap') {
		$put->('* OK ready' . CRLF);
	} elsif ($proto eq 'smtp') {
		$put->('220 mx ready' . CRLF);
	} else {
		$put->('"IMPLEMENTATION" "fake"' . CRLF
			. ($flaw eq 'nostarttls' ? '' : '"STARTTLS"' . CRLF)
			. '"SASL" "PLAIN"' . CRLF . 'OK' . CRLF);
	}

	while (defined(my $l = $getline->())) {
		(my $line = $l) =~ s/\r?\n$//;
		print $log ($tls ? 'tls ' : 'plain ') . $line . "\n";
		my $starttls = $flaw ne 'nostarttls';

		if ($flaw eq 'flood') {
			# the proxy drops the connection long before the end
			$put->('+OK' . CRLF) if $proto eq 'pop3';
			my $chunk = ($proto eq 'pop3' ? 'X-PAD' : '* X-PAD')
				. ('x' x 1017) . CRLF;
			$put->($chunk) or last for 1 .. 4096;
			last;
		}

		if ($proto eq 'pop3') {
			if ($line eq 'CAPA') {
				$put->('+OK' . CRLF . 'USER' . CRLF
					. ($starttls ? 'STLS' . CRLF : '') . '.' . CRLF);
			} elsif ($line eq 'STLS') {
				$upgrade->('+OK Begin TLS' . CRLF) or return;
			} elsif ($line =~ /^PASS/) {
				$put->('+OK logged in ' . $how->() . CRLF);
			} else {
				$put->('+OK' . CRLF);
			}

		} elsif ($proto eq 'imap') {
			if ($line =~ /^(\S+) CAPABILITY$/) {
				$put->('* CAPABILITY IMAP4rev1'
					. ($starttls ? ' STARTTLS' : '') . CRLF . "$1 OK done" . CRLF);
			} elsif ($line =~ /^(\S+) STARTTLS$/) {
				$upgrade->("$1 OK Begin TLS" . CRLF) or return;
			} elsif ($line =~ /\}$/) {
				$put->('+ go ahead' . CRLF);
			} else {
				$put->('a1 OK logged in ' . $how->() . CRLF);
			}

		} elsif ($proto eq 'smtp') {
			if ($line =~ /^EHLO/) {
				$put->('250-mx' . CRLF
					. ($starttls && !$tls ? '250-STARTTLS' . CRLF : '')
					. '250 8BITMIME' . CRLF);
			} elsif ($line eq 'STARTTLS') {
				$upgrade->('220 2.0.0 Ready to start TLS' . CRLF) or return;
			} else {
				my ($cmd) = $line =~ /^(\S+)/;
				$put->("250 $cmd " . $how->() . CRLF);
			}

		} else {
			if ($line eq 'STARTTLS') {
				$upgrade->('OK "Begin TLS"' . CRLF) or return;
				$put->('"IMPLEMENTATION" "fake"' . CRLF
					. '"SASL" "PLAIN"' . CRLF . 'OK' . CRLF);
			} else {
				$put->('OK "logged in ' . $how->() . '"' . CRLF);
			}
		}
	}
}

###############################################################################
